"""Finished blocks of a pairwise score matrix kept on disk, so that a killed evaluation resumes.

A pairwise method (SCAN's cross attention) scores every (image, caption) pair of the test split: at
COCO 5K that is 125M pairs and many minutes of compute. The evaluate stage keeps each finished block
of image rows under `reports/.partial/<dataset>/<method>/` (outside every DVC output and dependency),
next to a key naming what the scores belong to: the model's completion record, the scored items and
the compute settings that can change the last bits. A rerun with the same key loads the finished
blocks and computes the rest, so the matrix is bit-identical to an uninterrupted run; any other key
discards them. The stage removes the folder once its outputs are written.
"""
from __future__ import annotations

import hashlib
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pipeline.io import atomic_output, write_json

KEY_FILE = "key.json"


def items_digest(*arrays: np.ndarray) -> str:
    """SHA-256 over the given integer arrays (which images and captions were scored, in order)."""
    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(a, dtype=np.int64)
        h.update(str(a.shape).encode())
        h.update(a.tobytes())
    return h.hexdigest()


def discard(directory: str | Path) -> None:
    """Drop the kept blocks: the outputs made from them are written."""
    shutil.rmtree(directory, ignore_errors=True)


class PartialScores:
    """Blocks `[rows, n_texts]` of float32 scores saved as `rows-<start>.npy` under `directory`."""

    def __init__(self, directory: str | Path, key: dict[str, Any]):
        self.directory = Path(directory)
        self.key = json.loads(json.dumps(key, sort_keys=True))  # what a reread of key.json compares equal to
        if self._stored_key() != self.key:
            shutil.rmtree(self.directory, ignore_errors=True)
        self.directory.mkdir(parents=True, exist_ok=True)
        write_json(self.directory / KEY_FILE, self.key)

    def _stored_key(self) -> Any:
        try:
            return json.loads((self.directory / KEY_FILE).read_text())
        except (OSError, ValueError):
            return None

    def _path(self, start: int) -> Path:
        return self.directory / f"rows-{start}.npy"

    def load(self, start: int, shape: tuple[int, int]) -> torch.Tensor | None:
        """The saved block at row `start`, or None when absent or not of `shape` (then it is recomputed)."""
        try:
            block = np.load(self._path(start), allow_pickle=False)
        except (OSError, ValueError):
            return None
        if block.shape != shape or block.dtype != np.float32:
            return None
        return torch.from_numpy(block)

    def save(self, start: int, block: torch.Tensor) -> None:
        with atomic_output(self._path(start)) as tmp:
            with open(tmp, "wb") as f:
                np.save(f, block.numpy().astype(np.float32, copy=False), allow_pickle=False)


class ProgressLines:
    """One stderr line at most every `every` seconds with the share done and the time left: the progress of
    long scoring when bars are off (`--no-progress`, as under `dvc repro`)."""

    def __init__(self, what: str, total: int, every: float = 60.0):
        self.what, self.total, self.every = what, total, every
        self.start = self.last = time.monotonic()

    def update(self, done: int, computed: int) -> None:
        """`done` blocks of `total` are ready, `computed` of them were computed in this run (not loaded)."""
        now = time.monotonic()
        if now - self.last < self.every or done >= self.total:
            return
        self.last = now
        elapsed = now - self.start
        left = elapsed / computed * (self.total - done) if computed else float("nan")
        print(f"{self.what}: {done}/{self.total} blocks, {elapsed / 60:.1f} min elapsed, "
              f"about {left / 60:.1f} min left", file=sys.stderr, flush=True)
