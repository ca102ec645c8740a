"""A real tiny project for the integrity tests: shapes table, extracted store, text store, one trained
and evaluated model, built once through the CLI and copied for each test that damages it."""
from __future__ import annotations

import pytest

import contextlib
import os
import shutil
from pathlib import Path

import yaml
from typer.testing import CliRunner

from detection_helpers import shapes_table, tiny_detector
from pipeline.data.table import label_names, read_table, write_table
from retrieval_fixtures import small_params
from stages.cli import app

SPLIT = ["train"] * 10 + ["val"] * 3 + ["test"] * 3


def xmr(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def one_error_line(res, code: int = 2) -> str:
    """The single `error: ...` line of a failed command (no traceback)."""
    assert res.exit_code == code, res.output
    assert "Traceback" not in res.output
    lines = [line for line in res.output.strip().splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, res.output
    return lines[0]


def resplit(root: Path, dataset: str, split: list[str]) -> None:
    """Rewrite data/<dataset>/table.parquet with another split column (a re-prepared table)."""
    path = root / "data" / dataset / "table.parquet"
    table = read_table(path)
    cols = {name: table.column(name).to_pylist() for name in table.column_names}
    cols["split"] = list(split)
    write_table(cols, label_names(table), dataset, path)


def write_params(root: Path, epochs: int = 1) -> None:
    params = {"datasets": ["tiny"], "data": {"tiny": {"kind": "shapes"}}, "lambda": 0.1,
              "extract": {"workers": 0, "chunk_size": 4, "batch_size": 4, "device": "cpu", "proposals": 50},
              "text": {"w2v_epochs": 1, "embedding_dim": 16},
              "train": {"batch_size": 8, "lr": 3e-3, "epochs": epochs, "device": "cpu", "threads": 1},
              "methods": {"ss": small_params()["methods"]["ss"]}}
    (root / "params.yaml").write_text(yaml.safe_dump(params))


def build_project(root: Path) -> Path:
    """table (16 images: 10 train, 3 val, 3 test), features.zarr, text/, models/tiny/ss, reports."""
    root.mkdir(parents=True, exist_ok=True)
    shapes_table(root, len(SPLIT))
    resplit(root, "tiny", SPLIT)
    tiny_detector(root / "models")
    write_params(root)
    with working_dir(root):
        for args in (("extract", "tiny", "--no-progress"), ("tokenize", "tiny"),
                     ("train", "tiny", "ss", "--no-progress"), ("evaluate", "tiny", "ss", "--no-progress")):
            res = xmr(*args)
            assert res.exit_code == 0, (args, res.output)
    return root


@contextlib.contextmanager
def working_dir(path: Path):
    before = os.getcwd()
    os.chdir(path)
    try:
        yield path
    finally:
        os.chdir(before)


def copy_project(src: Path, dest: Path) -> Path:
    shutil.copytree(src, dest, symlinks=True)
    return dest


# The fixtures every integrity test module uses (imported there by name): the project built once per module,
# and a fresh copy of it per test, entered as the working directory.
@pytest.fixture(scope="module")
def built(tmp_path_factory):
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return build_project(tmp_path_factory.mktemp("integrity") / "project")
    finally:
        torch.set_num_threads(threads)


@pytest.fixture
def project(built, tmp_path):
    root = copy_project(built, tmp_path / "project")
    with working_dir(root):
        yield root
