"""Bidirectional triplet ranking loss on a score matrix whose diagonal holds the positive pairs.

Used by SCAN (papers/002 Eq. 13-15: hardest negatives, VSE++) and by the dual-path model
(papers/003 Eq. 4: one negative per anchor, the official code pairs each anchor with a random
other item of the batch). `scores[i, j]` is the similarity of image i and text j; image i and
text i form the positive pair. Pairs that share an image (two captions of one image in a batch)
are not negatives: callers pass `negatives` built by `distinct_images`.
"""
from __future__ import annotations

import torch

MINING = ("hardest", "sampled", "all")


def distinct_images(image_rows: torch.Tensor, text_rows: torch.Tensor) -> torch.Tensor:
    """`[B, B]` bool: image i and the image of text j differ (so (i, j) is a true negative)."""
    return image_rows.unsqueeze(1) != text_rows.unsqueeze(0)


def _pick(costs: torch.Tensor, valid: torch.Tensor, mining: str, generator: torch.Generator | None) -> torch.Tensor:
    """Per anchor (row) the loss over its valid negatives (columns)."""
    if mining == "all":
        return (costs * valid).sum(dim=1)
    if mining == "hardest":
        # The hinge is monotone in the negative's score, so the hardest negative has the largest cost.
        chosen = costs.masked_fill(~valid, 0.0).max(dim=1).values
    else:  # sampled: a uniform draw among the valid negatives of each anchor
        keys = torch.rand(costs.shape, device=costs.device, generator=generator)
        index = keys.masked_fill(~valid, -1.0).argmax(dim=1, keepdim=True)
        chosen = costs.gather(1, index).squeeze(1)
    return torch.where(valid.any(dim=1), chosen, torch.zeros_like(chosen))


def triplet_ranking_loss(scores: torch.Tensor, margin: float, negatives: torch.Tensor | None = None, *,
                         mining: str = "hardest", reduction: str = "sum",
                         generator: torch.Generator | None = None) -> torch.Tensor:
    """`sum_i [m - s_ii + s_i,n(i)]_+ + [m - s_ii + s_n'(i),i]_+` over anchors i of both modalities.

    `negatives[i, j]` (bool `[B, B]`, default: every off-diagonal pair) marks the pairs usable as
    negatives. `mining`: "hardest" (VSE++, the negative with the highest score), "sampled" (one
    uniformly drawn negative per anchor) or "all" (sum over every negative, papers/002 Eq. 13).
    An anchor without any valid negative contributes 0. `reduction`: "sum" over anchors (the
    papers' form) or "mean" (divided by B).
    """
    if scores.ndim != 2 or scores.shape[0] != scores.shape[1]:
        raise ValueError(f"triplet_ranking_loss: scores must be a square [B, B] matrix, got {tuple(scores.shape)}")
    if mining not in MINING:
        raise ValueError(f"triplet_ranking_loss: mining must be one of {', '.join(MINING)}, got {mining!r}")
    if reduction not in ("sum", "mean"):
        raise ValueError(f"triplet_ranking_loss: reduction must be 'sum' or 'mean', got {reduction!r}")
    b = scores.shape[0]
    if negatives is None:
        negatives = ~torch.eye(b, dtype=torch.bool, device=scores.device)
    elif negatives.shape != scores.shape:
        raise ValueError(f"triplet_ranking_loss: negatives {tuple(negatives.shape)} and scores "
                         f"{tuple(scores.shape)} differ in shape")
    negatives = negatives.to(torch.bool)
    positive = scores.diagonal()
    cost_image_anchor = (margin - positive.unsqueeze(1) + scores).clamp_min(0)      # rows: image anchors
    cost_text_anchor = (margin - positive.unsqueeze(0) + scores).clamp_min(0).T     # rows: text anchors
    total = (_pick(cost_image_anchor, negatives, mining, generator).sum()
             + _pick(cost_text_anchor, negatives.T, mining, generator).sum())
    return total / b if reduction == "mean" else total


def pooled_hardest_ranking_loss(scores: torch.Tensor, margin: float, negatives: torch.Tensor | None = None, *,
                                pool: int = 256, reduction: str = "mean",
                                generator: torch.Generator | None = None) -> torch.Tensor:
    """The dual-path official code's negatives: an image anchor (row) takes the hardest of `pool` texts drawn
    at random among its valid negatives (all of them when fewer), a text anchor (column) one random valid
    image. `negatives` as in `triplet_ranking_loss` (the official code: texts of other classes)."""
    b = scores.shape[0]
    if negatives is None:
        negatives = ~torch.eye(b, dtype=torch.bool, device=scores.device)
    negatives = negatives.to(torch.bool)
    positive = scores.diagonal()
    cost_image_anchor = (margin - positive.unsqueeze(1) + scores).clamp_min(0)
    cost_text_anchor = (margin - positive.unsqueeze(0) + scores).clamp_min(0).T
    keys = torch.rand(scores.shape, device=scores.device, generator=generator).masked_fill(~negatives, -1.0)
    k = min(pool, b)
    drawn = torch.zeros_like(negatives).scatter_(1, keys.topk(k, dim=1).indices, True) & negatives
    total = (_pick(cost_image_anchor, drawn, "hardest", generator).sum()
             + _pick(cost_text_anchor, negatives.T, "sampled", generator).sum())
    return total / b if reduction == "mean" else total
