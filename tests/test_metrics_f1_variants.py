"""Micro-F1 three ways: at 0.5, at a validation-tuned threshold, at top-k (hand-computed cases)."""
from __future__ import annotations

import numpy as np
import pytest

from pipeline.metrics.classification import micro_f1
from pipeline.metrics.errors import MetricInputError
from pipeline.metrics.f1_variants import f1_three_ways, micro_f1_at, micro_f1_top_k, tuned_threshold

# Outputs on a small scale (Eq. 4 fixes none): every probability is below 0.5.
VAL_P = np.array([[0.30, 0.10, 0.20], [0.05, 0.25, 0.28], [0.22, 0.21, 0.02]])
VAL_Y = np.array([[1, 0, 0], [0, 1, 1], [1, 0, 0]])


def test_fixed_threshold_predicts_nothing_on_small_outputs():
    assert micro_f1(VAL_P, VAL_Y, 0.5, from_logits=False) == 0.0
    assert micro_f1_at(VAL_P, VAL_Y, 0.5) == 0.0


def test_tuned_threshold_is_the_best_cut_on_validation():
    # Sorted scores: .30(T) .28(T) .25(T) .22(T) .21(F) .20(F) .10 .05 .02; 4 true labels.
    # Cut after .22: TP 4, predicted 4 -> F1 1.0; the threshold lies midway between .22 and .21.
    t = tuned_threshold(VAL_P, VAL_Y)
    assert t == pytest.approx(0.215)
    assert micro_f1_at(VAL_P, VAL_Y, t) == 1.0
    # Ties: two equal scores (one true, one false) are cut together, never between.
    p = np.array([[0.9, 0.5, 0.5]])
    y = np.array([[1, 1, 0]])
    # Cut after .9: F1 = 2/3; after both .5: TP 2, predicted 3 -> 4/5.
    assert micro_f1_at(p, y, tuned_threshold(p, y)) == pytest.approx(0.8)


def test_top_k_uses_each_items_true_label_count():
    p = np.array([[0.9, 0.8, 0.1], [0.2, 0.3, 0.4], [0.5, 0.6, 0.7]])
    y = np.array([[1, 0, 1], [0, 0, 1], [0, 0, 0]])
    # Item 0 (k=2) predicts labels 0, 1: TP 1, FP 1, FN 1; item 1 (k=1) predicts 2: TP 1; item 2 (k=0): nothing.
    # Micro-F1 = 2*2 / (2*2 + 1 + 1) = 4/6.
    assert micro_f1_top_k(p, y) == pytest.approx(4 / 6)


def test_three_ways_apply_the_validation_threshold_to_test():
    test_p = np.array([[0.26, 0.21, 0.05], [0.18, 0.30, 0.01]])
    test_y = np.array([[1, 1, 0], [0, 1, 0]])
    out = f1_three_ways((VAL_P, VAL_Y), (test_p, test_y), "image")
    # Threshold .215 on test: predicts (.26, .30) -> TP 2, FN 1 -> 4/5; top-k: item 0 k=2 -> (0, 1) TP 2,
    # item 1 k=1 -> label 1 TP 1 -> 1.0.
    assert out == {"f1_image_tuned": pytest.approx(0.8), "f1_image_topk": 1.0,
                   "f1_image_val_threshold": pytest.approx(0.215)}


def test_bad_shapes_are_errors():
    with pytest.raises(MetricInputError, match="same shape"):
        micro_f1_top_k(np.zeros((2, 3)), np.zeros((2, 2)))
    with pytest.raises(MetricInputError, match="NaN"):
        tuned_threshold(np.array([[np.nan]]), np.array([[1]]))
