"""Atomic `.npz` writing and reading with a message naming the file: the rankings and per-query files
of the `evaluate` stage (each module validates its own layout)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.io import atomic_output


def write_npz(path: str | Path, arrays: dict[str, np.ndarray]) -> None:
    with atomic_output(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)


def read_npz(path: str | Path, error: type[Exception], what: str) -> dict[str, np.ndarray]:
    """Every array of `path`; `error` (naming the file) when it is absent or unreadable."""
    path = Path(path)
    if not path.is_file():
        raise error(f"{path}: {what} file not found (written by `xmr evaluate`)")
    try:
        with np.load(path) as data:
            return {k: data[k] for k in data.files}
    except (OSError, ValueError) as exc:
        raise error(f"{path}: not a readable .npz file ({exc})") from exc
