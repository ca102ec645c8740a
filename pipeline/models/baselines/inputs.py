"""Inputs of the baselines: pooled RoI features, fixed caption features, caption encoders, MLPs.

The Table-1 baselines (except ViLBERT) consume one vector per item: the image is the mean of its RoI
features (papers/000 feeds "pre-extracted deep embeddings" to the linear methods), the caption the
mean of its word vectors, its bag of words, or (DSCMR) a sentence CNN over its word vectors.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from pipeline.contract.batches import PAD_ID, DataInfo, ImageBatch, TextBatch
from pipeline.contract.method import build_kwargs_word_vectors

CNN_WIDTHS = (3, 4, 5)   # Kim (2014) sentence CNN: filter widths ...
CNN_FILTERS = 100        # ... and feature maps per width
_ACTIVATIONS = {"relu": nn.ReLU, "sigmoid": nn.Sigmoid, "tanh": nn.Tanh}


def pooled_regions(images: ImageBatch) -> torch.Tensor:
    """`[B, D]` mean of the RoI features (every RoI of the store is a kept detection)."""
    return images.features.float().mean(dim=1)


def word_mask(texts: TextBatch) -> torch.Tensor:
    """`[B, L]` True at the caption's tokens."""
    return torch.arange(texts.ids.shape[1], device=texts.ids.device) < texts.lengths.unsqueeze(1)


def masked_word_mean(vectors: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of `vectors [B, L, E]` over the caption's tokens (zeros for an empty caption)."""
    w = mask.to(vectors.dtype).unsqueeze(-1)
    return (vectors * w).sum(dim=1) / w.sum(dim=1).clamp_min(1.0)


class CaptionFeatures(nn.Module):
    """Fixed caption features of the linear methods: mean word vector or normalised bag of words.

    The word table is a buffer (saved with the model, never trained).
    """

    def __init__(self, kind: str, info: DataInfo, word_vectors: np.ndarray | None = None):
        super().__init__()
        if kind not in ("mean", "bow"):
            raise ValueError(f"caption features must be 'mean' or 'bow', got {kind!r}")
        self.kind, self.vocab_size = kind, info.vocab_size
        table = build_kwargs_word_vectors(word_vectors, info)
        if kind == "mean":
            self.register_buffer("words", table if table is not None else torch.zeros(info.vocab_size, info.word_dim))
        self.dim = info.word_dim if kind == "mean" else info.vocab_size

    def forward(self, texts: TextBatch) -> torch.Tensor:
        mask = word_mask(texts)
        if self.kind == "mean":
            return masked_word_mean(self.words[texts.ids], mask)
        counts = torch.zeros(texts.ids.shape[0], self.vocab_size, device=texts.ids.device)
        counts.scatter_add_(1, texts.ids, mask.float())
        return counts / texts.lengths.clamp_min(1).unsqueeze(1).float()


class CaptionEncoder(nn.Module):
    """Trainable caption encoder of the gradient baselines: word vectors, then mean or sentence CNN."""

    def __init__(self, kind: str, info: DataInfo, word_vectors: np.ndarray | None = None,
                 finetune_words: bool = False):
        super().__init__()
        if kind not in ("mean", "cnn"):
            raise ValueError(f"caption encoder must be 'mean' or 'cnn', got {kind!r}")
        self.kind = kind
        self.words = nn.Embedding(info.vocab_size, info.word_dim, padding_idx=PAD_ID)
        table = build_kwargs_word_vectors(word_vectors, info)
        if table is not None:
            with torch.no_grad():
                self.words.weight.copy_(table)
        self.words.weight.requires_grad_(finetune_words)
        if kind == "cnn":
            self.convs = nn.ModuleList(nn.Conv1d(info.word_dim, CNN_FILTERS, w) for w in CNN_WIDTHS)
        self.dim = info.word_dim if kind == "mean" else CNN_FILTERS * len(CNN_WIDTHS)

    def forward(self, texts: TextBatch) -> torch.Tensor:
        mask = word_mask(texts)
        x = self.words(texts.ids)
        if self.kind == "mean":
            return masked_word_mean(x, mask)
        short = max(CNN_WIDTHS) - x.shape[1]
        if short > 0:  # captions shorter than the widest filter: pad with <pad> vectors (zeros)
            x = F.pad(x, (0, 0, 0, short))
        x = x.transpose(1, 2)  # [B, E, L]
        pooled = []
        for conv, width in zip(self.convs, CNN_WIDTHS):
            h = F.relu(conv(x))                                        # [B, F, L - width + 1]
            last = (texts.lengths - width + 1).clamp_min(1)            # windows that start in the caption
            valid = torch.arange(h.shape[2], device=h.device) < last.unsqueeze(1)
            pooled.append(h.masked_fill(~valid.unsqueeze(1), float("-inf")).amax(dim=2))
        return torch.cat(pooled, dim=1)


def mlp(sizes: list[int], activation: str, last_activation: bool) -> nn.Sequential:
    """Linear layers `sizes[0] -> ... -> sizes[-1]` with `activation` between them (and after the
    last when `last_activation`)."""
    layers: list[nn.Module] = []
    for i in range(len(sizes) - 1):
        layers.append(nn.Linear(sizes[i], sizes[i + 1]))
        if i < len(sizes) - 2 or last_activation:
            layers.append(_ACTIVATIONS[activation]())
    return nn.Sequential(*layers)
