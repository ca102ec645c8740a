"""Micro-F1 of a label classifier three ways (papers/000 supplementary Table 1 and beyond).

Eq. 4 of papers/000 (`log(1 + exp(-sum(y_pred * y_true)))` on l2-normalised sigmoid outputs) does not fix
the scale of the outputs, so F1 at a fixed 0.5 threshold (the supplementary's table,
`pipeline.metrics.classification.micro_f1`) is arbitrary. Beside it:
- `tuned`: the single threshold that maximises Micro-F1 on the *validation* split, applied to the test
  split (never tuned on the test split);
- `topk`: each item predicts its k highest-scoring labels, k = its true number of labels (an oracle on
  the count, free of any threshold).
Inputs are probabilities `[N, C]` in [0, 1] and multi-hot labels `[N, C]`.
"""
from __future__ import annotations

import numpy as np

from pipeline.metrics.errors import MetricInputError


def _check(probabilities, labels, what: str) -> tuple[np.ndarray, np.ndarray]:
    p = np.asarray(probabilities, dtype=np.float64)
    y = np.asarray(labels) > 0
    if p.ndim != 2 or p.shape != y.shape:
        raise MetricInputError(f"{what}: probabilities {p.shape} and labels {y.shape} must be matrices of the "
                               "same shape [items, labels]")
    if not np.isfinite(p).all():
        raise MetricInputError(f"{what}: probabilities contain NaN or inf")
    return p, y


def _f1(predicted: np.ndarray, truth: np.ndarray) -> float:
    tp = int((predicted & truth).sum())
    denominator = int(predicted.sum()) + int(truth.sum())
    return 2.0 * tp / denominator if denominator else 0.0


def micro_f1_at(probabilities, labels, threshold: float) -> float:
    """Micro-F1 predicting every label with probability >= `threshold`."""
    p, y = _check(probabilities, labels, "micro_f1_at")
    return _f1(p >= threshold, y)


def tuned_threshold(probabilities, labels) -> float:
    """The threshold maximising Micro-F1 of `probabilities` against `labels` (use the validation split).

    Every cut between two distinct sorted scores is tried (exact, O(n log n)); the threshold returned lies
    midway between the last predicted and the first rejected score (1.0 past the top when predicting
    nothing is best, e.g. without any true label)."""
    p, y = _check(probabilities, labels, "tuned_threshold")
    scores, truth = p.ravel(), y.ravel()
    order = np.argsort(-scores, kind="stable")
    s, t = scores[order], truth[order]
    n_true = int(t.sum())
    if n_true == 0 or s.size == 0:
        return float(np.nextafter(s.max(), np.inf)) if s.size else 1.0
    tp = np.cumsum(t)
    k = np.arange(1, s.size + 1)
    f1 = 2.0 * tp / (k + n_true)
    distinct = np.append(s[1:] != s[:-1], True)        # a cut after position i only where the score changes
    f1 = np.where(distinct, f1, -1.0)
    best = int(np.argmax(f1))
    return float(s[best] if best + 1 == s.size else (s[best] + s[best + 1]) / 2)


def micro_f1_top_k(probabilities, labels) -> float:
    """Micro-F1 when each item predicts its k best labels, k = its true number of labels (ties: lower index)."""
    p, y = _check(probabilities, labels, "micro_f1_top_k")
    counts = y.sum(axis=1)
    ranks = np.argsort(np.argsort(-p, axis=1, kind="stable"), axis=1, kind="stable")
    return _f1(ranks < counts[:, None], y)


def f1_three_ways(val: tuple[np.ndarray, np.ndarray], test: tuple[np.ndarray, np.ndarray], modality: str) -> dict:
    """`f1_<modality>_tuned` (validation threshold on test), `f1_<modality>_topk`, and the threshold used
    (`f1_<modality>_val_threshold`); `val` / `test` are `(probabilities, labels)`."""
    threshold = tuned_threshold(*val)
    return {f"f1_{modality}_tuned": micro_f1_at(*test, threshold),
            f"f1_{modality}_topk": micro_f1_top_k(*test),
            f"f1_{modality}_val_threshold": threshold}
