"""Paths that leave the project resolve to the same folder in the workspace and in a queued experiment's copy.

DVC runs `dvc exp run --queue` experiments in `.dvc/tmp/exps/<tmp>/` and sets DVC_ROOT to the project;
coco_mini's `../shared/coco-mini` (params and table paths) must still find the images there.
"""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.data.download import record_local_coco
from pipeline.data.prepare import prepare_dataset
from pipeline.data.table import read_table
from pipeline.detection.images import ImageMissingError, decode_image
from pipeline.project_paths import project_path

PREP = {"images_without_labels": "keep", "max_captions": 5}
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def experiment_copy(tmp_path, monkeypatch):
    """`(project, copy)`: a project beside an `outside/` folder, and an experiment's copy of it, the cwd."""
    project = tmp_path / "project"
    copy = project / ".dvc" / "tmp" / "exps" / "tmpabc"
    copy.mkdir(parents=True)
    monkeypatch.chdir(copy)
    monkeypatch.setenv("DVC_ROOT", str(project))
    return project, copy


def test_outside_paths_go_to_the_projects_neighbour(experiment_copy, tmp_path):
    assert project_path("../outside/a.jpg") == tmp_path / "outside" / "a.jpg"
    assert project_path("data/shapes/raw/a.png").as_posix() == "data/shapes/raw/a.png"  # the copy's own file
    assert project_path(tmp_path / "x.jpg") == tmp_path / "x.jpg"


def test_unchanged_in_the_workspace_and_without_dvc(experiment_copy, monkeypatch):
    project, _ = experiment_copy
    monkeypatch.chdir(project)
    assert project_path("../outside/a.jpg").as_posix() == "../outside/a.jpg"  # DVC_ROOT is the cwd
    monkeypatch.delenv("DVC_ROOT")
    assert project_path("../outside/a.jpg").as_posix() == "../outside/a.jpg"


def test_coco_folder_beside_the_project_from_an_experiment(experiment_copy, tmp_path, coco_mini):
    """download, prepare and image decoding of a `../` root, run in the experiment's copy. A prepare run
    there records the folder it read (absolute); a table a workspace run wrote (relative) opens too."""
    project, copy = experiment_copy
    shutil.copytree(coco_mini / "annotations", tmp_path / "coco" / "annotations")
    for split in ("train2017", "val2017"):
        (tmp_path / "coco" / split).symlink_to(coco_mini / split)
    dparams = {"kind": "coco", "root": "../coco", "splits": {"train": "train2017", "val": "val2017"}}
    assert not (copy / "../coco").exists()  # the failure this guards against: relative to the copy, nothing

    record_local_coco("mini", dparams, "data")
    prepare_dataset("mini", dparams, PREP, "data")
    table = read_table(copy / "data" / "mini" / "table.parquet")
    paths = table.column("file_path").to_pylist()
    assert paths[0].startswith(str(tmp_path / "coco")), paths[0]
    pixels, _ = decode_image(paths[0])
    assert pixels.ndim == 3 and pixels.shape[2] == 3

    # a table a workspace run wrote (project-relative paths) opens from the copy too
    relative = "../coco/" + paths[0].split("/coco/", 1)[1]
    assert decode_image(relative)[0].shape == pixels.shape
    with pytest.raises(ImageMissingError, match="outside/none.jpg"):
        decode_image("../outside/none.jpg")


def test_a_queued_experiment_runs_its_own_copy_of_the_code(tmp_path):
    """`xmr` in an experiment's copy runs the copy's code, not the installed (editable: the workspace's)
    package, which may have changed since the experiment was queued."""
    xmr = Path(sys.executable).parent / "xmr"
    if not xmr.is_file():
        pytest.skip(f"{xmr}: the xmr script is not installed beside this Python")
    project = tmp_path / "project"
    copy = project / ".dvc" / "tmp" / "exps" / "tmpabc"
    for package in ("pipeline", "stages"):
        shutil.copytree(REPO / package, copy / package, ignore=shutil.ignore_patterns("__pycache__"))
    with (copy / "pipeline" / "__init__.py").open("a") as f:
        f.write("\nprint('code of the experiment copy')\n")

    def methods(dvc_root: Path) -> str:
        env = {**os.environ, "DVC_ROOT": str(dvc_root)}
        run = subprocess.run([str(xmr), "methods"], cwd=copy, env=env, capture_output=True, text=True, timeout=120)
        assert run.returncode == 0, run.stderr
        return run.stdout

    out = methods(project)
    assert "code of the experiment copy" in out and "scan_t2i" in out
    assert "code of the experiment copy" not in methods(copy)  # DVC_ROOT is the cwd: an ordinary run
