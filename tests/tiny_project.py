"""A copy of this repository's pipeline as a fresh git + DVC project on a tiny configuration.

The team tests (tests/test_team.py) and the DVC overhead bench (bench/pipeline_overhead.py) reproduce such a
copy rather than the workspace: the whole stage graph of dvc.yaml, on 40-image shapes datasets, one
training epoch and a few detector iterations.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
COPIED = ("dvc.yaml", "pipeline", "stages", "splits", ".dvcignore", ".gitignore")
TINY_DATASET = {"n_images": 40, "n_val": 8, "n_test": 8}
TINY = {
    "detector": {"iterations": 6, "batch_size": 2, "checkpoint_every": 3},
    "extract": {"batch_size": 8, "workers": 0},
    "text": {"w2v_epochs": 1},
    "train": {"epochs": 1},
}


def run(args, cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    """Run a command with this environment's scripts (xmr, dvc) first on PATH; fail loudly."""
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}")
    proc = subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise AssertionError(f"{args} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def dvc(args, cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    return run([BIN / "dvc", *args], cwd, check=check)


def ran(output: str) -> set[str]:
    """Names of the stages a `dvc repro` / `dvc exp run` output says it ran."""
    return {line.split("'")[1] for line in output.splitlines() if line.startswith("Running stage '")}


def edit_params(project: Path, edit) -> None:
    """Apply `edit(params)` to the project's params.yaml."""
    path = project / "params.yaml"
    params = yaml.safe_load(path.read_text())
    edit(params)
    path.write_text(yaml.safe_dump(params, sort_keys=False))


def tiny_params(params: dict, datasets: list[str], lambda_methods: list[str] | None = None,
                methods: list[str] | None = None) -> None:
    """Shrink `params` in place: `datasets` become 40-image shapes sets with distinct seeds; the methods
    run become `lambda_methods` + `methods` where either is given (default: keep the repository's)."""
    base = params["data"]["shapes"]
    layer = params.get("per_dataset", {}).get("shapes") or {}  # the shapes-sized settings, tiny loops
    params["datasets"] = list(datasets)
    params["per_dataset"] = {}
    for i, name in enumerate(datasets):
        params["data"][name] = dict(base, **TINY_DATASET, seed=base["seed"] + i)
        params["extract"]["detectors"][name] = "auto"
        params["per_dataset"][name] = {**layer, "train": {**layer.get("train", {}), **TINY["train"]}}
    for section, values in TINY.items():
        params[section].update(values)
    if lambda_methods is not None or methods is not None:
        params["run"] = {"methods": list(lambda_methods or []) + list(methods or []), "exclude": []}


def create_project(dest: Path, edit=None, remote: Path | None = None) -> Path:
    """Copy the pipeline into `dest`, apply `edit(params)`, and make it a git + DVC project (with
    `remote` as its default DVC remote when given). Nothing is reproduced or committed yet."""
    dest.mkdir(parents=True)
    for name in COPIED:
        src = REPO / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(src, dest / name)
    shutil.copy(REPO / "params.yaml", dest / "params.yaml")
    (dest / "reports").mkdir()
    (dest / "reports" / "experiments.json").write_text("[]\n")  # no lambda or seed sweep yet

    def no_seed_sweep(params: dict) -> None:  # the repository's report.seeds name its committed sweep
        params["report"]["seeds"] = []
        if edit is not None:
            edit(params)

    edit_params(dest, no_seed_sweep)
    run([BIN / "xmr", "dvc-yaml"], dest)  # the per-method stages of the methods the edit runs
    run(["git", "init", "-q", "-b", "main"], dest)
    run(["git", "config", "user.email", "ci@example.invalid"], dest)
    run(["git", "config", "user.name", "ci"], dest)
    dvc(["init", "-q"], dest)
    dvc(["config", "core.analytics", "false"], dest)
    if remote is not None:
        dvc(["remote", "add", "-d", "shared", str(remote)], dest)
    return dest


def commit(project: Path, message: str) -> None:
    run(["git", "add", "-A"], project)
    run(["git", "commit", "-q", "-m", message], project)
