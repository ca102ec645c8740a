"""Word-level text inputs of the instance-level methods: the word2vec-initialised lookup table and
the Bi-GRU of SCAN (papers/002 Eq. 2-3), whose two directions are averaged per word."""
from __future__ import annotations

import torch
from torch import nn

from pipeline.contract.batches import PAD_ID


def word_lookup(vocab_size: int, word_dim: int, word_vectors: torch.Tensor | None, finetune: bool) -> nn.Embedding:
    """`[V, word_dim]` lookup table, copied from `word_vectors` when given (word2vec initialisation);
    `<pad>` stays a zero vector. Without vectors (a model rebuilt for loading) it is random."""
    table = nn.Embedding(vocab_size, word_dim, padding_idx=PAD_ID)
    if word_vectors is not None:
        if tuple(word_vectors.shape) != (vocab_size, word_dim):
            raise ValueError(f"word vectors have shape {tuple(word_vectors.shape)}, "
                             f"expected ({vocab_size}, {word_dim})")
        with torch.no_grad():
            table.weight.copy_(word_vectors)
            table.weight[PAD_ID].zero_()
    table.weight.requires_grad_(finetune)
    return table


def valid_words(lengths: torch.Tensor, width: int) -> torch.Tensor:
    """`[B, width]` bool of the real words; an empty caption keeps its first position so that every
    caption has at least one word to attend to (its vector is the encoder's output for `<pad>`)."""
    return torch.arange(width, device=lengths.device) < lengths.clamp_min(1).unsqueeze(1)


class BiGRUWords(nn.Module):
    """Word ids `[B, L]` -> per-word features `[B, L', d]` (L' = longest caption of the batch, at least
    1): lookup, one bidirectional GRU layer, mean of the forward and backward states, zeros after
    each caption's end."""

    def __init__(self, vocab_size: int, word_dim: int, d: int, word_vectors: torch.Tensor | None = None,
                 finetune: bool = True):
        super().__init__()
        self.lookup = word_lookup(vocab_size, word_dim, word_vectors, finetune)
        self.gru = nn.GRU(word_dim, d, num_layers=1, batch_first=True, bidirectional=True)
        self.d = d

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        lengths = lengths.clamp_min(1)
        width = int(lengths.max())
        x = self.lookup(ids[:, :width])
        packed = nn.utils.rnn.pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
        out, _ = self.gru(packed)
        out, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=width)
        return (out[..., : self.d] + out[..., self.d:]) / 2
