"""Which images and texts one evaluation uses, and which pairs are true matches.

Protocols (the unit is the test image, in the order given; a text follows its image):
  all     every image and every text (MIRFlickr, NUS-WIDE, Flickr30k, COCO-mini, shapes);
  coco5k  the same, but checked to be the 5,000-image COCO test set;
  coco1k  5 folds of 1,000 consecutive images with their captions, metrics averaged over folds.
Tag datasets (one tag string per image) collapse identical texts first (`text_keys`), as the
official code does: a collapsed text keeps the labels of its first occurrence, and its true images
are all images that carried it.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipeline.metrics.errors import MetricInputError
from pipeline.metrics.schema import PROTOCOLS

COCO_TEST_IMAGES = 5000
COCO_FOLDS, COCO_FOLD_IMAGES = 5, 1000


@dataclass
class Subset:
    """One evaluation: image rows and text rows (into the caller's arrays)."""

    image_rows: np.ndarray
    text_rows: np.ndarray


def protocol_subsets(protocol: str, caption_image: np.ndarray, n_images: int) -> list[Subset]:
    """The evaluations a protocol consists of (one, or one per fold)."""
    if protocol not in PROTOCOLS:
        raise MetricInputError(f"unknown protocol {protocol!r} (expected one of: {', '.join(PROTOCOLS)})")
    every_text = np.arange(len(caption_image))
    if protocol == "all":
        return [Subset(np.arange(n_images), every_text)]
    if n_images != COCO_TEST_IMAGES:
        raise MetricInputError(f"protocol {protocol!r} needs the {COCO_TEST_IMAGES}-image COCO test set, got "
                               f"{n_images} images (use protocol 'all' for other test sets)")
    if protocol == "coco5k":
        return [Subset(np.arange(n_images), every_text)]
    fold = np.asarray(caption_image) // COCO_FOLD_IMAGES
    return [Subset(np.arange(f * COCO_FOLD_IMAGES, (f + 1) * COCO_FOLD_IMAGES), every_text[fold == f])
            for f in range(COCO_FOLDS)]


def unique_texts(text_keys) -> tuple[np.ndarray, np.ndarray]:
    """`(first, inverse)`: the first occurrence of each distinct text, in order of first occurrence,
    and for every text the index of its distinct text. Keys are strings, or token-id sequences
    (a 2-D array or a list of 1-D arrays of different lengths)."""
    if isinstance(text_keys, np.ndarray) and text_keys.ndim == 2:
        keys = text_keys
    elif len(text_keys) and isinstance(text_keys[0], str):
        keys = np.asarray(text_keys, dtype=str)
    else:
        keys = _pad_sequences([np.asarray(k).ravel() for k in text_keys])
    if len(keys) == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    _, first, inverse = np.unique(keys, axis=0 if keys.ndim == 2 else None, return_index=True, return_inverse=True)
    inverse = inverse.ravel()
    order = np.argsort(first, kind="stable")  # number distinct texts by first occurrence
    renumber = np.empty_like(order)
    renumber[order] = np.arange(len(order))
    return first[order].astype(np.int64), renumber[inverse].astype(np.int64)


def _pad_sequences(seqs: list[np.ndarray]) -> np.ndarray:
    """Rows of a 2-D int64 array: [length, ids..., -2 padding] (the length keeps prefixes apart)."""
    lengths = np.array([len(s) for s in seqs], dtype=np.int64)
    width = int(lengths.max(initial=0)) + 1
    out = np.full((len(seqs), width), -2, dtype=np.int64)
    out[:, 0] = lengths
    if lengths.sum():
        flat = np.concatenate([s.astype(np.int64) for s in seqs])
        rows = np.repeat(np.arange(len(seqs)), lengths)
        cols = np.arange(len(flat)) - np.repeat(np.cumsum(lengths) - lengths, lengths) + 1
        out[rows, cols] = flat
    return out


def grouped(keys: np.ndarray, values: np.ndarray, n_keys: int) -> np.ndarray:
    """`[n_keys, m]` matrix whose row k lists the distinct `values` paired with key k, padded with -1."""
    pairs = np.unique(np.stack([keys, values], axis=1), axis=0) if len(keys) else np.zeros((0, 2), np.int64)
    counts = np.bincount(pairs[:, 0], minlength=n_keys)
    width = max(int(counts.max(initial=0)), 1)
    out = np.full((n_keys, width), -1, dtype=np.int64)
    starts = np.cumsum(counts) - counts
    out[pairs[:, 0], np.arange(len(pairs)) - starts[pairs[:, 0]]] = pairs[:, 1]
    return out


def caption_positions(caption_image: np.ndarray) -> np.ndarray:
    """Position of each caption among its image's captions (0, 1, ... in the order given)."""
    caption_image = np.asarray(caption_image)
    order = np.argsort(caption_image, kind="stable")
    sorted_owner = caption_image[order]
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_owner)) + 1]
    run_start = np.repeat(starts, np.diff(np.r_[starts, len(order)]))
    positions = np.empty(len(order), dtype=np.int64)
    positions[order] = np.arange(len(order)) - run_start
    return positions
