"""Multi-label loss of papers/000 Eq. 4, in the official code's form."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def label_loss(scores: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean over items of `log(1 + exp(-sum_c scores[c] * labels[c]))`.

    `scores` `[B, C]` are the classifier outputs (for Semantic Sharing: the segment-averaged,
    l2-normalised sigmoid scores that are also the retrieval embedding), `labels` `[B, C]` multi-hot.
    Written as softplus for numerical stability; an item without labels contributes log 2 and no
    gradient. The official code feeds image and text items in one batch, so both modalities share
    the mean.
    """
    if scores.shape != labels.shape:
        raise ValueError(f"label_loss: scores {tuple(scores.shape)} and labels {tuple(labels.shape)} differ in shape")
    agreement = (scores * labels.to(scores.dtype)).sum(dim=-1)
    return F.softplus(-agreement).mean()
