"""Deterministic ranking of a block of scores: the tie rule every metric shares.

Tie rule: a gallery is ranked by score, highest first; items with *equal* scores are ordered by
gallery index, lowest first (a stable descending sort). Scores are compared as float32, so two
float64 scores closer than float32 resolution count as equal. `-0.0` and `0.0` are equal.

`torch.topk` is fast but leaves the order of equal values to the implementation, so `ordered_topk`
takes its answer only for rows where the top k+1 values are all distinct (then the set and the
order of the top k are unique); rows with a tie there are resolved explicitly (`_topk_with_ties`).
"""
from __future__ import annotations

import torch


def stable_order(scores: torch.Tensor) -> torch.Tensor:
    """Indices of every row sorted by the tie rule: `[rows, gallery]` int64."""
    # + 0.0 turns -0.0 into 0.0, so a sort that looks at bit patterns still sees them as equal
    return torch.sort(scores + 0.0, dim=1, descending=True, stable=True).indices


def ordered_topk(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Indices of the k best items of each row, in rank order under the tie rule: `[rows, k]`."""
    n = scores.shape[1]
    if k >= n:
        return stable_order(scores)
    if k <= 0:
        return torch.empty(scores.shape[0], 0, dtype=torch.long, device=scores.device)
    values, indices = torch.topk(scores, k + 1, dim=1, largest=True, sorted=True)
    boundary = values[:, k - 1] == values[:, k]  # the k-th item ties with the next: the set is ambiguous
    inside = (values[:, 1:k] == values[:, :k - 1]).any(dim=1) & ~boundary  # set fixed, order of ties not
    indices = indices[:, :k]
    if bool(inside.any()):
        rows = inside.nonzero(as_tuple=True)[0]
        indices[rows] = _sort_by_score_then_index(values[rows, :k], indices[rows])
    if bool(boundary.any()):
        rows = boundary.nonzero(as_tuple=True)[0]
        indices[rows] = _topk_with_ties(scores[rows], values[rows, k - 1:k], k)
    return indices


def _sort_by_score_then_index(values: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Reorder `index` (with its `values`) by value descending, equal values by index ascending."""
    by_index = torch.sort(index, dim=1).indices
    index, values = index.gather(1, by_index), values.gather(1, by_index)
    return index.gather(1, torch.sort(values + 0.0, dim=1, descending=True, stable=True).indices)


def _topk_with_ties(scores: torch.Tensor, kth: torch.Tensor, k: int) -> torch.Tensor:
    """`ordered_topk` for rows with ties: every item above the k-th value, then the lowest-index
    items equal to it until k are taken; the k chosen are then sorted stably (by index on ties)."""
    above = scores > kth
    equal = scores == kth
    room = k - above.sum(dim=1, keepdim=True)
    chosen = above | (equal & (equal.cumsum(dim=1) <= room))
    index = chosen.nonzero()[:, 1].view(scores.shape[0], k)  # ascending index within each row
    order = torch.sort(scores.gather(1, index) + 0.0, dim=1, descending=True, stable=True).indices
    return index.gather(1, order)


def best_true_rank(scores: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """0-based rank of the best-ranked true item of each row under the tie rule.

    `truth` is `[rows, m]` gallery indices padded with -1 (every row needs at least one). The rank
    counts the items ordered before the best true item: higher scores, and equal scores at a lower
    index. Costs two comparisons per score instead of a sort.
    """
    valid = truth >= 0
    safe = truth.clamp(min=0)
    true_scores = scores.gather(1, safe).masked_fill(~valid, float("-inf"))
    best = true_scores.max(dim=1, keepdim=True).values
    n = scores.shape[1]
    candidates = valid & (true_scores == best)
    best_index = torch.where(candidates, safe, torch.full_like(safe, n)).min(dim=1, keepdim=True).values
    higher = torch.count_nonzero(scores > best, dim=1)
    equal = torch.count_nonzero(scores == best, dim=1)
    tied = (equal > 1).nonzero(as_tuple=True)[0]  # rare with continuous scores: count ties ahead of it
    if len(tied):
        position = torch.arange(n, device=scores.device).unsqueeze(0)
        ahead = (scores[tied] == best[tied]) & (position < best_index[tied])
        higher[tied] += torch.count_nonzero(ahead, dim=1)
    return higher
