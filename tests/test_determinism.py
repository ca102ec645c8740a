"""Bit-identical reruns (same machine, same params) of the three stages that draw random numbers or
run heavy float arithmetic: detector training, extraction with that detector, and one method's training.

Each is run twice from scratch (fresh output folders, no resume state) and every array of the two
outputs is compared bit for bit. The thread count is a param (`detector.threads`, `extract.threads`,
`train.threads`) because it may change the last bits: tests/test_team.py checks that changing it
re-runs the stage, and `bench/determinism.py` measures how far a different thread count moves the numbers.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from detection_helpers import params, shapes_table
from pipeline.data.table import read_table
from pipeline.detection.detectors import load_detector
from pipeline.detection.extract import extract_features
from pipeline.detection.settings import extract_settings
from pipeline.detection.store import ARRAYS, FeatureStore
from pipeline.detection.train import TrainSettings, load_shapes_detector, train_shapes_detector
from pipeline.training.checkpoint import load_state
from pipeline.training.data import RetrievalData
from pipeline.training.loop import train_method
from retrieval_fixtures import make_dataset, small_params

pytestmark = pytest.mark.usefixtures("one_thread")
DETECTOR = TrainSettings(iterations=6, batch_size=2, lr=0.004, warmup=0.0, width=8, representation=32,
                         proposals=50, checkpoint_every=3)


def assert_same_state(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert a[key].dtype == b[key].dtype and torch.equal(a[key], b[key]), key


def test_detector_training_and_extraction_rerun_bit_identically(tmp_path):
    table = read_table(shapes_table(tmp_path, 8))
    settings = extract_settings(params(), "tiny")
    stores = []
    for run in ("a", "b"):
        models = tmp_path / run / "models"
        report = train_shapes_detector(table, models / "tiny" / "detector", DETECTOR, seed=5, progress=False)
        stores.append(tmp_path / run / "features.zarr")
        extract_features(table, stores[-1], load_detector(settings, "tiny", models), settings, progress=False)
        if run == "b":
            assert report["metrics"] == first_report["metrics"]
        first_report = report
    a, _ = load_shapes_detector(tmp_path / "a" / "models" / "tiny" / "detector")
    b, _ = load_shapes_detector(tmp_path / "b" / "models" / "tiny" / "detector")
    assert_same_state(a.state_dict(), b.state_dict())
    got = [FeatureStore(p).read(np.arange(8)) for p in stores]
    for name in ARRAYS:
        assert got[0][name].tobytes() == got[1][name].tobytes(), name
    assert FeatureStore(stores[0]).attrs["weights_sha256"] == FeatureStore(stores[1]).attrs["weights_sha256"]


def test_method_training_reruns_bit_identically(tmp_path):
    table, store, text = make_dataset()
    data = RetrievalData(table, store, text, cache_splits=("train", "val"))
    p = small_params(epochs=2)
    for run in ("a", "b"):
        train_method("ss", p, data, tmp_path / run, tmp_path / f"{run}.json", dataset="synthetic", progress=False,
                     log=lambda _m: None)
    assert_same_state(load_state(tmp_path / "a" / "last.pt")["model"], load_state(tmp_path / "b" / "last.pt")["model"])
    assert (tmp_path / "a" / "model.pt").read_bytes() == (tmp_path / "b" / "model.pt").read_bytes()
    history = [json.loads((tmp_path / f"{run}.json").read_text()) for run in ("a", "b")]
    for h in history:
        for epoch in h:
            epoch.pop("seconds", None)  # wall-clock times are the only fields allowed to differ
            epoch.pop("validate_seconds", None)
    assert history[0] == history[1]


# The settings that can change a stage's numbers, by stage (docs/reliability.md "Determinism"); a section name
# tracks all of its keys.
NUMBER_SETTINGS = {
    "download": ["data.${item}"],
    "train_detector": ["seed", "detector", "train.portable_kernels"],  # detector.threads among them
    "extract": ["train.portable_kernels", "extract.threads", "extract.device", "extract.dtype", "extract.autocast", "extract.batch_size"],
    "tokenize": ["seed", "text"],
    "train_ss": ["seed", "train", "lambda"],  # train.threads, train.device, train.amp
    "train_cca": ["seed", "train"],
    "evaluate_ss": ["train.threads", "train.device", "train.amp", "train.eval_batch_size", "metrics"],
    "evaluate_cca": ["train.threads", "train.device", "train.amp", "train.eval_batch_size", "metrics"],
    "report": ["report"],  # report.bootstrap_seed, report.bootstrap_resamples
}


def test_every_setting_that_changes_numbers_is_a_tracked_param():
    import yaml

    from conftest import REPO

    from pipeline.dvc_stages import stage_params
    from pipeline.training.registry import METHODS

    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    for stage, keys in NUMBER_SETTINGS.items():
        command, _, method = stage.partition("_")
        if method in METHODS:  # recorded in the stage's fingerprint file (pipeline/dvc_stages.py)
            tracked = stage_params(method, command)
        else:
            tracked = stages[stage].get("do", stages[stage])["params"]
        assert set(keys) <= set(tracked), (stage, set(keys) - set(tracked))


@pytest.mark.parametrize("raw, key", [
    ({"seed": -1}, "seed"),
    ({"data": {"shapes": {"kind": "shapes", "seed": -3}}}, "data.shapes.seed"),
    ({"datasets": ["m"], "data": {"m": {"kind": "mirflickr", "split_seed": -1}}}, "data.m.split_seed"),
    ({"report": {"bootstrap_seed": -2}}, "report.bootstrap_seed"),
])
def test_a_seed_must_be_a_non_negative_integer(raw, key):
    from pipeline.params import ParamError, validate

    with pytest.raises(ParamError, match=rf"p.yaml: parameter '{key}' must be a non-negative integer, got -\d"):
        validate(raw, "p.yaml")
    for wrong in (1.5, "0", True):  # not integers: the schema's type check names the key too
        with pytest.raises(ParamError, match="parameter 'seed' must be an integer"):
            validate({"seed": wrong}, "p.yaml")
