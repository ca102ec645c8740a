"""Segment inputs of papers/000 Eq. 3: e = phi(psi1(x) + psi2(position)), one module per modality.

Image segments are RoIs with 5-d box positions; text segments are words (optionally contextualised
by a Bi-GRU, papers/000 Sec. 3.2) with sinusoidal positions. Masked segments (Eq. 5) are replaced
by a learned [MASK] before psi1: a learned vector in RoI-feature space for images, the `<mask>`
word (whose vector is trained) for text. `pooled=True` (the w/o R ablation) averages the contents
into a single global segment. After phi a LayerNorm and dropout follow, as in BERT's embeddings.

`form` "official" computes what the Semantic Sharing official code computes
(`methods.<m>.input_embedding`; its `model/Model.py`, `EncoderImagePrecomp` and `EncoderText`):
- image: e = (psi1(x) + 1e-4 * psi2(box)) / 2, the 1e-4 scaling the box projection's output, bias included;
- text: e = (Bi-GRU(w) + 1e-5 * p) / 2 with no projection after the GRU (no psi1, no psi2): p is the
  official position table's row 0 (`padding_idx` 0, so never trained; every word reads it) drawn once
  U(-0.1, 0.1) and kept as a buffer (with `text_gru: false`, which the official code has no form of, psi1
  maps the word vectors into d first);
- no phi, no LayerNorm and no dropout on either input.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from pipeline.contract.batches import MASK_ID
from pipeline.models.encoder import sinusoidal_positions

_PHI = {"relu": F.relu, "gelu": F.gelu, "tanh": torch.tanh}
_WHOLE_IMAGE = (0.0, 0.0, 1.0, 1.0, 1.0)
INPUT_FORMS = ("paper", "official")
# The official code's factors on its position terms (image boxes, text position row); both sums are halved.
OFFICIAL_BOX_POSITION_SCALE = 1e-4
OFFICIAL_TEXT_POSITION_SCALE = 1e-5


def _check_form(form: str) -> None:
    if form not in INPUT_FORMS:
        raise ValueError(f"segment input form {form!r}: expected one of {', '.join(INPUT_FORMS)}")


def random_segment_mask(valid: torch.Tensor, prob: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Bool mask choosing each valid segment independently with probability `prob`."""
    draw = torch.rand(valid.shape, device=valid.device, generator=generator)
    return (draw < prob) & valid


def masked_mean(x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Mean of `x [B, L, K]` over the valid positions of each row (zeros for a row with none)."""
    w = valid.to(x.dtype).unsqueeze(-1)
    return (x * w).sum(dim=1) / w.sum(dim=1).clamp_min(1.0)


class ImageSegments(nn.Module):
    """RoI features `[B, R, D]` and positions `[B, R, 5]` -> segment inputs `[B, R, d]`."""

    def __init__(self, feature_dim: int, d_model: int, phi: str, dropout: float, form: str = "paper"):
        super().__init__()
        _check_form(form)
        self.official = form == "official"
        self.psi1 = nn.Linear(feature_dim, d_model)
        self.psi2 = nn.Linear(5, d_model)
        self.mask_vector = nn.Parameter(torch.zeros(feature_dim).normal_(0.0, 0.02))
        if not self.official:
            self.phi, self.norm, self.drop = _PHI[phi], nn.LayerNorm(d_model), nn.Dropout(dropout)

    def forward(self, features: torch.Tensor, positions: torch.Tensor, masked: torch.Tensor | None = None,
                pooled: bool = False) -> torch.Tensor:
        if masked is not None:
            features = torch.where(masked.unsqueeze(-1), self.mask_vector.to(features.dtype), features)
        if pooled:
            features = features.mean(dim=1, keepdim=True)
            positions = positions.new_tensor(_WHOLE_IMAGE).expand(features.shape[0], 1, 5)
        if self.official:
            return (self.psi1(features) + OFFICIAL_BOX_POSITION_SCALE * self.psi2(positions)) / 2
        return self.drop(self.norm(self.phi(self.psi1(features) + self.psi2(positions))))


class TextSegments(nn.Module):
    """Word ids `[B, L]` -> segment inputs `[B, L, d]` (or `[B, 1, d]` pooled)."""

    def __init__(self, vocab_size: int, word_dim: int, d_model: int, phi: str, dropout: float,
                 gru: bool, word_vectors: torch.Tensor | None = None, finetune_words: bool = True,
                 form: str = "paper"):
        super().__init__()
        self.words = nn.Embedding(vocab_size, word_dim, padding_idx=0)
        if word_vectors is not None:
            with torch.no_grad():
                self.words.weight.copy_(word_vectors)
                if not bool(word_vectors[MASK_ID].any()):  # give <mask> a vector of its own
                    self.words.weight[MASK_ID].normal_(0.0, float(word_vectors.std()) or 0.1)
        self.words.weight.requires_grad_(finetune_words)
        _check_form(form)
        self.official = form == "official"
        self.gru = nn.GRU(word_dim, d_model, batch_first=True, bidirectional=True) if gru else None
        self.d_model = d_model
        if not (self.official and gru):  # without the GRU (no official form) psi1 brings the words into d
            self.psi1 = nn.Linear(d_model if gru else word_dim, d_model)
        if self.official:  # the official position table's row 0: never trained, so a buffer
            self.register_buffer("position_row", torch.empty(d_model).uniform_(-0.1, 0.1))
        else:
            self.psi2 = nn.Linear(d_model, d_model)
            self.phi, self.norm, self.drop = _PHI[phi], nn.LayerNorm(d_model), nn.Dropout(dropout)

    def _contents(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        x = self.words(ids)
        if self.gru is None:
            return x
        packed = nn.utils.rnn.pack_padded_sequence(x, lengths.clamp_min(1).cpu(), batch_first=True,
                                                   enforce_sorted=False)
        out, _ = self.gru(packed)
        out, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=ids.shape[1])
        return (out[..., : self.d_model] + out[..., self.d_model:]) / 2  # mean of both directions

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor, masked: torch.Tensor | None = None,
                pooled: bool = False) -> torch.Tensor:
        if masked is not None:
            ids = ids.masked_fill(masked, MASK_ID)
        x = self._contents(ids, lengths)
        if pooled:
            valid = torch.arange(ids.shape[1], device=ids.device) < lengths.unsqueeze(1)
            x = masked_mean(x, valid).unsqueeze(1)
        if self.official:
            x = x if self.gru is not None else self.psi1(x)
            return (x + OFFICIAL_TEXT_POSITION_SCALE * self.position_row.to(x.dtype)) / 2
        pos = sinusoidal_positions(x.shape[1], self.d_model, device=x.device).to(x.dtype)
        return self.drop(self.norm(self.phi(self.psi1(x) + self.psi2(pos))))
