"""Micro-F1 of the shared label classifier per modality (supplementary Table 1 of papers/000).

A label is predicted when its probability is >= `threshold` (logits go through a sigmoid first).
Micro-F1 pools every (item, label) decision: 2 TP / (2 TP + FP + FN). When there is nothing to count
(no true and no predicted label anywhere) the value is 0.0, scikit-learn's `zero_division=0`.
Reported as a fraction in [0, 1], as the supplementary table prints it.
"""
from __future__ import annotations

import numpy as np
import torch

from pipeline.metrics.errors import MetricInputError


def f1_counts(scores, labels, threshold: float = 0.5, from_logits: bool = True, what: str = "scores") -> np.ndarray:
    """Per item `[N, 3]` int64 counts `(TP, FP, FN)` over its labels; their column sums give Micro-F1
    (and the bootstrap of `pipeline.metrics.bootstrap` resamples items through them)."""
    s = torch.as_tensor(np.asarray(scores), dtype=torch.float64)
    y = torch.as_tensor(np.asarray(labels))
    if s.ndim != 2 or s.shape != y.shape:
        raise MetricInputError(f"micro_f1: {what} {tuple(s.shape)} and labels {tuple(y.shape)} must be "
                               "matrices of the same shape [items, labels]")
    if not torch.isfinite(s).all():
        raise MetricInputError(f"micro_f1: {what} contain NaN or inf")
    if not 0.0 < threshold < 1.0:
        raise MetricInputError(f"micro_f1: threshold must be strictly between 0 and 1, got {threshold}")
    if not from_logits and ((s < 0) | (s > 1)).any():
        raise MetricInputError(f"micro_f1: {what} were given as probabilities but lie outside [0, 1]")
    probabilities = torch.sigmoid(s) if from_logits else s
    predicted = probabilities >= threshold
    truth = y > 0
    counts = torch.stack([(predicted & truth).sum(1), (predicted & ~truth).sum(1), (~predicted & truth).sum(1)], 1)
    return counts.numpy().astype(np.int64)


def f1_from_counts(tp, fp, fn) -> float:
    """2 TP / (2 TP + FP + FN), 0.0 when there is nothing to count."""
    denominator = 2 * tp + fp + fn
    return 2.0 * tp / denominator if denominator else 0.0


def micro_f1(scores, labels, threshold: float = 0.5, from_logits: bool = True, what: str = "scores") -> float:
    """Micro-F1 of `scores` (`[N, C]` logits or probabilities) against multi-hot `labels` `[N, C]`."""
    tp, fp, fn = (int(v) for v in f1_counts(scores, labels, threshold, from_logits, what).sum(0))
    return f1_from_counts(tp, fp, fn)
