"""Top retrievals per query and the rankings file the qualitative page reads."""
from __future__ import annotations

import numpy as np
import pytest

import metrics_reference as ref
from pipeline.metrics import MetricInputError, read_rankings, top_retrievals, write_rankings
from pipeline.metrics.rankings import RankingsError


def test_top_retrievals_against_reference():
    rng = np.random.default_rng(0)
    sim = rng.integers(0, 4, (7, 12)).astype(np.float32)  # ties: ranked by index
    top = top_retrievals(sim, n=5, chunk_size=3)
    np.testing.assert_array_equal(top["i2t_top"], [ref.order(sim[i])[:5] for i in range(7)])
    np.testing.assert_array_equal(top["t2i_top"], [ref.order(sim[:, t])[:5] for t in range(12)])
    assert top_retrievals(sim, n=50)["t2i_top"].shape == (12, 7)  # n clamped to the gallery


def test_top_retrievals_with_identical_texts():
    rng = np.random.default_rng(1)
    sim = rng.random((4, 6), dtype=np.float32)
    keys = ["a", "b", "a", "c", "b", "a"]  # distinct texts: a (0), b (1), c (3)
    top = top_retrievals(sim, n=3, text_keys=keys)
    first = np.array([0, 1, 3])
    np.testing.assert_array_equal(top["i2t_top"], [first[ref.order(sim[i, first])] for i in range(4)])
    # every caption gets the ranking of its distinct text
    np.testing.assert_array_equal(top["t2i_top"][2], top["t2i_top"][0])
    np.testing.assert_array_equal(top["t2i_top"][3], ref.order(sim[:, 3])[:3])
    with pytest.raises(MetricInputError, match="n must be at least 1"):
        top_retrievals(sim, n=0)


def test_rankings_round_trip_and_errors(tmp_path):
    path = tmp_path / "r" / "m.npz"
    top = top_retrievals(np.eye(3, dtype=np.float32)[:, [0, 0, 1, 2]], n=2)
    write_rankings(path, [5, 6, 7], [5, 5, 6, 7], [0, 1, 0, 0], top["i2t_top"], top["t2i_top"])
    back = read_rankings(path)
    assert back["image_rows"].tolist() == [5, 6, 7] and back["i2t_top"].shape == (3, 2)
    assert not list(path.parent.glob(".*tmp*"))  # written atomically, no leftovers
    with pytest.raises(RankingsError, match="i2t_top holds indices outside"):
        write_rankings(path, [5, 6, 7], [5, 5, 6, 7], [0, 1, 0, 0], top["i2t_top"] + 10, top["t2i_top"])
    with pytest.raises(RankingsError, match="caption_index has 3 entries"):
        write_rankings(path, [5, 6, 7], [5, 5, 6, 7], [0, 1, 0], top["i2t_top"], top["t2i_top"])
    with pytest.raises(RankingsError, match="rankings file not found"):
        read_rankings(tmp_path / "missing.npz")
    np.savez(tmp_path / "partial.npz", image_rows=np.arange(3))
    with pytest.raises(RankingsError, match="array 'caption_rows' missing"):
        read_rankings(tmp_path / "partial.npz")
