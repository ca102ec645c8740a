"""mAP (whole ranking and @k) against hand-worked cases, the per-query reference and scikit-learn."""
from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import average_precision_score

import metrics_reference as ref
from pipeline.metrics import MetricInputError
from pipeline.metrics.average_precision import average_precision


def test_hand_worked_case():
    scores = [[0.9, 0.8, 0.7, 0.6]]
    relevant = [[1, 0, 1, 0]]
    # precision at the relevant ranks 1 and 3: 1/1 and 2/3
    assert average_precision(scores, relevant)[0] == pytest.approx((1 + 2 / 3) / 2)
    # @2: only rank 1 is relevant within the list -> 1/1 over 1 relevant found
    assert average_precision(scores, relevant, k=2)[0] == pytest.approx(1.0)
    # @1 with an irrelevant top item -> 0
    assert average_precision([[0.1, 0.9, 0.2, 0.3]], relevant, k=1)[0] == 0.0


def test_no_relevant_item_and_all_equal_scores():
    out = average_precision([[0.2, 0.2, 0.2], [0.2, 0.2, 0.2]], [[0, 0, 0], [0, 0, 1]])
    assert out[0] == 0.0
    assert out[1] == pytest.approx(1 / 3)  # equal scores rank by index: the relevant item is third


@pytest.mark.parametrize("k", [None, 1, 7, 100])
@pytest.mark.parametrize("tied", [False, True])
def test_random_against_reference(k, tied):
    rng = np.random.default_rng(7 + (k or 0) + tied)
    scores = rng.integers(0, 3, (25, 50)).astype(np.float32) if tied else rng.random((25, 50), dtype=np.float32)
    relevant = rng.random((25, 50)) < 0.2
    relevant[3] = False
    expected = [ref.average_precision(scores[q], relevant[q], k) for q in range(25)]
    np.testing.assert_allclose(average_precision(scores, relevant, k), expected, rtol=0, atol=1e-12)


def test_whole_ranking_matches_sklearn():
    rng = np.random.default_rng(1)
    scores = rng.random((20, 80))
    relevant = rng.random((20, 80)) < 0.25
    relevant[:, 0] = True  # sklearn needs a positive in every row
    expected = [average_precision_score(relevant[q], scores[q]) for q in range(20)]
    np.testing.assert_allclose(average_precision(scores, relevant), expected, rtol=0, atol=1e-7)


def test_bad_input():
    with pytest.raises(MetricInputError, match="same shape"):
        average_precision([[0.1]], [[1, 0]])
    with pytest.raises(MetricInputError, match="k must be"):
        average_precision([[0.1, 0.2]], [[1, 0]], k=0)
    with pytest.raises(MetricInputError, match="scores contain NaN or inf"):
        average_precision([[float("inf"), 0.2]], [[1, 0]])
