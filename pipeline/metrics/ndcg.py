"""Label-wise NDCG@k as the official evaluation of papers/000 computes it.

Relevance of a gallery item to a query = number of labels they share. DCG@k sums
`rel_i / log2(i + 2)` over the first k ranks (i 0-based, linear gain); IDCG@k is the same sum over
the k largest relevances of the query; NDCG = DCG / IDCG when DCG > 0, else 0 (so a query with no
relevant item scores 0 and still counts in the mean). k larger than the gallery means the whole
gallery. The values here are fractions; `evaluate_similarity` reports the mean times 100.
"""
from __future__ import annotations

import numpy as np
import torch

from pipeline.metrics.errors import MetricInputError
from pipeline.metrics.ranking import ordered_topk
from pipeline.metrics.scoring import check_finite


def shared_label_counts(query_labels: torch.Tensor, gallery_labels: torch.Tensor) -> torch.Tensor:
    """`[queries, gallery]` number of shared labels (exact integers held as float32)."""
    return query_labels @ gallery_labels.T


def standard_discount(k: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """`1 / log2(i + 2)` for ranks i = 0..k-1, float64."""
    return 1.0 / torch.log2(torch.arange(k, dtype=torch.float64, device=device) + 2.0)


def official_coco_t2i_discount(k: int, caption_position: torch.Tensor) -> torch.Tensor:
    """The official code's COCO text->image discount `1 / log2(5 i + j + 2)`, j = the caption's
    position (0-4) among its image's captions: `[queries, k]`. Kept only to reproduce that code;
    it looks like a bug and is not the default."""
    ranks = torch.arange(k, dtype=torch.float64, device=caption_position.device)
    return 1.0 / torch.log2(5.0 * ranks.unsqueeze(0) + caption_position.double().unsqueeze(1) + 2.0)


def relevance_histogram(relevance: torch.Tensor, weights: torch.Tensor | None = None,
                        max_relevance: int | None = None) -> torch.Tensor:
    """`[queries, max_relevance + 1]` float64: how many gallery items have each relevance value.

    `relevance` holds non-negative integers; `weights` (`[gallery]`) counts each column that many
    times (columns standing for several gallery items with identical labels).
    """
    rel = relevance.long()
    width = int(rel.max()) + 1 if max_relevance is None else max_relevance + 1
    w = torch.ones_like(rel, dtype=torch.float64) if weights is None else \
        weights.to(torch.float64).unsqueeze(0).expand(rel.shape[0], -1)
    hist = torch.zeros(rel.shape[0], max(width, 1), dtype=torch.float64, device=rel.device)
    return hist.scatter_add_(1, rel, w)


def ideal_dcg(histogram: torch.Tensor, discount: torch.Tensor) -> torch.Tensor:
    """IDCG@k from relevance counts, without sorting the gallery.

    The ideal ranking lists relevance values from high to low; with n_v = number of items whose
    relevance is >= v and D(n) the sum of the first n discounts, IDCG@k = sum over v >= 1 of
    D(min(n_v, k)). `discount` is `[k]` or `[queries, k]`.
    """
    k = discount.shape[-1]
    at_least = histogram.flip(1).cumsum(1).flip(1)[:, 1:].clamp(max=k).long()  # n_v for v = 1..max
    cumulative = torch.nn.functional.pad(discount.cumsum(-1), (1, 0))
    if cumulative.ndim == 1:
        return cumulative[at_least].sum(dim=1)
    return cumulative.gather(1, at_least).sum(dim=1)


def ndcg_values(ranked_gains: torch.Tensor, discount: torch.Tensor, idcg: torch.Tensor) -> torch.Tensor:
    """Per-query NDCG (fraction, float64): DCG of the ranked relevances over IDCG, 0 when DCG is 0."""
    dcg = (ranked_gains.double() * discount).sum(dim=1)
    return torch.where(dcg > 0, dcg / torch.where(idcg > 0, idcg, torch.ones_like(idcg)), torch.zeros_like(dcg))


def ndcg_at_k(scores, relevance, k: int = 500) -> np.ndarray:
    """Per-query NDCG@k (fractions) for a dense score matrix and a dense relevance matrix.

    A convenience for small matrices; `evaluate_similarity` is the chunked entry point.
    """
    scores_t = torch.as_tensor(np.asarray(scores), dtype=torch.float32)
    relevance_t = torch.as_tensor(np.asarray(relevance), dtype=torch.float32)
    if scores_t.ndim != 2 or scores_t.shape != relevance_t.shape:
        raise MetricInputError(f"ndcg_at_k: scores {tuple(scores_t.shape)} and relevance "
                               f"{tuple(relevance_t.shape)} must be matrices of the same shape")
    check_finite(scores_t, "ndcg_at_k: scores")
    if k < 1:
        raise MetricInputError(f"ndcg_at_k: k must be at least 1, got {k}")
    if bool((relevance_t < 0).any()) or bool((relevance_t != relevance_t.round()).any()):
        raise MetricInputError("ndcg_at_k: relevance must hold non-negative integers (shared-label counts)")
    k = min(k, scores_t.shape[1])
    top = ordered_topk(scores_t, k)
    discount = standard_discount(k)
    idcg = ideal_dcg(relevance_histogram(relevance_t), discount)
    return ndcg_values(relevance_t.gather(1, top), discount, idcg).numpy()
