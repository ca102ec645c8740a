"""Label-wise average precision (DSCMR-style, multi-label convention of the reference notes).

A gallery item is relevant to a query when they share at least one label. AP over a ranked list is
the mean of precision@i over the ranks i that hold a relevant item, i.e. divided by the number of
relevant items *in that list*: over the whole ranking that is every relevant item; for mAP@k it is
the relevant items within the top k (the DSCMR/DCMH convention). A query with no relevant item in
the list has AP 0 and still counts in the mean.
"""
from __future__ import annotations

import numpy as np
import torch

from pipeline.metrics.errors import MetricInputError
from pipeline.metrics.ranking import ordered_topk
from pipeline.metrics.scoring import check_finite


def ap_from_hits(hit: torch.Tensor) -> torch.Tensor:
    """Per-query AP (fraction, float64) of a ranked list given as `[queries, L]` booleans: whether
    the item at each rank is relevant."""
    hits = hit.cumsum(dim=1, dtype=torch.float64)
    positions = torch.arange(1, hit.shape[1] + 1, dtype=torch.float64, device=hit.device)
    precision_sum = ((hits / positions) * hit).sum(dim=1)
    found = hits[:, -1] if hit.shape[1] else torch.zeros(hit.shape[0], dtype=torch.float64, device=hit.device)
    return torch.where(found > 0, precision_sum / found.clamp(min=1.0), torch.zeros_like(found))


def average_precision(scores, relevant, k: int | None = None) -> np.ndarray:
    """Per-query AP (fractions) over the whole ranking, or over the top k when `k` is given.

    A convenience for small dense matrices; `evaluate_similarity` is the chunked entry point.
    """
    scores_t = torch.as_tensor(np.asarray(scores), dtype=torch.float32)
    relevant_t = torch.as_tensor(np.asarray(relevant)).bool()
    if scores_t.ndim != 2 or scores_t.shape != relevant_t.shape:
        raise MetricInputError(f"average_precision: scores {tuple(scores_t.shape)} and relevant "
                               f"{tuple(relevant_t.shape)} must be matrices of the same shape")
    check_finite(scores_t, "average_precision: scores")
    n = scores_t.shape[1]
    if k is not None and k < 1:
        raise MetricInputError(f"average_precision: k must be at least 1, got {k}")
    ranked = ordered_topk(scores_t, n if k is None else min(k, n))
    return ap_from_hits(relevant_t.gather(1, ranked)).numpy()
