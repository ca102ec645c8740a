"""`xmr train` and `xmr evaluate`: outputs, resume, and one-line errors for bad input.

The stages read data/<ds>/{table.parquet, features.zarr, text/}; here `RetrievalData.open` is
replaced by the in-memory synthetic dataset so that the test exercises the stage wiring only.
"""
import json

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from pipeline.metrics import read_rankings
from pipeline.training.data import RetrievalData
from retrieval_fixtures import make_dataset, small_params
from stages.cli import app

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def project(tmp_path, monkeypatch):
    params = {"datasets": ["synth"], "data": {"synth": {"kind": "shapes"}}, "lambda": 0.1,
              "train": {"batch_size": 16, "lr": 3e-3, "epochs": 2, "device": "cpu", "threads": 1},
              "methods": {name: section for name, section in small_params()["methods"].items()
                          if name in ("ss", "ss_wo_c")}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    opened = []

    def fake_open(data_dir, dataset, **kwargs):
        opened.append(dataset)
        return RetrievalData(*make_dataset(), **kwargs)

    monkeypatch.setattr(RetrievalData, "open", staticmethod(fake_open))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def xmr(*args):
    return CliRunner().invoke(app, [*args, "--no-progress"])


def test_train_then_evaluate_writes_every_output(project):
    res = xmr("train", "synth", "ss")
    assert res.exit_code == 0, res.output
    assert "best training loss" in res.output  # the official recipe of ss selects on the training loss
    model_dir = project / "models" / "synth" / "ss"
    assert {p.name for p in model_dir.iterdir()} >= {"model.pt", "config.json", "last.pt"}
    history = json.loads((project / "reports" / "training" / "synth" / "ss.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2]

    res = xmr("evaluate", "synth", "ss")
    assert res.exit_code == 0, res.output
    metrics = json.loads((project / "reports" / "metrics" / "synth" / "ss.json").read_text())
    assert 0 < metrics["ndcg_ave"] <= 100 and "rsum" in metrics
    assert not {"n_images", "n_texts", "ndcg_k", "map_k", "protocol"} & set(metrics)  # measurements only
    assert metrics["selected_epoch"] in (1, 2)
    # where the numbers came from: the training machine's record in config.json, both classes in the metrics
    from pipeline.machine import machine_class, machine_record
    trained = json.loads((model_dir / "config.json").read_text())["machine"]
    assert trained == machine_record("cpu") and trained["threads"].startswith("1/")  # train.threads: 1
    assert metrics["machine_train"] == machine_class(trained) == metrics["machine_eval"]
    assert 0 <= metrics["f1_image"] <= 1 and 0 <= metrics["f1_text"] <= 1  # the shared classifier's Micro-F1
    for modality in ("image", "text"):  # beside it: a validation-tuned threshold and top-k (issue 15)
        assert 0 <= metrics[f"f1_{modality}_tuned"] <= 1 and 0 <= metrics[f"f1_{modality}_topk"] <= 1
    ranks = read_rankings(project / "reports" / "rankings" / "synth" / "ss.npz")
    assert ranks["i2t_top"].shape == (20, 10) and ranks["t2i_top"].shape == (40, 10)
    assert np.array_equal(ranks["image_rows"], np.arange(100, 120))
    assert np.array_equal(ranks["caption_rows"], np.repeat(np.arange(100, 120), 2))
    assert np.array_equal(ranks["caption_index"], np.tile([0, 1], 20))
    # each query's values, from which the report's intervals are drawn, give back the metrics
    from pipeline.metrics.bootstrap import PairedBootstrap
    from pipeline.metrics.per_query import read_per_query
    per = read_per_query(project / "reports" / "per_query" / "synth" / "ss.npz")
    assert per["ndcg_i2t"].shape == (20,) and per["rank_t2i"].shape == (40,) and per["f1_text"].shape == (40, 3)
    assert np.array_equal(per["unit_t2i"], np.repeat(np.arange(20), 2))  # a caption's unit is its image
    boot = PairedBootstrap.for_arrays(per, resamples=20)
    for key in ("ndcg_ave", "map_t2i", "r1_i2t", "rsum", "medr_t2i", "f1_image"):
        assert boot.point(per, key) == pytest.approx(metrics[key], rel=1e-9), key

    res = xmr("train", "synth", "ss")  # finished: nothing is redone
    assert res.exit_code == 0 and "resumed after 2" in res.output


@pytest.mark.parametrize("args, needle", [
    (("train", "synth", "sss"), "unknown method 'sss'"),
    (("train", "nope", "ss"), "unknown dataset 'nope'"),
    (("evaluate", "synth", "ss_wo_c"), "trained model not found"),
])
def test_bad_input_is_a_one_line_error(project, args, needle):
    res = xmr(*args)
    assert res.exit_code == 2
    assert needle in res.output and "Traceback" not in res.output


def test_bad_lambda_and_foreign_checkpoint(project):
    params = yaml.safe_load((project / "params.yaml").read_text())
    (project / "bad.yaml").write_text(yaml.safe_dump({**params, "lambda": -1.0}))
    res = CliRunner().invoke(app, ["train", "synth", "ss", "--params", "bad.yaml", "--no-progress"])
    assert res.exit_code == 2 and "'lambda' must be a finite number >= 0" in res.output

    assert xmr("train", "synth", "ss").exit_code == 0
    foreign = project / "models" / "synth" / "ss_wo_c"
    foreign.mkdir(parents=True)
    for name in ("model.pt", "config.json", "complete.json"):  # a finished directory copied
        (foreign / name).write_bytes((project / "models" / "synth" / "ss" / name).read_bytes())
    res = xmr("evaluate", "synth", "ss_wo_c")
    assert res.exit_code == 2 and "checkpoint of method 'ss', expected 'ss_wo_c'" in res.output


def test_missing_upstream_outputs_are_named(tmp_path):
    (tmp_path / "data" / "synth").mkdir(parents=True)
    with pytest.raises(ValueError, match="table.parquet: prepared table not found"):
        RetrievalData.open(tmp_path / "data", "synth")
    table, _, _ = make_dataset()
    import pyarrow.parquet as pq
    pq.write_table(table, tmp_path / "data" / "synth" / "table.parquet")
    with pytest.raises(FileNotFoundError, match="features.zarr: feature store not found"):
        RetrievalData.open(tmp_path / "data", "synth")
