"""NDCG@k against hand-worked cases, the per-query reference and scikit-learn."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from sklearn.metrics import ndcg_score

import metrics_reference as ref
from pipeline.metrics import MetricInputError, ndcg_at_k
from pipeline.metrics.ndcg import official_coco_t2i_discount


def test_hand_worked_case():
    # ranking by score: items 0, 1, 2 with relevances 0, 2, 1
    scores = [[0.9, 0.8, 0.7]]
    rel = [[0, 2, 1]]
    dcg = 0 / math.log2(2) + 2 / math.log2(3) + 1 / math.log2(4)
    idcg = 2 / math.log2(2) + 1 / math.log2(3)
    assert ndcg_at_k(scores, rel, k=3)[0] == pytest.approx(dcg / idcg, abs=1e-12)
    # k = 1: the top item is irrelevant -> DCG 0 -> NDCG 0
    assert ndcg_at_k(scores, rel, k=1)[0] == 0.0
    # k = 2
    assert ndcg_at_k(scores, rel, k=2)[0] == pytest.approx((2 / math.log2(3)) / (2 + 1 / math.log2(3)), abs=1e-12)


def test_query_without_relevant_item_scores_zero():
    out = ndcg_at_k([[0.3, 0.2, 0.1], [0.1, 0.2, 0.3]], [[0, 0, 0], [1, 0, 0]], k=3)
    assert out[0] == 0.0
    assert out[1] == pytest.approx((1 / math.log2(4)) / 1.0)


def test_all_equal_scores_rank_by_index():
    # equal scores: order 0, 1, 2, 3 -> relevances 0, 1, 0, 3
    out = ndcg_at_k([[0.5, 0.5, 0.5, 0.5]], [[0, 1, 0, 3]], k=4)[0]
    dcg = 1 / math.log2(3) + 3 / math.log2(5)
    idcg = 3 + 1 / math.log2(3)
    assert out == pytest.approx(dcg / idcg, abs=1e-12)
    # a tie straddling the cut-off: items 2 and 3 tie for rank 1; the lower index (2) wins
    out = ndcg_at_k([[0.9, 0.1, 0.5, 0.5]], [[1, 0, 0, 2]], k=2)[0]
    assert out == pytest.approx(1.0 / (2 + 1 / math.log2(3)), abs=1e-12)


def test_k_larger_than_gallery_uses_whole_gallery():
    rng = np.random.default_rng(0)
    s, r = rng.random((6, 9)), rng.integers(0, 3, (6, 9))
    np.testing.assert_allclose(ndcg_at_k(s, r, k=10_000), ndcg_at_k(s, r, k=9), rtol=0, atol=0)


@pytest.mark.parametrize("k", [1, 5, 40, 500])
@pytest.mark.parametrize("tied", [False, True])
def test_random_against_reference(k, tied):
    rng = np.random.default_rng(k + 100 * tied)
    scores = rng.integers(0, 4, (30, 60)).astype(np.float32) if tied else rng.random((30, 60), dtype=np.float32)
    labels_q, labels_g = rng.random((30, 7)) < 0.3, rng.random((60, 7)) < 0.3
    rel = labels_q.astype(int) @ labels_g.astype(int).T
    expected = [ref.ndcg(scores[q], rel[q], k) for q in range(30)]
    np.testing.assert_allclose(ndcg_at_k(scores, rel, k), expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize("k", [3, 10, 60])
def test_matches_sklearn_where_definitions_coincide(k):
    # sklearn averages tied items; with distinct scores and linear gain the definitions coincide,
    # including queries without relevant items (both give 0)
    rng = np.random.default_rng(k)
    scores = rng.random((40, 60))
    rel = rng.integers(0, 4, (40, 60)) * (rng.random((40, 60)) < 0.3)
    rel[0] = 0
    ours = ndcg_at_k(scores, rel, k).mean()
    assert ours == pytest.approx(ndcg_score(rel, scores, k=k), abs=1e-7)


def test_official_coco_discount():
    disc = official_coco_t2i_discount(3, torch.tensor([0, 4]))
    expected = [[1 / math.log2(5 * i + j + 2) for i in range(3)] for j in (0, 4)]
    np.testing.assert_allclose(disc.numpy(), expected, rtol=1e-15)


def test_bad_shapes():
    with pytest.raises(MetricInputError, match="same shape"):
        ndcg_at_k([[0.1, 0.2]], [[1, 0, 1]])
    with pytest.raises(MetricInputError, match="k must be"):
        ndcg_at_k([[0.1, 0.2]], [[1, 0]], k=0)
    with pytest.raises(MetricInputError, match="scores contain NaN or inf"):
        ndcg_at_k([[0.1, float("nan")]], [[1, 0]])
    with pytest.raises(MetricInputError, match="non-negative integers"):
        ndcg_at_k([[0.1, 0.2]], [[0.5, 0]])
