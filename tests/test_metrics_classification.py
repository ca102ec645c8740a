"""Micro-F1 of the shared classifier against hand-worked cases and scikit-learn."""
from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import f1_score

from pipeline.metrics import MetricInputError, micro_f1


def test_hand_worked_case():
    probs = [[0.9, 0.2, 0.6], [0.1, 0.7, 0.4]]
    labels = [[1, 0, 0], [0, 1, 1]]
    # predicted at 0.5: (0,0) (0,2) (1,1) -> TP 2, FP 1, FN 1 -> F1 = 4 / 6
    assert micro_f1(probs, labels, from_logits=False) == pytest.approx(4 / 6)
    # threshold 0.65: (0,0) (1,1) -> TP 2, FP 0, FN 1 -> 4 / 5
    assert micro_f1(probs, labels, threshold=0.65, from_logits=False) == pytest.approx(4 / 5)


def test_logits_go_through_sigmoid():
    logits = np.array([[2.0, -1.0], [0.0, -0.1]])
    labels = np.array([[1, 0], [1, 1]])
    # sigmoid >= 0.5 <=> logit >= 0: predicted (0,0) (1,0): TP 2, FN 1
    assert micro_f1(logits, labels) == pytest.approx(4 / 5)


@pytest.mark.parametrize("threshold", [0.3, 0.5, 0.8])
def test_random_against_sklearn(threshold):
    rng = np.random.default_rng(int(threshold * 10))
    logits = rng.normal(size=(50, 12))
    labels = (rng.random((50, 12)) < 0.3).astype(int)
    predicted = (1 / (1 + np.exp(-logits)) >= threshold).astype(int)
    assert micro_f1(logits, labels, threshold) == pytest.approx(f1_score(labels, predicted, average="micro"))


def test_nothing_to_count_is_zero():
    assert micro_f1(np.full((3, 4), -5.0), np.zeros((3, 4))) == 0.0


def test_bad_input():
    with pytest.raises(MetricInputError, match="same shape"):
        micro_f1(np.zeros((2, 3)), np.zeros((2, 4)))
    with pytest.raises(MetricInputError, match="NaN"):
        micro_f1(np.array([[np.nan]]), np.array([[1]]))
    with pytest.raises(MetricInputError, match="threshold"):
        micro_f1(np.zeros((1, 1)), np.ones((1, 1)), threshold=1.0)
    with pytest.raises(MetricInputError, match="outside"):
        micro_f1(np.array([[1.5]]), np.array([[1]]), from_logits=False)
