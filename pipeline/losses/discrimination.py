"""DSCMR's label-space discrimination and modality-invariance losses (Zhen et al., CVPR 2019).

Their common-space discrimination loss J2 is `pipeline.losses.consistency.imc_loss` (the same
pairwise logistic form over image-text, image-image and text-text pairs, theta = cos / 2).
Both terms here follow the official code: per-item Euclidean norms averaged over the batch (the
paper writes them as Frobenius norms over the batch divided by n).
"""
from __future__ import annotations

import torch


def label_space_loss(predictions: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """J1 for one modality: mean over items of `||P^T u_i - y_i||_2`."""
    if predictions.shape != labels.shape:
        raise ValueError(f"label_space_loss: predictions {tuple(predictions.shape)} and labels "
                         f"{tuple(labels.shape)} differ in shape")
    return torch.linalg.vector_norm(predictions - labels.to(predictions.dtype), dim=1).mean()


def modality_invariance_loss(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """J3: mean over pairs of `||u_i - v_i||_2` between the common representations of paired items."""
    if u.shape != v.shape:
        raise ValueError(f"modality_invariance_loss: representations {tuple(u.shape)} and {tuple(v.shape)} differ in shape")
    return torch.linalg.vector_norm(u - v, dim=1).mean()
