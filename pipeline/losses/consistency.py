"""Consistency losses between the embeddings of the two modalities.

`imc_loss` is papers/000 Eq. 1 (the IMC ablation); `triplet_consistency_loss` is the triplet
consistency term added by the "Ours+Con" ablation; `semantic_consistency_loss` is papers/002's D.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def cosine_matrix(a: torch.Tensor, b: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """`[A, B]` cosine similarities between the rows of `a` and of `b` (zero rows give 0)."""
    a = a / a.norm(dim=-1, keepdim=True).clamp_min(eps)
    b = b / b.norm(dim=-1, keepdim=True).clamp_min(eps)
    return a @ b.T


def _pairwise_logistic(theta: torch.Tensor, same: torch.Tensor) -> torch.Tensor:
    """Mean of `-(S * theta - log(1 + exp(theta)))` over all pairs."""
    return (F.softplus(theta) - same * theta).mean()


SIMILARITIES = ("shares_label", "label_count")


def label_similarity(a: torch.Tensor, b: torch.Tensor, form: str = "shares_label") -> torch.Tensor:
    """`[A, B]` S between label vectors: "shares_label" 1 where two items share a label (the papers'
    same-class S read for multi-label data), "label_count" the product `y_i . y_j` (DSCMR's official
    code: the number of shared labels)."""
    if form not in SIMILARITIES:
        raise ValueError(f"label_similarity: form must be one of {', '.join(SIMILARITIES)}, got {form!r}")
    product = a.float() @ b.float().T
    return product if form == "label_count" else (product > 0).float()


def imc_loss(z_image: torch.Tensor, z_text: torch.Tensor,
             labels_image: torch.Tensor, labels_text: torch.Tensor, similarity: str = "shares_label") -> torch.Tensor:
    """Eq. 1: inter-modal plus intra-modal (image-image, text-text) consistency.

    Theta = cos / 2; S from `label_similarity(similarity)`. Eq. 1 sums over pairs; this
    takes the mean over the pairs of each of the three matrices (the batch-size-free scale), then
    adds the three terms.
    """
    def same(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return label_similarity(a, b, similarity).to(z_image.dtype)

    inter = _pairwise_logistic(0.5 * cosine_matrix(z_image, z_text), same(labels_image, labels_text))
    intra_v = _pairwise_logistic(0.5 * cosine_matrix(z_image, z_image), same(labels_image, labels_image))
    intra_w = _pairwise_logistic(0.5 * cosine_matrix(z_text, z_text), same(labels_text, labels_text))
    return inter + intra_v + intra_w


def triplet_consistency_loss(z_image: torch.Tensor, z_text: torch.Tensor, negatives: torch.Tensor,
                             margin: float) -> torch.Tensor:
    """Hinge triplet loss on cosine similarity, both directions, summed over negatives.

    Item i of `z_image` and item i of `z_text` form the positive pair; `negatives[i, j]` (bool
    `[B, B]`) marks pairs (image i, text j) that may serve as negatives (the caller excludes pairs
    of the same image or sharing a label). For anchor image i: `max(0, margin - s_ii + s_ij)`;
    for anchor text j: `max(0, margin - s_jj + s_ij)`. Returns the sum over negatives divided by B.
    """
    sim = cosine_matrix(z_image, z_text)
    positive = sim.diagonal()
    neg = negatives.to(sim.dtype)
    cost_text = (margin - positive.unsqueeze(1) + sim).clamp_min(0) * neg
    cost_image = (margin - positive.unsqueeze(0) + sim).clamp_min(0) * neg
    return (cost_text.sum() + cost_image.sum()) / sim.shape[0]


def semantic_consistency_loss(fv: torch.Tensor, fs: torch.Tensor) -> torch.Tensor:
    """papers/002 Eq. 11-12 and 16: the sum over every (image, caption) pair of the batch of (F^V - F^S)^2, in fp32.

    The official code (`train_gpus.py`) calls `nn.MSELoss(reduction="batchmean")`, a reduction MSELoss never
    had. Under torch 1.0 (the paper's) a target that requires grad, as F^S does, took MSELoss's Python branch,
    which summed for every reduction but "none" and "mean" (pytorch issues 11149, 43228): the sum, as here.
    Torch 2.x refuses the name (ValueError), so the official line no longer runs.
    """
    return (fv.float() - fs.float()).pow(2).sum()
