"""SCAN stacked cross attention and its semantic-consistency training (papers/002).

One class serves three method names:

| name              | score F(I, S)  | objective                                                   |
|-------------------|----------------|-------------------------------------------------------------|
| scan_i2t          | F^V            | hardest-negative triplet loss (VSE++)                       |
| scan_t2i          | F^S            | hardest-negative triplet loss                               |
| scan_consistency  | F^V + F^S      | triplet loss on F + lambda_con * sum_ij (F^V - F^S)^2       |

F^V ("image-grounded", SCAN's i2t): every region attends to the words (Eq. 5) and is compared with
its textual context; F^S ("text-grounded", SCAN's t2i): every word attends to the regions (Eq. 7).

Images: RoI features through one FC to d (Eq. 1). Texts: word2vec-initialised lookup and a Bi-GRU
with both directions averaged (Eq. 2-3). Both are l2-normalised per region / word, so the cosine of
Eq. 4 is a dot product.

The all-pairs score is computed in batched tensor form over `[images, texts, regions, words]`
without ever forming the d-dimensional context vectors: with unit-norm features,
`v_i . c_i = sum_j alpha_ij s_ij` and `|c_i|^2 = alpha_i G alpha_i^T` with the word Gram matrix
`G = T T^T` (likewise for F^S with the region Gram matrix), so the cost per pair is
`O(R L (R + L))` instead of `O(R L d)` and memory does not grow with d. Evaluation over many
pairs runs in chunks sized by `attention_memory_mb`, on whatever device the encodings are on.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from pipeline.contract.batches import PAD_ID, DataInfo, ImageBatch, PairBatch, TextBatch
from pipeline.contract.method import RetrievalMethod, build_kwargs_word_vectors
from pipeline.losses.consistency import semantic_consistency_loss
from pipeline.losses.ranking import distinct_images, triplet_ranking_loss
from pipeline.models.word_encoders import BiGRUWords, valid_words

EPS = 1e-8
# Live float tensors of size [images, texts, regions, words] while scoring one chunk (for sizing).
_WORKING_TENSORS = 10
TEXT_BLOCK = 512  # texts per scoring block (sorted by length, so a block is trimmed to similar lengths)


@dataclass(frozen=True)
class Variant:
    image_grounded: bool  # F^V
    text_grounded: bool   # F^S
    consistency: bool


VARIANTS: dict[str, Variant] = {
    "scan_i2t": Variant(image_grounded=True, text_grounded=False, consistency=False),
    "scan_t2i": Variant(image_grounded=False, text_grounded=True, consistency=False),
    "scan_consistency": Variant(image_grounded=True, text_grounded=True, consistency=True),
}


def l2_normalise(x: torch.Tensor, dim: int = -1) -> torch.Tensor:
    return x / x.norm(dim=dim, keepdim=True).clamp_min(EPS)


ACTIVATIONS = ("relu", "leaky_relu")
AGGREGATIONS = ("mean", "lse")
LEAKY_SLOPE = 0.1  # SCAN's official clipped_l2norm attention: LeakyReLU(0.1)


def _aggregate(relevance: torch.Tensor, dim: int, aggregation: str, temperature: float,
               valid: torch.Tensor | None = None) -> torch.Tensor:
    """Mean (Eq. 6 / 8) or LogSumExp `log(sum exp(temperature * R)) / temperature` of the relevances over
    `dim`, counting only `valid` entries (bool, broadcastable) when given."""
    if aggregation == "lse":
        scaled = relevance * temperature
        if valid is not None:
            scaled = scaled.masked_fill(~valid, float("-inf"))
        return torch.logsumexp(scaled, dim=dim) / temperature
    if valid is None:
        return relevance.mean(dim=dim)
    mask = valid.to(relevance.dtype)
    return (relevance * mask).sum(dim=dim) / mask.sum(dim=dim)


def cross_attention_scores(regions: torch.Tensor, words: torch.Tensor, lengths: torch.Tensor, *,
                           lambda1: float, lambda2: float, image_grounded: bool = True,
                           text_grounded: bool = True, activation: str = "relu", aggregation: str = "mean",
                           lse_temperature: float = 6.0,
                           dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """`(F^V, F^S)`, each `[I, T]` (None when not asked for), for every image-text pair.

    `regions` `[I, R, d]` and `words` `[T, L, d]` are l2-normalised; `lengths` `[T]` counts the real
    words of each text (positions beyond are ignored; at least one word is kept). `activation`: relu
    (papers) or leaky_relu (official, slope 0.1) on the cosines before attention; `aggregation`: mean or
    LogSumExp with inverse temperature `lse_temperature` over regions (F^V) / words (F^S).
    Runs in `dtype` (float32) with autocast off: near-tied scores of the hardest negatives and of the
    ranking are below bfloat16's resolution (`dtype` exists so that tests can show a bf16 path).
    """
    with torch.autocast(regions.device.type, enabled=False):
        return _cross_attention(regions.to(dtype), words.to(dtype), lengths, lambda1, lambda2, image_grounded,
                                text_grounded, activation, aggregation, lse_temperature)


def _attention_softmax(x: torch.Tensor, dim: int) -> torch.Tensor:
    """The attention softmax: `_Softmax` on the CPU, where it was measured faster; elsewhere torch's one
    fused kernel (`_Softmax` makes several passes over memory and was not measured on a GPU)."""
    return _Softmax.apply(x, dim) if x.device.type == "cpu" else torch.softmax(x, dim=dim)


class _Softmax(torch.autograd.Function):
    """`softmax(x, dim)` as exp(x - max) / sum, with the backward y * (g - sum(g * y)).

    Why not `torch.softmax` on the CPU: its kernel over a short last dimension (a caption's ~12 words) is
    about 5x slower than these few elementwise passes, forward and backward, on SCAN's [64, 64, 36, 12]
    batch tensor on one thread (bench/scan_softmax.py); over the 36 regions the two cost about the same.
    The two agree to float rounding (a few 1e-7), not bit for bit.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, dim: int) -> torch.Tensor:
        y = (x - x.amax(dim, keepdim=True)).exp_()
        y = y.div_(y.sum(dim, keepdim=True))
        ctx.save_for_backward(y)
        ctx.dim = dim
        return y

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (y,) = ctx.saved_tensors
        gy = grad * y
        return gy - y * gy.sum(ctx.dim, keepdim=True), None


def _cross_attention(regions, words, lengths, lambda1, lambda2, image_grounded, text_grounded, activation,
                     aggregation, lse_temperature):
    width = int(lengths.clamp_min(1).max())
    valid = valid_words(lengths.long(), width)                         # [T, L]
    words = words[:, :width] * valid.unsqueeze(-1)                     # padding words become zero vectors
    sims = torch.einsum("ird,tld->itrl", regions, words)               # Eq. 4, [I, T, R, L]
    if activation == "leaky_relu":                                     # 0 for padding words either way
        rect = torch.nn.functional.leaky_relu(sims, LEAKY_SLOPE)
    else:
        rect = sims.clamp_min(0)
    eps = EPS
    fv = fs = None
    if image_grounded:
        # Eq. 5: normalise over regions, softmax over the words of the text with inverse temperature lambda1.
        scale = lambda1 / torch.linalg.vector_norm(rect, dim=2, keepdim=True).clamp_min(eps)
        padding = torch.zeros(valid.shape, device=rect.device, dtype=rect.dtype).masked_fill(~valid, float("-inf"))
        alpha = _attention_softmax(torch.addcmul(padding[None, :, None, :], rect, scale), 3)
        word_gram = torch.einsum("tld,tmd->tlm", words, words)
        dot = torch.linalg.vecdot(alpha, sims, dim=3)                  # v_i . c_i^t
        norm_sq = torch.linalg.vecdot(torch.einsum("itrl,tlm->itrm", alpha, word_gram), alpha, dim=3)
        relevance = dot / norm_sq.clamp_min(eps * eps).sqrt()          # [I, T, R]
        fv = _aggregate(relevance, 2, aggregation, lse_temperature)    # Eq. 6 (mean) or LSE
    if text_grounded:
        # Eq. 7: normalise over the words, softmax over regions with inverse temperature lambda2.
        scale = lambda2 / torch.linalg.vector_norm(rect, dim=3, keepdim=True).clamp_min(eps)
        beta = _attention_softmax(rect * scale, 2)
        region_gram = torch.einsum("ird,iqd->irq", regions, regions)
        dot = torch.linalg.vecdot(beta, sims, dim=2)                   # t_j . c_j^v, [I, T, L]
        norm_sq = torch.linalg.vecdot(torch.einsum("itrl,irq->itql", beta, region_gram), beta, dim=2)
        relevance = dot / norm_sq.clamp_min(eps * eps).sqrt()
        fs = _aggregate(relevance, 2, aggregation, lse_temperature, valid[None])  # Eq. 8 over real words
    return fv, fs


def chunked_cross_attention(regions: torch.Tensor, words: torch.Tensor, lengths: torch.Tensor, *,
                            lambda1: float, lambda2: float, image_grounded: bool, text_grounded: bool,
                            memory_mb: float = 512.0, **options) -> torch.Tensor:
    """`[I, T]` integrated scores (sum of the enabled F^V / F^S) computed in blocks of pairs.

    Texts are taken in order of length, `TEXT_BLOCK` at a time, so that each block is trimmed to its
    longest caption; images are then blocked so that the `[images, texts, regions, words]` working
    tensors of one block stay near `memory_mb`.
    """
    n_img, n_regions = regions.shape[0], regions.shape[1]
    n_txt = words.shape[0]
    out = torch.empty(n_img, n_txt, device=regions.device, dtype=torch.float32)
    lengths = lengths.long().clamp_min(1)
    order = torch.argsort(lengths, stable=True)
    budget = max(1, int(memory_mb * 2**20 / (4 * _WORKING_TENSORS)))  # float32 elements per tensor
    for t0 in range(0, n_txt, TEXT_BLOCK):
        idx = order[t0:t0 + TEXT_BLOCK]
        lens = lengths[idx]
        width = int(lens.max())
        block_words = words.index_select(0, idx)[:, :width]
        image_block = max(1, budget // (len(idx) * n_regions * width))
        for i0 in range(0, n_img, image_block):
            fv, fs = cross_attention_scores(regions[i0:i0 + image_block], block_words, lens, lambda1=lambda1,
                                            lambda2=lambda2, image_grounded=image_grounded,
                                            text_grounded=text_grounded, **options)
            out[i0:i0 + image_block, idx] = fv if fs is None else fs if fv is None else fv + fs
    return out


class SCAN(RetrievalMethod):
    """SCAN i2t / t2i and SCAN + semantic consistency (see the module docstring)."""

    #: Model selection on the validation rsum (papers/002 Sec. 4.2) when train.select_metric is "auto".
    select_metric = "rsum"

    def __init__(self, name: str, settings: dict, info: DataInfo, lam: float | None = None,
                 word_vectors: np.ndarray | None = None):
        super().__init__(name, settings, info, lam)
        if name not in VARIANTS:
            raise ValueError(f"SCAN has no variant '{name}' (known: {', '.join(VARIANTS)})")
        self.variant = VARIANTS[name]
        d = settings["d_model"]
        self.region_fc = nn.Linear(info.feature_dim, d)
        nn.init.xavier_uniform_(self.region_fc.weight)
        nn.init.zeros_(self.region_fc.bias)
        random_words = settings.get("word_init") == "random"
        self.words = BiGRUWords(info.vocab_size, info.word_dim, d,
                                None if random_words else build_kwargs_word_vectors(word_vectors, info),
                                settings["finetune_words"])
        if random_words:  # the official code: U(-0.1, 0.1), learned from scratch
            with torch.no_grad():
                self.words.lookup.weight.uniform_(-0.1, 0.1)
                self.words.lookup.weight[PAD_ID].zero_()

    # --- encoders -------------------------------------------------------------------------------
    def encode_images(self, images: ImageBatch) -> torch.Tensor:
        """`[B, R, d]` unit-norm region features."""
        return l2_normalise(self.region_fc(images.features))

    def encode_texts(self, texts: TextBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """`([B, L, d]` unit-norm word features, zeros after the end; `[B]` word counts (>= 1))."""
        lengths = texts.lengths.clamp_min(1)
        words = l2_normalise(self.words(texts.ids, lengths))
        return words * valid_words(lengths, words.shape[1]).unsqueeze(-1).to(words.dtype), lengths

    # --- scores ---------------------------------------------------------------------------------
    def _lambdas(self) -> dict:
        """Attention and aggregation settings (null options: the papers' values)."""
        s = self.settings
        return {"lambda1": s.get("lambda1") or 9.0, "lambda2": s.get("lambda2") or 9.0,
                "activation": s.get("attention_activation") or "relu", "aggregation": s.get("aggregation") or "mean",
                "lse_temperature": s.get("lse_temperature") or 6.0}

    def pair_scores(self, regions: torch.Tensor, text_repr: tuple[torch.Tensor, torch.Tensor]):
        """`(F^V, F^S)` for every pair of two encoded blocks (with gradients; no chunking)."""
        words, lengths = text_repr
        v = self.variant
        return cross_attention_scores(regions, words, lengths, image_grounded=v.image_grounded,
                                      text_grounded=v.text_grounded, **self._lambdas())

    def similarity(self, image_repr: torch.Tensor, text_repr: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        """`[n_images, n_texts]` F of the variant, in memory-bounded chunks."""
        words, lengths = text_repr
        v = self.variant
        return chunked_cross_attention(image_repr, words, lengths, image_grounded=v.image_grounded,
                                       text_grounded=v.text_grounded,
                                       memory_mb=self.settings["attention_memory_mb"], **self._lambdas())

    # --- objective ------------------------------------------------------------------------------
    def training_loss(self, batch: PairBatch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        fv, fs = self.pair_scores(self.encode_images(batch.images), self.encode_texts(batch.texts))
        score = fv if fs is None else fs if fv is None else fv + fs   # Eq. 9
        # Official: only the diagonal is excluded; paper reading: every caption of another image.
        diagonal = self.settings.get("negatives") == "diagonal"
        negatives = None if diagonal else distinct_images(batch.images.rows, batch.texts.rows)
        with torch.autocast(score.device.type, enabled=False):        # fp32 like the scores
            ranking = triplet_ranking_loss(score.float(), self.settings["margin"], negatives, mining="hardest",
                                           reduction="sum")           # Eq. 15
        parts = {"ranking": ranking.detach()}
        total = ranking
        if self.variant.consistency:
            consistency = semantic_consistency_loss(fv, fs)  # Eq. 11-12, all pairs of the batch
            parts["consistency"] = consistency.detach()
            total = total + self.settings["lambda_con"] * consistency  # Eq. 16
        return total, parts
