"""Issue 28: no wrong number without an error. Missing Zarr chunks, stores of another table, models of
other data or loop params, and evaluation outputs that do not belong together, through the CLI on a
real tiny project (tests/integrity_helpers.py)."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from integrity_helpers import (SPLIT, built, copy_project, one_error_line, project, resplit,  # noqa: F401 (fixtures)
                               working_dir, write_params, xmr)
from pipeline.metrics.npz_files import read_npz, write_npz

pytestmark = pytest.mark.usefixtures("one_thread")



@pytest.mark.parametrize("array, command", [("features", "evaluate"), ("valid", "train")])
def test_missing_chunk_file_is_an_error_naming_store_and_chunk(project, array, command):
    shard = project / "data" / "tiny" / "features.zarr" / array / "c" / "2"
    assert shard.exists()
    shutil.rmtree(shard) if shard.is_dir() else shard.unlink()
    line = one_error_line(xmr(command, "tiny", "ss", "--no-progress"))
    assert f"data/tiny/features.zarr: array '{array}', chunk 2 (rows 8-11)" in line and "is missing" in line


@pytest.mark.parametrize("command", ["train", "evaluate"])
def test_stores_of_another_table_are_refused_naming_both(project, command):
    resplit(project, "tiny", SPLIT[::-1])  # a re-prepared table: same rows, other splits
    line = one_error_line(xmr(command, "tiny", "ss", "--no-progress"))
    assert "data/tiny/features.zarr: feature store was made from table " in line
    assert "but data/tiny/table.parquet is table " in line and "xmr extract tiny" in line


def test_text_store_of_another_table_is_refused(project, built):
    other = json.loads((built / "models" / "tiny" / "ss" / "config.json").read_text())["inputs"]
    # only the text store is from another table: tokenize a re-split copy and drop its text/ in
    resplit(project, "tiny", SPLIT[::-1])
    assert xmr("tokenize", "tiny").exit_code == 0
    text = project / "data" / "tiny" / "text"
    shutil.rmtree(project.parent / "scratch_text", ignore_errors=True)
    shutil.copytree(text, project.parent / "scratch_text")
    shutil.rmtree(project / "data")
    shutil.copytree(built / "data", project / "data")
    shutil.rmtree(text)
    shutil.copytree(project.parent / "scratch_text", text)
    shutil.rmtree(project.parent / "scratch_text")
    line = one_error_line(xmr("evaluate", "tiny", "ss", "--no-progress"))
    assert "data/tiny/text/tokens.parquet: text store was made from table " in line
    assert f"but data/tiny/table.parquet is table {other['table']}" in line


def test_evaluate_refuses_a_model_trained_on_other_data(project):
    params = project / "params.yaml"
    params.write_text(params.read_text() + "seed: 7\n")
    assert xmr("tokenize", "tiny").exit_code == 0  # same vocabulary and shapes, other word vectors
    line = one_error_line(xmr("evaluate", "tiny", "ss", "--no-progress"))
    assert "models/tiny/ss/config.json: model was trained on text " in line and "but the data to score is text" in line


def test_lowered_epochs_retrain_instead_of_keeping_the_longer_model(project):
    write_params(project, epochs=3)
    assert xmr("train", "tiny", "ss", "--no-progress").exit_code == 0
    history = project / "reports" / "training" / "tiny" / "ss.json"
    assert len(json.loads(history.read_text())) == 3
    write_params(project, epochs=1)
    res = xmr("train", "tiny", "ss", "--no-progress")
    assert res.exit_code == 0, res.output
    assert "not resuming" in res.output and "training from the start" in res.output
    assert len(json.loads(history.read_text())) == 1
    assert json.loads((project / "models" / "tiny" / "ss" / "config.json").read_text())["epoch"] == 1


@pytest.mark.parametrize("kind", ["per_query", "rankings"])
def test_report_refuses_outputs_of_two_evaluations(project, kind):
    path = project / "reports" / kind / "tiny" / "ss.npz"
    arrays = read_npz(path, ValueError, kind)
    metrics = json.loads((project / "reports" / "metrics" / "tiny" / "ss.json").read_text())
    assert str(arrays["evaluation_id"]) == metrics["evaluation_id"]
    write_npz(path, {**arrays, "evaluation_id": np.asarray("0123456789abcdef")})  # a kill between two writes
    line = one_error_line(xmr("report"))
    assert f"reports/{kind}/tiny/ss.npz: from evaluation 0123456789abcdef, but " in line
    assert f"reports/metrics/tiny/ss.json is from evaluation {metrics['evaluation_id']}" in line
