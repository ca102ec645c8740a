"""The `xmr` command and the DVC wiring of the download and prepare stages."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from conftest import REPO, tiny_shapes_params

BIN = Path(sys.executable).parent


def run(args, cwd, check=True):
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}")
    proc = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise AssertionError(f"{args} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def test_help_explains_every_stage():
    out = run([BIN / "xmr", "--help"], REPO).stdout
    assert "download" in out and "prepare" in out
    out = run([BIN / "xmr", "prepare", "--help"], REPO).stdout
    assert "table.parquet" in out and "images_without_labels" in out


def test_bad_param_is_a_one_line_error(tmp_path):
    (tmp_path / "params.yaml").write_text("lambda: 0.1\nprepare:\n  max_captionz: 5\n")
    proc = run([BIN / "xmr", "prepare", "shapes", "--params", "params.yaml"], tmp_path, check=False)
    assert proc.returncode == 2
    assert "unknown parameter 'prepare.max_captionz'" in proc.stderr
    assert "Traceback" not in proc.stderr


def make_project(tmp_path):
    """A copy of the project's DVC wiring with a tiny shapes dataset, in its own git repository."""
    for name in ("dvc.yaml", "pipeline", "stages", "splits"):
        src = REPO / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, tmp_path / name)
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["data"]["shapes"].update(tiny_shapes_params(n_images=20, n_val=4, n_test=4))
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    run(["git", "init", "-q"], tmp_path)
    run([BIN / "dvc", "init", "-q"], tmp_path)
    run([BIN / "dvc", "config", "core.analytics", "false"], tmp_path)
    return params


def test_dvc_repro_runs_prepare_then_has_nothing_to_do(tmp_path):
    params = make_project(tmp_path)
    first = run([BIN / "dvc", "repro", "prepare"], tmp_path).stdout
    assert "Running stage 'download@shapes'" in first and "Running stage 'prepare@shapes'" in first
    assert (tmp_path / "data" / "shapes" / "table.parquet").is_file()
    second = run([BIN / "dvc", "repro", "prepare"], tmp_path).stdout
    assert "Running stage" not in second
    # Changing a prepare param re-runs prepare only, not the generator.
    params["prepare"]["max_captions"] = 3
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    third = run([BIN / "dvc", "repro", "prepare"], tmp_path).stdout
    assert "Running stage 'prepare@shapes'" in third and "Running stage 'download@shapes'" not in third
