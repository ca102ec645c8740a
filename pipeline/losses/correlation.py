"""The deep CCA objective (Andrew et al., ICML 2013): total canonical correlation of two views."""
from __future__ import annotations

import torch

from pipeline.models.baselines.linalg import inverse_sqrt_psd


def view_covariances(h1: torch.Tensor, h2: torch.Tensor, reg: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """`(S11 + reg I, S22 + reg I, S12)` of the mini-batch outputs `h1 [m, o1]`, `h2 [m, o2]` (1/(m-1) scaling)."""
    m = h1.shape[0]
    if m < 2:
        raise ValueError(f"the correlation objective needs at least 2 items per batch, got {m}")
    a, b = h1 - h1.mean(dim=0), h2 - h2.mean(dim=0)
    s11 = a.T @ a / (m - 1) + reg * torch.eye(a.shape[1], dtype=a.dtype, device=a.device)
    s22 = b.T @ b / (m - 1) + reg * torch.eye(b.shape[1], dtype=b.dtype, device=b.device)
    return s11, s22, a.T @ b / (m - 1)


def total_correlation(h1: torch.Tensor, h2: torch.Tensor, reg: float, top_k: int = 0) -> torch.Tensor:
    """corr(H1, H2): the sum of the top-k singular values of `T = S11^-1/2 S12 S22^-1/2` (k = 0: all,
    the trace norm of T). Computed in float64; differentiable in both views."""
    s11, s22, s12 = view_covariances(h1.double(), h2.double(), reg)
    t = inverse_sqrt_psd(s11) @ s12 @ inverse_sqrt_psd(s22)
    values = torch.linalg.svdvals(t)
    return (values[:top_k] if top_k else values).sum()


def dcca_loss(h1: torch.Tensor, h2: torch.Tensor, reg: float, top_k: int = 0) -> torch.Tensor:
    """`k - corr(H1, H2)` (k correlations summed): minimising it maximises the correlation; it starts
    near k and stays >= 0, so the loop's divergence check (a growing |loss|) applies as to any loss."""
    k = top_k or min(h1.shape[1], h2.shape[1])
    return (k - total_correlation(h1, h2, reg, top_k)).to(h1.dtype)
