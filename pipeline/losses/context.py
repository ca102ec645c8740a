"""Masked-segment prediction loss (papers/000 Eq. 5)."""
from __future__ import annotations

import torch
import torch.nn.functional as F


CONTEXT_LOSSES = ("logits", "sigmoid")


def masked_prediction_loss(logits: torch.Tensor, targets: torch.Tensor, form: str = "logits") -> torch.Tensor:
    """Cross-entropy of the masked segments' predictions, averaged over the masked segments.

    `logits` `[M, K]` are the predictions for the M masked segments of a batch, `targets` `[M]` the
    identity of each (the RoI's detector class, or the word id). A batch where nothing was masked
    gives a zero that still depends on `logits` (so the graph stays valid).
    `form` "logits": cross-entropy on the logits (the paper's Eq. 5); "sigmoid": cross-entropy applied to
    `sigmoid(logits)` as if they were logits (the official code), i.e. `-log softmax(sigmoid(z))[target]`,
    bounded by `log(K - 1 + e)`.
    """
    if form not in CONTEXT_LOSSES:
        raise ValueError(f"masked_prediction_loss: form must be one of {', '.join(CONTEXT_LOSSES)}, got {form!r}")
    if logits.shape[0] == 0:
        return logits.sum() * 0.0
    z = logits.float()
    return F.cross_entropy(torch.sigmoid(z) if form == "sigmoid" else z, targets.long())
