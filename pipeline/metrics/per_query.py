"""Per-query metric values: `reports/per_query/<ds>/<method>.npz`, the input of the bootstrap intervals.

`evaluate_similarity(..., per_query={})` fills one dict per evaluation; the `evaluate` stage writes it
next to the metrics file. Arrays (each optionally prefixed `<protocol>_` for a protocol after the first,
as in the metrics dict):
  ndcg_i2t ndcg_t2i      [queries] float  NDCG@k of each query (fraction; mean x 100 = the metric)
  ap_* apk_*             [queries] float  AP over the whole ranking, AP@k (fractions)
  rank_*                 [queries] int    0-based rank of the query's best true item (R@K, MedR)
  f1_image f1_text       [items, 3] int   per item (TP, FP, FN) of the label classifier (Micro-F1)
  unit_i2t unit_t2i      [queries] int    bootstrap unit of each query: the test image it belongs to
                                          (an image query is its own image, a caption query its
                                          caption's image; texts without an image are their own unit)
  n_units                scalar           number of units
Several folds (COCO 1K) are concatenated with their units numbered apart.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.metrics.npz_files import read_npz, write_npz

VALUE_KEYS = ("ndcg", "ap", "apk", "rank")
DIRECTIONS = ("i2t", "t2i")
F1_KEYS = ("f1_image", "f1_text")


class PerQueryError(ValueError):
    """A per-query file is missing, malformed, or does not fit the others of its dataset."""


def merge_folds(folds: list[dict]) -> dict:
    """One per-query dict from the dicts of a protocol's folds (units of fold f shifted past fold f-1's)."""
    if len(folds) == 1:
        return dict(folds[0])
    offsets = np.cumsum([0] + [int(f["n_units"]) for f in folds[:-1]])
    merged = {}
    for key in folds[0]:
        if key == "n_units":
            merged[key] = int(sum(int(f["n_units"]) for f in folds))
        elif key.startswith("unit_"):
            merged[key] = np.concatenate([np.asarray(f[key]) + o for f, o in zip(folds, offsets)])
        else:
            merged[key] = np.concatenate([np.asarray(f[key]) for f in folds])
    return merged


def protocol_prefixes(arrays: dict) -> list[str]:
    """The protocol prefixes present: "" for the first protocol, then e.g. "coco1k_"."""
    return sorted({key[: -len("n_units")] for key in arrays if key.endswith("n_units")}, key=len)


def write_per_query(path: str | Path, arrays: dict) -> None:
    """Validate and write a per-query file atomically."""
    arrays = {k: np.asarray(v) for k, v in arrays.items()}
    _validate(arrays, str(path))
    write_npz(path, arrays)


def read_per_query(path: str | Path) -> dict[str, np.ndarray]:
    """Read and validate a per-query file."""
    arrays = read_npz(path, PerQueryError, "per-query")
    _validate(arrays, str(path))
    return arrays


def _validate(arrays: dict[str, np.ndarray], where: str) -> None:
    prefixes = protocol_prefixes(arrays)
    if "" not in prefixes:
        raise PerQueryError(f"{where}: array 'n_units' missing (expected the layout of pipeline/metrics/per_query.py)")
    for prefix in prefixes:
        n_units = int(arrays[prefix + "n_units"])
        for d in DIRECTIONS:
            unit = arrays.get(f"{prefix}unit_{d}")
            if unit is None or unit.ndim != 1:
                raise PerQueryError(f"{where}: array '{prefix}unit_{d}' missing or not 1-D")
            if unit.size and (unit.min() < 0 or unit.max() >= n_units):
                raise PerQueryError(f"{where}: '{prefix}unit_{d}' holds units outside [0, {n_units})")
            for key in VALUE_KEYS:
                values = arrays.get(f"{prefix}{key}_{d}")
                if values is not None and values.shape != unit.shape:
                    raise PerQueryError(f"{where}: '{prefix}{key}_{d}' has shape {values.shape}, expected "
                                        f"{unit.shape} (one value per query)")
        for key, d in zip(F1_KEYS, DIRECTIONS):
            counts = arrays.get(prefix + key)
            if counts is not None and counts.shape != (len(arrays[f"{prefix}unit_{d}"]), 3):
                raise PerQueryError(f"{where}: '{prefix}{key}' has shape {counts.shape}, expected "
                                    f"({len(arrays[f'{prefix}unit_{d}'])}, 3) (TP, FP, FN per item)")
