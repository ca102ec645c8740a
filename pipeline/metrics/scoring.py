"""Where similarity scores come from: a precomputed matrix, embeddings (cosine), or a callable.

Embedding models give two matrices; SCAN-like models only give a score per (image, text) pair, so
they pass a callable that computes one block at a time. All three become a `PairScores` over chosen
image and text rows, which yields `[chunk, gallery]` float32 blocks on the compute device in either
direction. Non-finite scores are an error (they would make the ranking meaningless).
"""
from __future__ import annotations

from typing import Callable, Union

import numpy as np
import torch

from pipeline.metrics.errors import MetricInputError

BlockFn = Callable[[torch.Tensor, torch.Tensor], object]
ScoreSource = Union[np.ndarray, torch.Tensor, tuple, BlockFn]


def resolve_device(device: str | torch.device | None) -> torch.device:
    """`device`, or the GPU when one is present, else the CPU."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def check_finite(values: torch.Tensor, what: str) -> None:
    if not bool(torch.isfinite(values).all()):
        bad = (~torch.isfinite(values)).nonzero()[0].tolist()
        raise MetricInputError(f"{what} contain NaN or inf (first at index {tuple(bad)})")


def _as_float_tensor(x, what: str) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        t = x.detach()
    else:
        try:
            t = torch.from_numpy(np.ascontiguousarray(x))
        except TypeError as exc:
            raise MetricInputError(f"{what}: expected a numeric array, got {type(x).__name__}") from exc
    if t.dtype != torch.float32:
        t = t.float()
    return t


class ScoreSourceBase:
    n_images: int
    n_texts: int

    def pairs(self, image_rows: np.ndarray, text_rows: np.ndarray, device: torch.device) -> "PairScores":
        raise NotImplementedError


class MatrixSource(ScoreSourceBase):
    """A precomputed `[n_images, n_texts]` similarity matrix (kept where it is, e.g. on the CPU)."""

    def __init__(self, matrix):
        m = _as_float_tensor(matrix, "scores")
        if m.ndim != 2:
            raise MetricInputError(f"scores: a similarity matrix must be 2-D [images, texts], got shape {tuple(m.shape)}")
        check_finite(m, "scores (similarity matrix)")
        self.matrix = m
        self.n_images, self.n_texts = m.shape

    def pairs(self, image_rows, text_rows, device):
        m = self.matrix
        if not _is_full(image_rows, self.n_images):
            m = m.index_select(0, torch.as_tensor(image_rows, device=m.device))
        if not _is_full(text_rows, self.n_texts):
            m = m.index_select(1, torch.as_tensor(text_rows, device=m.device))
        return PairScores(len(image_rows), len(text_rows),
                          i2t=lambda a, b: m[a:b].to(device),
                          t2i=lambda a, b: m[:, a:b].T.to(device).contiguous(),
                          check=False)


class EmbeddingSource(ScoreSourceBase):
    """Image and text embeddings compared by cosine similarity (or dot product)."""

    def __init__(self, image_embeddings, text_embeddings, measure: str = "cosine"):
        img = _as_float_tensor(image_embeddings, "image embeddings")
        txt = _as_float_tensor(text_embeddings, "text embeddings")
        for t, what in ((img, "image embeddings"), (txt, "text embeddings")):
            if t.ndim != 2:
                raise MetricInputError(f"{what}: expected a 2-D [items, dim] array, got shape {tuple(t.shape)}")
            check_finite(t, what)
        if img.shape[1] != txt.shape[1]:
            raise MetricInputError(f"image embeddings have dimension {img.shape[1]} but text embeddings "
                                   f"{txt.shape[1]}; they must match")
        if measure not in ("cosine", "dot"):
            raise MetricInputError(f"measure must be 'cosine' or 'dot', got {measure!r}")
        if measure == "cosine":
            img, txt = _unit_rows(img, "image embeddings"), _unit_rows(txt, "text embeddings")
        self.image, self.text = img, txt
        self.n_images, self.n_texts = img.shape[0], txt.shape[0]

    def pairs(self, image_rows, text_rows, device):
        img = self.image[torch.as_tensor(image_rows)].to(device)
        txt = self.text[torch.as_tensor(text_rows)].to(device)
        return PairScores(len(image_rows), len(text_rows),
                          i2t=lambda a, b: img[a:b] @ txt.T,
                          t2i=lambda a, b: txt[a:b] @ img.T,
                          check=False)


class CallableSource(ScoreSourceBase):
    """`fn(image_rows, text_rows) -> [len(image_rows), len(text_rows)]` scores, one block per call."""

    def __init__(self, fn: BlockFn, n_images: int, n_texts: int):
        if n_images is None or n_texts is None:
            raise MetricInputError("a score callable needs n_images and n_texts (the sizes of its two sides)")
        self.fn, self.n_images, self.n_texts = fn, int(n_images), int(n_texts)

    def _block(self, image_rows: torch.Tensor, text_rows: torch.Tensor, device) -> torch.Tensor:
        out = _as_float_tensor(self.fn(image_rows, text_rows), "scores returned by the score callable")
        expected = (len(image_rows), len(text_rows))
        if tuple(out.shape) != expected:
            raise MetricInputError(f"the score callable returned shape {tuple(out.shape)} for "
                                   f"{expected[0]} image rows x {expected[1]} text rows; expected {expected}")
        return out.to(device)

    def pairs(self, image_rows, text_rows, device):
        img = torch.as_tensor(image_rows, dtype=torch.long)
        txt = torch.as_tensor(text_rows, dtype=torch.long)
        return PairScores(len(img), len(txt),
                          i2t=lambda a, b: self._block(img[a:b], txt, device),
                          t2i=lambda a, b: self._block(img, txt[a:b], device).T.contiguous(),
                          check=True)


class PairScores:
    """Scores between a fixed set of images and texts, served as query-chunk x gallery blocks."""

    def __init__(self, n_images: int, n_texts: int, i2t, t2i, check: bool):
        self.n_images, self.n_texts = n_images, n_texts
        self._i2t, self._t2i, self._check = i2t, t2i, check

    def block(self, direction: str, start: int, stop: int) -> torch.Tensor:
        """Scores of queries `start:stop` (images for 'i2t', texts for 't2i') against the whole
        other side: `[stop - start, gallery]` float32 on the compute device. May be a view."""
        out = self._i2t(start, stop) if direction == "i2t" else self._t2i(start, stop)
        if self._check:
            check_finite(out, "scores returned by the score callable")
        return out


def _unit_rows(t: torch.Tensor, what: str) -> torch.Tensor:
    norms = t.norm(dim=1, keepdim=True)
    zero = (norms.squeeze(1) == 0).nonzero()
    if len(zero):
        raise MetricInputError(f"{what}: row {int(zero[0])} has zero norm, so cosine similarity is undefined "
                               f"({len(zero)} such rows)")
    return t / norms


def _is_full(rows: np.ndarray, n: int) -> bool:
    return len(rows) == n and bool(np.array_equal(rows, np.arange(n)))


def make_source(scores: ScoreSource, n_images: int | None = None, n_texts: int | None = None,
                measure: str = "cosine") -> ScoreSourceBase:
    """Wrap any accepted score input: a matrix, an `(image_emb, text_emb)` pair, or a callable."""
    if isinstance(scores, ScoreSourceBase):
        return scores
    if isinstance(scores, tuple):
        if len(scores) != 2:
            raise MetricInputError(f"embeddings must be given as a pair (image_embeddings, text_embeddings), "
                                   f"got a tuple of {len(scores)}")
        return EmbeddingSource(scores[0], scores[1], measure)
    if callable(scores) and not isinstance(scores, (np.ndarray, torch.Tensor)):
        return CallableSource(scores, n_images, n_texts)
    return MatrixSource(scores)
