"""Multi-hot label rows packed into bits, so shared-label counts of ranked items are cheap.

A row of C labels becomes ceil(C / 32) int64 words holding 32 bits each; the number of labels two
rows share is the popcount of their bitwise AND. Gathering one word per ranked item instead of a
`[C]` float row cuts the memory traffic of NDCG/mAP by a factor of about C.
"""
from __future__ import annotations

import torch

BITS = 32


def pack_labels(labels: torch.Tensor) -> torch.Tensor:
    """`[n, C]` multi-hot (any dtype) -> `[n, ceil(C/32)]` int64 bit words."""
    n, c = labels.shape
    words = max(1, -(-c // BITS))
    bits = torch.zeros(n, words * BITS, dtype=torch.int64, device=labels.device)
    bits[:, :c] = (labels != 0).long()
    weights = torch.bitwise_left_shift(torch.ones(BITS, dtype=torch.int64, device=labels.device),
                                       torch.arange(BITS, device=labels.device))
    return (bits.view(n, words, BITS) * weights).sum(dim=2)


def popcount32(x: torch.Tensor) -> torch.Tensor:
    """Number of set bits of int64 values below 2**32 (SWAR bit counting)."""
    x = x - ((x >> 1) & 0x55555555)
    x = (x & 0x33333333) + ((x >> 2) & 0x33333333)
    x = (x + (x >> 4)) & 0x0F0F0F0F
    return ((x * 0x01010101) >> 24) & 0xFF


def shared_counts(query_bits: torch.Tensor, item_bits: torch.Tensor) -> torch.Tensor:
    """Shared labels between each query (`[q, W]`) and its items (`[q, L, W]`): `[q, L]` int64."""
    return popcount32(item_bits & query_bits.unsqueeze(1)).sum(dim=2)
