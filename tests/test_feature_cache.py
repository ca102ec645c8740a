"""The in-memory feature cache: its size limit (a param, or what the machine has available) and the one
line that says whether the features are held or streamed, and why."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from pipeline.training import data as data_module
from pipeline.training.data import RetrievalData, cache_limit_gb
from retrieval_fixtures import make_dataset

# make_dataset: 80 train images x 8 regions x 16-d float16
TRAIN_GB = 80 * 8 * 16 * 2 / 2**30


def test_a_set_limit_is_used_as_given():
    assert cache_limit_gb(3.5) == (3.5, "train.cache_features_gb")
    assert cache_limit_gb(0) == (0.0, "train.cache_features_gb")


@pytest.mark.parametrize("available, limit", [(16.0, 12.0), (4.0, 2.0), (1.5, 0.0)])
def test_null_takes_what_is_available_minus_a_margin(monkeypatch, available, limit):
    monkeypatch.setattr(data_module, "available_memory_gb", lambda: available)
    got, source = cache_limit_gb(None)
    assert got == pytest.approx(limit)
    assert f"{available:.1f} GiB available" in source


def test_stages_running_at_once_share_what_is_available(monkeypatch):
    """`make repro` runs its lanes' stages side by side, each reading the same MemAvailable at its start:
    each takes its share, and the line says so."""
    monkeypatch.setattr(data_module, "available_memory_gb", lambda: 16.0)
    monkeypatch.setenv("XMR_CONCURRENT_STAGES", "2")
    got, source = cache_limit_gb(None)
    assert got == pytest.approx(8.0 - 2.0)  # each share keeps its own margin for its stage's model and the rest
    assert "1/2 share" in source and "XMR_CONCURRENT_STAGES" in source and "16.0 GiB available" in source
    monkeypatch.setenv("XMR_CONCURRENT_STAGES", "8")
    assert cache_limit_gb(None)[0] == 0.0  # 2 GiB a stage: nothing left to cache, every stage streams
    assert cache_limit_gb(5.0) == (5.0, "train.cache_features_gb")  # a set limit is the user's, per stage
    monkeypatch.setenv("XMR_CONCURRENT_STAGES", "1")
    assert cache_limit_gb(None) == (12.0, "the 16.0 GiB available minus a margin")


@pytest.mark.parametrize("value", ["0", "two", "-1", "1.5"])
def test_a_bad_stage_count_names_the_variable(monkeypatch, value):
    monkeypatch.setenv("XMR_CONCURRENT_STAGES", value)
    with pytest.raises(ValueError, match=f"XMR_CONCURRENT_STAGES must be a whole number >= 1.*{value!r}"):
        cache_limit_gb(None)


def test_available_memory_is_positive_here():
    assert data_module.available_memory_gb() > 0


def test_one_line_says_held_or_streamed_and_why(monkeypatch):
    table, store, text = make_dataset()
    lines: list[str] = []
    held = RetrievalData(table, store, text, cache_splits=("train",), cache_gb=1.0, log=lines.append)
    assert held._cache is not None
    streamed = RetrievalData(table, store, text, cache_splits=("train",), cache_gb=TRAIN_GB * 0.95, log=lines.append)
    assert set(streamed._cache) == {"positions", "classes"}  # the boxes fit, the features do not
    train = streamed.split_items("train").captions
    assert streamed.is_streamed(train) and not held.is_streamed(train)
    monkeypatch.setattr(data_module, "available_memory_gb", lambda: 0.5)
    auto = RetrievalData(table, store, text, cache_splits=("train",), cache_gb=None, log=lines.append)
    assert auto._cache is None and auto.is_streamed(train)
    assert len(lines) == 3
    assert lines[0].startswith("features of train: held in memory") and "train.cache_features_gb" in lines[0]
    assert "streamed from" in lines[1] and "over the limit of 0.0 GiB from train.cache_features_gb" in lines[1]
    assert "their boxes' positions and classes are held in memory" in lines[1]
    assert "positions and classes" not in lines[2]
    assert "the 0.5 GiB available minus a margin" in lines[2]
    rows = np.array([5, 3, 5, 0])
    for a, b in ((held, streamed), (held, auto)):
        for field in ("features", "positions", "classes"):
            assert torch.equal(getattr(a.image_batch(rows), field), getattr(b.image_batch(rows), field)), field
