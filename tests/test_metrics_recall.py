"""Instance-level ranks, R@K, median and mean rank, rsum."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import metrics_reference as ref
from pipeline.metrics import MetricInputError, recall_summary, rsum
from pipeline.metrics.ranking import best_true_rank, ordered_topk


def test_recall_summary_hand_worked():
    out = recall_summary([0, 3, 7, 20], ks=(1, 5, 10), direction="i2t")
    assert out == {"r1_i2t": 25.0, "r5_i2t": 50.0, "r10_i2t": 75.0, "medr_i2t": 6.0, "meanr_i2t": 8.5}
    # median of an odd count, 1-based
    assert recall_summary([0, 0, 4], ks=(1,), direction="t2i")["medr_t2i"] == 1.0


def test_best_true_rank_hand_worked():
    scores = torch.tensor([[0.1, 0.9, 0.5, 0.5, 0.3],
                           [0.4, 0.4, 0.4, 0.4, 0.4]])
    # row 0: true items 2 and 4 -> item 2 (score 0.5) is ranked after 1 only (3 ties with 2 but has a higher index)
    # row 1: all equal -> rank = index of the lowest true index
    truth = torch.tensor([[4, 2], [3, -1]])
    assert best_true_rank(scores, truth).tolist() == [1, 3]
    truth = torch.tensor([[3, -1], [0, 4]])
    assert best_true_rank(scores, truth).tolist() == [2, 0]


@pytest.mark.parametrize("tied", [False, True])
def test_best_true_rank_against_reference(tied):
    rng = np.random.default_rng(3 + tied)
    scores = rng.integers(0, 5, (40, 30)).astype(np.float32) if tied else rng.random((40, 30), dtype=np.float32)
    truth = np.full((40, 3), -1)
    for q in range(40):  # building test data, not the code under test
        chosen = rng.choice(30, size=rng.integers(1, 4), replace=False)
        truth[q, :len(chosen)] = chosen
    got = best_true_rank(torch.from_numpy(scores), torch.from_numpy(truth)).numpy()
    expected = [ref.best_rank(scores[q], truth[q][truth[q] >= 0]) for q in range(40)]
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("k", [1, 4, 29, 30, 50])
def test_ordered_topk_follows_tie_rule(k):
    rng = np.random.default_rng(k)
    scores = rng.integers(0, 3, (20, 30)).astype(np.float32)
    scores[:5] = rng.random((5, 30))  # some untied rows take the fast path
    scores[5] = 0.0
    scores[6, ::2] = -0.0  # -0.0 and 0.0 are equal
    got = ordered_topk(torch.from_numpy(scores), k).numpy()
    expected = np.stack([ref.order(scores[q])[:k] for q in range(20)])
    np.testing.assert_array_equal(got, expected)


def test_ordered_topk_tie_inside_but_not_at_the_cut():
    # the top 3 set is unambiguous (3.0 > 2.0) but holds a tie: order by index within it
    scores = torch.tensor([[1.0, 5.0, 2.0, 5.0, 3.0, 0.0],
                           [5.0, 1.0, 5.0, 5.0, 2.0, 2.0]])
    assert ordered_topk(scores, 3).tolist() == [[1, 3, 4], [0, 2, 3]]
    # the cut falls inside a tie: lowest indices win
    assert ordered_topk(scores, 4).tolist() == [[1, 3, 4, 2], [0, 2, 3, 4]]


def test_rsum_and_errors():
    m = {f"r{k}_{d}": float(k) for d in ("i2t", "t2i") for k in (1, 5, 10)}
    assert rsum(m) == 32.0
    del m["r5_t2i"]
    with pytest.raises(MetricInputError, match="r5_t2i"):
        rsum(m)
    with pytest.raises(MetricInputError, match="non-empty"):
        recall_summary([])
    with pytest.raises(MetricInputError, match="at least 1"):
        recall_summary([1, 2], ks=(0,))
