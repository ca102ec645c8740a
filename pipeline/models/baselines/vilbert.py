"""ViLBERT-style baseline: a two-stream co-attentional transformer trained from scratch (Lu et al., 2019).

The pretrained ViLBERT (Conceptual Captions) is not available offline, so the architecture is trained
from random initialisation on the dataset itself. Structure (ViLBERT's, one width `d_model` for both
streams where ViLBERT uses 1024-d visual / 768-d text):
- image stream: an [IMG] token (the mean RoI feature at the whole-image location) and the RoIs, each
  `LayerNorm(W_f feature + W_p 5-d location)`; text stream: [CLS] and the words (word vectors projected
  to d + sinusoidal positions; BERT's learned positions need a maximal length);
- `layers` self-attention layers per stream (BERT post-norm layout, `pipeline.models.encoder.EncoderLayer`);
- `co_layers` co-attentional blocks (Co-TRM: each stream's queries attend to the other stream's keys
  and values, then a feed-forward), each but the last followed by one self-attention layer per stream;
- the alignment score `w^T (h_IMG * h_CLS) + b` of the two pooled tokens after the last block.
Since the score reads only the [IMG] and [CLS] outputs of the last block, that block is computed for
those two queries only (exact); when it is the only block, its keys/values are projected once per item
and each image's [IMG] query meets all captions' keys (and each [CLS] all images') in one batched
product, so scoring a split is cheap enough for the validation metric of every epoch.
Training: "alignment" reproduces ViLBERT's retrieval fine-tuning (softmax over the true caption and
`negatives` distractors, alternately a random caption and a random image of the batch; ViLBERT's third,
hard-negative distractor from 100 nearest neighbours is replaced by another random one); "label" is a
label-wise variant (binary cross-entropy, target 1 when the pair shares a label).
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from pipeline.contract.batches import PAD_ID, DataInfo, ImageBatch, PairBatch, TextBatch
from pipeline.contract.method import RetrievalMethod, build_kwargs_word_vectors
from pipeline.models.encoder import EncoderLayer, sinusoidal_positions

_WHOLE_IMAGE = (0.0, 0.0, 1.0, 1.0, 1.0)
_ACT = {"relu": F.relu, "gelu": F.gelu}


class CrossAttentionBlock(nn.Module):
    """One stream's half of a Co-TRM: attention to the other stream, then a feed-forward (post-norm)."""

    def __init__(self, d: int, heads: int, d_ff: int, dropout: float, activation: str):
        super().__init__()
        self.heads, self.dropout = heads, dropout
        self.query, self.key, self.value, self.attn_out = (nn.Linear(d, d) for _ in range(4))
        self.attn_norm, self.ff_norm = nn.LayerNorm(d, eps=1e-12), nn.LayerNorm(d, eps=1e-12)
        self.ff_in, self.ff_out = nn.Linear(d, d_ff), nn.Linear(d_ff, d)
        self.activation = _ACT[activation]
        self.drop = nn.Dropout(dropout)

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        return x.view(b, n, self.heads, d // self.heads).transpose(1, 2)

    def keys_values(self, other: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Projected keys and values `[N, heads, L, d/heads]` of the other stream's tokens."""
        return self._split(self.key(other)), self._split(self.value(other))

    def forward(self, x: torch.Tensor, keys: torch.Tensor, values: torch.Tensor,
                valid: torch.Tensor | None) -> torch.Tensor:
        """`x [P, Lq, d]` attends to `keys`/`values [P, heads, L, dh]`; `valid [P, L]` marks real tokens."""
        b, n, d = x.shape
        mask = None if valid is None else valid[:, None, None, :]
        att = F.scaled_dot_product_attention(self._split(self.query(x)), keys, values, attn_mask=mask,
                                             dropout_p=self.dropout if self.training else 0.0)
        x = self.attn_norm(x + self.drop(self.attn_out(att.transpose(1, 2).reshape(b, n, d))))
        return self.ff_norm(x + self.drop(self.ff_out(self.drop(self.activation(self.ff_in(x))))))


    def cross_all(self, q: torch.Tensor, keys: torch.Tensor, values: torch.Tensor,
                  valid: torch.Tensor | None) -> torch.Tensor:
        """Every one of the A query tokens `q [A, d]` against every one of the B token sets
        (`keys`/`values [B, heads, L, dh]`, `valid [B, L]`): `[A, B, d]`, without gathering pairs."""
        a, d = q.shape
        dh = d // self.heads
        query = self.query(q).view(a, self.heads, dh)
        logits = torch.einsum("ahd,bhld->abhl", query, keys) / dh ** 0.5
        if valid is not None:
            logits = logits.masked_fill(~valid[None, :, None, :], float("-inf"))
        weights = self.drop(logits.softmax(dim=-1))
        att = torch.einsum("abhl,bhld->abhd", weights, values).reshape(a, keys.shape[0], d)
        x = self.attn_norm(q[:, None] + self.drop(self.attn_out(att)))
        return self.ff_norm(x + self.drop(self.ff_out(self.drop(self.activation(self.ff_in(x))))))


class CoAttentionLayer(nn.Module):
    """Co-TRM: image queries attend to the words, word queries attend to the image, in parallel."""

    def __init__(self, d: int, heads: int, d_ff: int, dropout: float, activation: str):
        super().__init__()
        self.image = CrossAttentionBlock(d, heads, d_ff, dropout, activation)
        self.text = CrossAttentionBlock(d, heads, d_ff, dropout, activation)

    def forward(self, v: torch.Tensor, w: torch.Tensor, w_valid: torch.Tensor):
        return self.image(v, *self.image.keys_values(w), w_valid), self.text(w, *self.text.keys_values(v), None)


class ViLBERT(RetrievalMethod):
    needs_labels = False

    def __init__(self, name: str, settings: dict, info: DataInfo, lam: float | None = None,
                 word_vectors: np.ndarray | None = None):
        super().__init__(name, settings, info, lam)
        s = settings
        d, heads, d_ff, drop, act = s["d_model"], s["heads"], s["d_ff"], s["dropout"], s["activation"]
        if s["objective"] == "label" and info.num_labels < 1:
            raise ValueError(f"parameter 'methods.{name}.objective' is 'label' but the dataset has no labels")
        self.region_in, self.location_in = nn.Linear(info.feature_dim, d), nn.Linear(5, d)
        self.words = nn.Embedding(info.vocab_size, info.word_dim, padding_idx=PAD_ID)
        table = build_kwargs_word_vectors(word_vectors, info)
        if table is not None:
            with torch.no_grad():
                self.words.weight.copy_(table)
        self.words.weight.requires_grad_(s["finetune_words"])
        self.word_in = nn.Linear(info.word_dim, d)
        self.cls = nn.Parameter(torch.zeros(d).normal_(0.0, 0.02))
        self.image_norm, self.text_norm = nn.LayerNorm(d, eps=1e-12), nn.LayerNorm(d, eps=1e-12)
        self.drop = nn.Dropout(drop)

        def stack(n: int) -> nn.ModuleList:
            return nn.ModuleList(EncoderLayer(d, heads, d_ff, drop, act, norm_first=False, eps=1e-12) for _ in range(n))

        self.image_layers, self.text_layers = stack(s["layers"]), stack(s["layers"])
        self.co_layers = nn.ModuleList(CoAttentionLayer(d, heads, d_ff, drop, act) for _ in range(s["co_layers"]))
        self.image_between, self.text_between = stack(s["co_layers"] - 1), stack(s["co_layers"] - 1)
        self.align = nn.Linear(d, 1)

    # --- single-stream encoders ------------------------------------------------------------------
    def encode_images(self, images: ImageBatch) -> torch.Tensor:
        """`[B, 1 + R, d]`: [IMG] and RoI states after the image stream's self-attention layers."""
        feats, locs = images.features.float(), images.positions.float()
        whole = locs.new_tensor(_WHOLE_IMAGE).expand(feats.shape[0], 1, 5)
        feats = torch.cat([feats.mean(dim=1, keepdim=True), feats], dim=1)
        v = self.drop(self.image_norm(self.region_in(feats) + self.location_in(torch.cat([whole, locs], dim=1))))
        for layer in self.image_layers:
            v = layer(v, None)
        return v

    def encode_texts(self, texts: TextBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """`([B, 1 + L, d], lengths [B])`: [CLS] and word states after the text self-attention layers."""
        w = self.word_in(self.words(texts.ids))
        w = torch.cat([self.cls.to(w.dtype).expand(w.shape[0], 1, -1), w], dim=1)
        w = self.drop(self.text_norm(w + sinusoidal_positions(w.shape[1], w.shape[2], device=w.device).to(w.dtype)))
        valid = self._valid(texts.lengths, w.shape[1])
        for layer in self.text_layers:
            w = layer(w, valid[:, None, None, :])
        return w, texts.lengths

    @staticmethod
    def _valid(lengths: torch.Tensor, width: int) -> torch.Tensor:
        return torch.arange(width, device=lengths.device) < (lengths.long() + 1).unsqueeze(1)  # +1: [CLS]

    # --- pair scoring ----------------------------------------------------------------------------
    def pair_scores(self, v: torch.Tensor, w: torch.Tensor, lengths: torch.Tensor, image_index: torch.Tensor,
                    text_index: torch.Tensor, final_kv: tuple | None = None) -> torch.Tensor:
        """Alignment scores `[P]` of the pairs `(v[image_index[p]], w[text_index[p]])`.

        `final_kv` (keys/values of the last block per item, from `_item_keys_values`) may be passed in
        when the same items are scored in several chunks.
        """
        valid = self._valid(lengths, w.shape[1])
        if len(self.co_layers) > 1:  # earlier blocks mix the two items of a pair: run them per pair
            v, w, valid = v[image_index], w[text_index], valid[text_index]
            for layer, v_self, w_self in zip(self.co_layers[:-1], self.image_between, self.text_between):
                v, w = layer(v, w, valid)
                v, w = v_self(v, None), w_self(w, valid[:, None, None, :])
            image_index = text_index = torch.arange(v.shape[0], device=v.device)
            final_kv = None
        last = self.co_layers[-1]
        kw, vw, kv, vv = final_kv if final_kv is not None else self._item_keys_values(v, w)
        h_img = last.image(v[image_index, :1], kw[text_index], vw[text_index], valid[text_index])
        h_cls = last.text(w[text_index, :1], kv[image_index], vv[image_index], None)
        return self.align(h_img[:, 0] * h_cls[:, 0]).squeeze(-1).float()

    def _item_keys_values(self, v: torch.Tensor, w: torch.Tensor):
        last = self.co_layers[-1]
        return (*last.image.keys_values(w), *last.text.keys_values(v))

    def similarity(self, image_repr: torch.Tensor, text_repr: tuple) -> torch.Tensor:
        """`[n_images, n_texts]` alignment scores, about `pair_chunk` pairs at a time."""
        w, lengths = text_repr
        v = image_repr
        n_i, n_t = v.shape[0], w.shape[0]
        if len(self.co_layers) == 1:  # one block: its [IMG] / [CLS] queries against all items, no gathering
            last, valid = self.co_layers[0], self._valid(lengths, w.shape[1])
            kw, vw, kv, vv = self._item_keys_values(v, w)
            rows = max(1, self.settings["pair_chunk"] // max(n_t, 1))
            out = []
            for s in range(0, n_i, rows):
                h_img = last.image.cross_all(v[s:s + rows, 0], kw, vw, valid)                 # [rows, n_t, d]
                h_cls = last.text.cross_all(w[:, 0], kv[s:s + rows], vv[s:s + rows], None)  # [n_t, rows, d]
                out.append(self.align(h_img * h_cls.transpose(0, 1)).squeeze(-1).float())
            return torch.cat(out)
        flat = torch.arange(n_i * n_t, device=v.device)
        out = torch.empty(n_i * n_t, device=v.device)
        for start in range(0, n_i * n_t, self.settings["pair_chunk"]):
            idx = flat[start:start + self.settings["pair_chunk"]]
            out[start:start + len(idx)] = self.pair_scores(v, w, lengths, idx // n_t, idx % n_t)
        return out.view(n_i, n_t)

    # --- training ----------------------------------------------------------------------------------
    def training_loss(self, batch: PairBatch):
        v = self.encode_images(batch.images)
        w, lengths = self.encode_texts(batch.texts)
        b = v.shape[0]
        device = v.device
        own = torch.arange(b, device=device)
        image_index, text_index = [own], [own]
        for k in range(self.settings["negatives"]):  # alternately a random caption and a random image
            other = (own + torch.randint(1, max(b, 2), (b,), device=device)) % b
            image_index.append(own if k % 2 == 0 else other)
            text_index.append(other if k % 2 == 0 else own)
        image_index, text_index = torch.stack(image_index, 1), torch.stack(text_index, 1)  # [B, 1 + negatives]
        scores = self.pair_scores(v, w, lengths, image_index.reshape(-1), text_index.reshape(-1)).view(b, -1)
        rows_i, rows_t = batch.images.rows[image_index], batch.texts.rows[text_index]
        if self.settings["objective"] == "alignment":
            distractor = rows_i != rows_t  # a "distractor" of the same image is no negative: leave it out
            distractor[:, 0] = True
            loss = F.cross_entropy(scores.masked_fill(~distractor, float("-inf")), torch.zeros(b, dtype=torch.long,
                                                                                                  device=device))
        else:
            shared = (batch.images.labels[image_index] * batch.texts.labels[text_index]).sum(-1) > 0
            target = (shared | (rows_i == rows_t)).float()
            loss = F.binary_cross_entropy_with_logits(scores, target)
        return loss, {"accuracy": (scores.argmax(dim=1) == 0).float().mean().detach()}
