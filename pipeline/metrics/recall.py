"""Instance-level retrieval metrics from 0-based ranks (SCAN's evaluation, papers/002 and 003).

The rank of a query is the 0-based position of its best-ranked true item (an image query has 5
true captions; a caption query has its one image, or several after identical-text de-duplication).
R@K = 100 x fraction of queries with rank < K; median rank = floor(median(rank)) + 1; mean rank =
mean(rank) + 1 (both 1-based, as the official code prints them).
"""
from __future__ import annotations

from typing import Iterable

import numpy as np

from pipeline.metrics.errors import MetricInputError

DEFAULT_KS = (1, 5, 10, 20, 50, 100)


def recall_summary(ranks, ks: Iterable[int] = DEFAULT_KS, direction: str = "i2t") -> dict[str, float]:
    """`{r<K>_<direction>, medr_<direction>, meanr_<direction>}` from 0-based ranks."""
    ranks = np.asarray(ranks, dtype=np.float64)
    if ranks.ndim != 1 or ranks.size == 0:
        raise MetricInputError(f"recall_summary: expected a non-empty 1-D array of ranks, got shape {ranks.shape}")
    out = {}
    for k in ks:
        if int(k) < 1:
            raise MetricInputError(f"recall_summary: recall K must be at least 1, got {k}")
        out[f"r{int(k)}_{direction}"] = float(100.0 * np.mean(ranks < int(k)))
    out[f"medr_{direction}"] = float(np.floor(np.median(ranks)) + 1)
    out[f"meanr_{direction}"] = float(ranks.mean() + 1)
    return out


def rsum(metrics: dict[str, float]) -> float:
    """R@1 + R@5 + R@10 in both directions (the model-selection score of SCAN-like methods)."""
    keys = [f"r{k}_{d}" for d in ("i2t", "t2i") for k in (1, 5, 10)]
    missing = [k for k in keys if k not in metrics]
    if missing:
        raise MetricInputError(f"rsum needs R@1, R@5 and R@10 in both directions; missing {missing[0]!r}")
    return float(sum(metrics[k] for k in keys))
