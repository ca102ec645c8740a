"""Image sizes from file headers (the table needs width/height; datasets without annotation files of
their own, like MIRFlickr, NUS-WIDE and Flickr, only have the images).

PIL reads only the header, and a thread pool overlaps the file opens, which dominate on large sets.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError
from tqdm import tqdm


class ImageFileError(ValueError):
    """An image file is missing or unreadable."""


def _size(path: str) -> tuple[int, int]:
    try:
        with Image.open(path) as im:
            return im.size
    except FileNotFoundError:
        return -1, -1
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as exc:  # a header declaring 30000x30000
        raise ImageFileError(f"{path}: not a readable image ({exc})") from exc


def image_sizes(paths: list[str | Path], progress: bool = True, workers: int = 8) -> np.ndarray:
    """`[N, 2]` int32 (width, height); rows of files that do not exist are (-1, -1)."""
    out = np.full((len(paths), 2), -1, dtype=np.int32)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        sizes = pool.map(_size, [str(p) for p in paths], chunksize=256)
        for i, wh in enumerate(tqdm(sizes, total=len(paths), desc="image sizes", unit="img", leave=False,
                                    disable=not progress)):
            out[i] = wh
    return out
