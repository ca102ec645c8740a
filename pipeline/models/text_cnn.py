"""The deep text CNN of the dual-path model (papers/003 Sec. 3.2) and its position-shift input.

A caption becomes a fixed-length sequence of `length` word ids (32 in the paper): longer captions
lose their final words; shorter ones are padded with `<pad>` (a zero word vector), at the end
("left alignment", evaluation) or, as training augmentation, by a random number of pads at the
beginning and the rest at the end ("position shift").

Network: a word lookup initialised from word2vec (the paper's first 1 x 1 x d x 300 convolution)
with batch norm, then ResNet-50-style bottleneck blocks whose middle convolution spans two
neighbouring words (1 x 2, padded by one position on the left as in the official code), with
shortcut connections; average pooling over positions gives the sentence feature. Stage depths and
output widths follow ResNet-50 (3, 4, 6, 3 blocks; 256 ... 2048 channels); the length is halved
at the start of the second and third stages (32 -> 16 -> 8), as in the official code.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from pipeline.contract.batches import PAD_ID
from pipeline.models.word_encoders import word_lookup


def fixed_length_ids(ids: torch.Tensor, lengths: torch.Tensor, length: int, shift: bool,
                     generator: torch.Generator | None = None) -> torch.Tensor:
    """`[B, length]` ids: each caption clipped to `length` words and padded with `<pad>`.

    `shift=False` puts every caption at position 0; `shift=True` starts caption b at a uniformly
    drawn offset in `[0, length - n_b]` (n_b its clipped length), i.e. a random number of pads
    before it and the rest after it.
    """
    n = lengths.clamp(0, length)
    if shift:
        room = (length - n + 1).to(torch.float32)
        draw = torch.rand(n.shape, device=ids.device, generator=generator)
        offset = torch.minimum((draw * room).long(), length - n)
    else:
        offset = torch.zeros_like(n)
    source = torch.arange(length, device=ids.device).unsqueeze(0) - offset.unsqueeze(1)   # [B, length]
    inside = (source >= 0) & (source < n.unsqueeze(1))
    width = ids.shape[1]
    if width == 0:
        return torch.full((ids.shape[0], length), PAD_ID, dtype=ids.dtype, device=ids.device)
    taken = ids.gather(1, source.clamp(0, width - 1))
    return torch.where(inside, taken, torch.full_like(taken, PAD_ID))


class Bottleneck1d(nn.Module):
    """1x1 reduce -> 1x2 (stride s) -> 1x1 expand, batch norm after each, shortcut, ReLU."""

    def __init__(self, in_ch: int, out_ch: int, stride: int = 1, mid: int | None = None):
        super().__init__()
        mid = max(1, out_ch // 4) if mid is None else mid
        self.reduce = nn.Conv1d(in_ch, mid, 1, bias=False)
        self.bn1 = nn.BatchNorm1d(mid)
        self.pair = nn.Conv1d(mid, mid, 2, stride=stride, bias=False)
        self.bn2 = nn.BatchNorm1d(mid)
        self.expand = nn.Conv1d(mid, out_ch, 1, bias=False)
        self.bn3 = nn.BatchNorm1d(out_ch)
        self.shortcut = None
        if stride != 1 or in_ch != out_ch:
            self.shortcut = nn.Sequential(nn.Conv1d(in_ch, out_ch, 1, stride=stride, bias=False),
                                          nn.BatchNorm1d(out_ch))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn1(self.reduce(x)))
        y = F.relu(self.bn2(self.pair(F.pad(y, (1, 0)))))   # one position of padding on the left
        y = self.bn3(self.expand(y))
        return F.relu(y + (x if self.shortcut is None else self.shortcut(x)))


class TextCNN(nn.Module):
    """Fixed-length word ids `[B, length]` -> sentence features `[B, widths[-1]]`."""

    STRIDES = (1, 2, 2, 1)  # per stage; stages beyond the fourth keep stride 1

    def __init__(self, vocab_size: int, word_dim: int, blocks: Sequence[int], widths: Sequence[int],
                 word_vectors: torch.Tensor | None = None, finetune_words: bool = True, wide_first: bool = False,
                 pool: str = "mean"):
        super().__init__()
        if len(blocks) != len(widths) or not blocks:
            raise ValueError(f"text CNN: text_blocks {list(blocks)} and text_widths {list(widths)} must be "
                             f"non-empty lists of the same length")
        self.lookup = word_lookup(vocab_size, word_dim, word_vectors, finetune_words)
        self.lookup_bn = nn.BatchNorm1d(word_dim)
        layers, in_ch = [], word_dim
        for stage, (count, width) in enumerate(zip(blocks, widths)):
            stride = self.STRIDES[stage] if stage < len(self.STRIDES) else 1
            for b in range(count):
                # wide_first (the dual-path official layout): the first block of a stage reduces to half the
                # stage width in the first stage and keeps the full width in later ones (not a quarter).
                mid = (width // 2 if stage == 0 else width) if wide_first and b == 0 else None
                layers.append(Bottleneck1d(in_ch, width, stride if b == 0 else 1, mid))
                in_ch = width
        self.blocks = nn.Sequential(*layers)
        self.out_dim = in_ch
        if pool not in ("mean", "max"):
            raise ValueError(f"text CNN: pool must be mean or max, got {pool!r}")
        self.pool = pool

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        x = self.lookup_bn(self.lookup(ids).transpose(1, 2))   # [B, word_dim, length]
        y = self.blocks(x)
        return y.amax(dim=2) if self.pool == "max" else y.mean(dim=2)
