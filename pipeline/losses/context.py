"""Masked-segment prediction loss (papers/000 Eq. 5)."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def masked_prediction_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of the masked segments' predictions, averaged over the masked segments.

    `logits` `[M, K]` are the predictions for the M masked segments of a batch, `targets` `[M]` the
    identity of each (the RoI's detector class, or the word id). A batch where nothing was masked
    gives a zero that still depends on `logits` (so the graph stays valid).
    """
    if logits.shape[0] == 0:
        return logits.sum() * 0.0
    return F.cross_entropy(logits.float(), targets.long())
