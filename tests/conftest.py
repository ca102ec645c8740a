"""Shared fixtures: tiny datasets built by the tests themselves, and the shared real-data fixture."""
from __future__ import annotations

import copy
from pathlib import Path

import pytest

from pipeline.params import SHAPES_SCHEMA

REPO = Path(__file__).resolve().parents[1]
COCO_MINI = REPO.parent / "shared" / "coco-mini"


def tiny_shapes_params(**overrides) -> dict:
    """Params of a shapes dataset small enough for a test (a few seconds)."""
    p = copy.deepcopy(SHAPES_SCHEMA)
    p.update(n_images=40, n_val=8, n_test=8)
    p.update(overrides)
    return p


@pytest.fixture
def coco_mini() -> Path:
    if not (COCO_MINI / "annotations").is_dir():
        pytest.skip(f"real-data fixture {COCO_MINI} is absent (it ships in shared/ beside the checkout)")
    return COCO_MINI


@pytest.fixture(scope="session")
def shapes_raw(tmp_path_factory) -> Path:
    """A generated tiny shapes dataset (data/<ds>/raw layout) shared by the tests of a session."""
    from pipeline.data.shapes import generate

    data_dir = tmp_path_factory.mktemp("data")
    generate(data_dir / "shapes" / "raw", tiny_shapes_params())
    return data_dir


@pytest.fixture
def one_thread():
    """Tiny tensors: one thread avoids thread-pool overhead (large on a busy 2-core machine)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
