"""The shared encoder T of papers/000 Eq. 3 and its one-FC replacement (w/o T ablation).

The transformer is written out (rather than `nn.TransformerEncoder`) so that its parameters carry
BERT's layout (separate query/key/value projections; see `pipeline.models.bert`) and attention runs
through `F.scaled_dot_product_attention` (flash / memory-efficient kernels on GPU).
`norm_first=True` gives the official code's pre-norm blocks with a final LayerNorm; False gives
BERT's post-norm blocks. As in the official code the encoder output goes through a ReLU.
`layer_norm` "official" swaps every LayerNorm for the official code's (`OfficialLayerNorm`).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

_ACTIVATIONS = {"relu": F.relu, "gelu": F.gelu}


def sinusoidal_positions(length: int, dim: int, device=None) -> torch.Tensor:
    """`[length, dim]` sine/cosine position codes of Vaswani et al. (even dims sin, odd dims cos)."""
    position = torch.arange(length, dtype=torch.float32, device=device).unsqueeze(1)
    freq = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32, device=device) * (-math.log(10000.0) / dim))
    out = torch.zeros(length, dim, device=device)
    out[:, 0::2] = torch.sin(position * freq)
    out[:, 1::2] = torch.cos(position * freq[: dim // 2])
    return out


class OfficialLayerNorm(nn.Module):
    """The Semantic Sharing official code's LayerNorm (its `model/transformer.py`): `weight * (x - mean) /
    (std + eps) + bias` with the unbiased std (divisor n - 1) and eps added to the std, where
    `nn.LayerNorm` divides by `sqrt(biased variance + eps)`. Parameter names as `nn.LayerNorm`'s."""

    def __init__(self, d_model: int, eps: float = 1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d_model))
        self.bias = nn.Parameter(torch.zeros(d_model))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean(-1, keepdim=True)
        return self.weight * (x - mean) / (x.std(-1, keepdim=True) + self.eps) + self.bias


LAYER_NORMS = {"torch": nn.LayerNorm, "official": OfficialLayerNorm}


class EncoderLayer(nn.Module):
    """Self-attention + feed-forward block with residuals (pre- or post-norm)."""

    def __init__(self, d_model: int, heads: int, d_ff: int, dropout: float, activation: str,
                 norm_first: bool, eps: float, layer_norm: str = "torch"):
        super().__init__()
        norm = LAYER_NORMS[layer_norm]
        self.heads = heads
        self.dropout = dropout
        self.norm_first = norm_first
        self.activation = _ACTIVATIONS[activation]
        self.query = nn.Linear(d_model, d_model)
        self.key = nn.Linear(d_model, d_model)
        self.value = nn.Linear(d_model, d_model)
        self.attn_out = nn.Linear(d_model, d_model)
        self.attn_norm = norm(d_model, eps=eps)
        self.ff_in = nn.Linear(d_model, d_ff)
        self.ff_out = nn.Linear(d_ff, d_model)
        self.ff_norm = norm(d_model, eps=eps)
        self.drop = nn.Dropout(dropout)

    def _attention(self, x: torch.Tensor, attn_mask: torch.Tensor | None) -> torch.Tensor:
        b, n, d = x.shape
        split = lambda t: t.view(b, n, self.heads, d // self.heads).transpose(1, 2)  # noqa: E731
        q, k, v = split(self.query(x)), split(self.key(x)), split(self.value(x))
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask,
                                             dropout_p=self.dropout if self.training else 0.0)
        return self.attn_out(out.transpose(1, 2).reshape(b, n, d))

    def _feed_forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.ff_out(self.drop(self.activation(self.ff_in(x))))

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None) -> torch.Tensor:
        if self.norm_first:
            x = x + self.drop(self._attention(self.attn_norm(x), attn_mask))
            return x + self.drop(self._feed_forward(self.ff_norm(x)))
        x = self.attn_norm(x + self.drop(self._attention(x, attn_mask)))
        return self.ff_norm(x + self.drop(self._feed_forward(x)))


class TransformerEncoder(nn.Module):
    """A stack of `layers` encoder blocks; `valid` masks padded segments out of the attention keys."""

    def __init__(self, d_model: int, layers: int, heads: int, d_ff: int, dropout: float,
                 activation: str = "relu", norm_first: bool = True, eps: float = 1e-6, layer_norm: str = "torch"):
        super().__init__()
        if d_model % heads:
            raise ValueError(f"d_model {d_model} is not divisible by heads {heads}")
        if layer_norm not in LAYER_NORMS:
            raise ValueError(f"layer_norm {layer_norm!r}: expected one of {', '.join(LAYER_NORMS)}")
        self.layers = nn.ModuleList(
            EncoderLayer(d_model, heads, d_ff, dropout, activation, norm_first, eps, layer_norm) for _ in range(layers))
        self.final_norm = LAYER_NORMS[layer_norm](d_model, eps=eps) if norm_first else nn.Identity()
        for p in self.parameters():  # Glorot init of the weight matrices, as the official code
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)

    def forward(self, x: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
        mask = None
        if valid is not None and not bool(valid.all()):
            mask = valid[:, None, None, :]  # [B, 1, 1, L]: True = may be attended to
        for layer in self.layers:
            x = layer(x, mask)
        return F.relu(self.final_norm(x))


class FCEncoder(nn.Module):
    """The w/o T / w/o R shared model: one fully connected layer applied to every segment."""

    def __init__(self, d_model: int, dropout: float):
        super().__init__()
        self.fc = nn.Linear(d_model, d_model)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
        return F.relu(self.drop(self.fc(x)))
