"""Paths that leave the project resolve to the same folder in the workspace and in a queued experiment's copy.

DVC runs `dvc exp run --queue` experiments in `.dvc/tmp/exps/<tmp>/` and sets DVC_ROOT to the project;
coco_mini's `../shared/coco-mini` (params and table paths) must still find the images there.
"""
import shutil

import pytest

from pipeline.data.download import record_local_coco
from pipeline.data.prepare import prepare_dataset
from pipeline.data.table import read_table
from pipeline.detection.images import ImageMissingError, decode_image
from pipeline.project_paths import project_path

PREP = {"images_without_labels": "keep", "max_captions": 5}


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
