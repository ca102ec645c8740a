"""Top retrievals per query, and the `reports/rankings/<ds>/<method>.npz` file the report reads.

File format (`write_rankings` / `read_rankings`):
  image_rows    [n_img]      table row of each test image
  caption_rows  [n_txt]      table row of the image each test caption belongs to
  caption_index [n_txt]      position of the caption in that row's `captions` list
  i2t_top       [n_img, n]   best captions for each image query, indices into caption_rows
  t2i_top       [n_txt, n]   best images for each caption query, indices into image_rows
Rankings follow the metrics' tie rule (equal scores by index). With identical-text
de-duplication an image query lists each distinct text once (its first occurrence).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from pipeline.metrics.errors import MetricInputError
from pipeline.metrics.npz_files import read_npz, write_npz
from pipeline.metrics.evaluate import auto_chunk
from pipeline.metrics.protocols import unique_texts
from pipeline.metrics.ranking import ordered_topk
from pipeline.metrics.scoring import ScoreSource, make_source, resolve_device

RANKING_KEYS = ("image_rows", "caption_rows", "caption_index", "i2t_top", "t2i_top")


class RankingsError(ValueError):
    """A rankings file is missing or malformed."""


def top_retrievals(scores: ScoreSource, n: int = 10, text_keys=None, *, measure: str = "cosine",
                   n_images: int | None = None, n_texts: int | None = None, device=None,
                   chunk_size: int | None = None, memory_mb: float = 512) -> dict[str, np.ndarray]:
    """`{"i2t_top": [n_img, n] text indices, "t2i_top": [n_txt, n] image indices}` (n clamped to the
    gallery sizes); accepts the same score inputs as `evaluate_similarity`."""
    if n < 1:
        raise MetricInputError(f"top_retrievals: n must be at least 1, got {n}")
    device = resolve_device(device)
    source = make_source(scores, n_images, n_texts, measure)
    text_rows = np.arange(source.n_texts)
    inverse = text_rows
    if text_keys is not None:
        first, inverse = unique_texts(text_keys if isinstance(text_keys, np.ndarray) else list(text_keys))
        text_rows = text_rows[first]
    pairs = source.pairs(np.arange(source.n_images), text_rows, device)
    out = {}
    for direction, n_q, n_g in (("i2t", pairs.n_images, pairs.n_texts), ("t2i", pairs.n_texts, pairs.n_images)):
        k = min(n, n_g)
        chunk = chunk_size or auto_chunk(n_g, memory_mb, False)
        parts = [ordered_topk(pairs.block(direction, s, min(s + chunk, n_q)), k).cpu() for s in range(0, n_q, chunk)]
        out[direction] = torch.cat(parts).numpy() if parts else np.zeros((0, k), dtype=np.int64)
    return {"i2t_top": text_rows[out["i2t"]], "t2i_top": out["t2i"][inverse]}


def write_rankings(path: str | Path, image_rows, caption_rows, caption_index, i2t_top, t2i_top,
                   evaluation: str | None = None) -> None:
    """Validate and write a rankings file atomically (with the `evaluation_id` of its evaluation, if given)."""
    arrays = {"image_rows": image_rows, "caption_rows": caption_rows, "caption_index": caption_index,
              "i2t_top": i2t_top, "t2i_top": t2i_top}
    arrays = {k: np.asarray(v, dtype=np.int64) for k, v in arrays.items()}
    _validate(arrays, str(path))
    if evaluation is not None:
        arrays["evaluation_id"] = np.asarray(evaluation)
    write_npz(path, arrays)


def read_rankings(path: str | Path) -> dict[str, np.ndarray]:
    """Read and validate a rankings file."""
    arrays = read_npz(path, RankingsError, "rankings")
    _validate(arrays, str(path))
    return arrays


def _validate(arrays: dict[str, np.ndarray], where: str) -> None:
    missing = [k for k in RANKING_KEYS if k not in arrays]
    if missing:
        raise RankingsError(f"{where}: array '{missing[0]}' missing (expected: {', '.join(RANKING_KEYS)})")
    n_img, n_txt = len(arrays["image_rows"]), len(arrays["caption_rows"])
    if len(arrays["caption_index"]) != n_txt:
        raise RankingsError(f"{where}: caption_index has {len(arrays['caption_index'])} entries, caption_rows {n_txt}")
    for key, n_q, n_g in (("i2t_top", n_img, n_txt), ("t2i_top", n_txt, n_img)):
        top = arrays[key]
        if top.ndim != 2 or top.shape[0] != n_q:
            raise RankingsError(f"{where}: {key} must have shape [{n_q}, n], got {top.shape}")
        if top.size and (top.min() < 0 or top.max() >= n_g):
            raise RankingsError(f"{where}: {key} holds indices outside [0, {n_g})")
