"""The order in which an epoch visits the training captions.

From the in-memory cache any order costs the same, so the epoch is a plain seeded permutation. Streamed
from the Zarr store, a random order reads one row here and one there: Zarr decompresses a whole inner
chunk of rows for each (8 images of 36 x 2048 float16 at COCO size) and opens a shard file for each, so
the step waits on the store. There the epoch is shuffled in two levels: the store's inner chunks in a
seeded random order, then the captions of every `window` consecutive chunks shuffled together. A window
is read from the store once, whole (`pipeline.training.epoch_batches`), and its batches are drawn from it;
every caption is still visited exactly once, and the order is a function of the seed and the epoch alone.
The chunks are in table order, which carries no meaning (image ids), so a window is a random set of images.

How many images a window holds decides how far the order is from uniform: on `shapes`, windows of 128
images cost `ss` 1.4 NDCG points against the uniform order, windows of 512 images 0.5 (within noise;
reports/benchmarks.md, "Block shuffling and accuracy"). The default window holds `WINDOW_IMAGES` images,
more than `shapes`' whole training split, which the uniform order draws from: at COCO size a window is
about 300 MB of float16 features, read once per epoch whatever its width.
"""
from __future__ import annotations

import numpy as np

# Images whose captions a streamed epoch shuffles together (rounded down to whole inner chunks).
WINDOW_IMAGES = 2048


def window_blocks(block_rows: int) -> int:
    """Inner chunks per window by default: `WINDOW_IMAGES` images' worth."""
    return max(1, WINDOW_IMAGES // block_rows)


def epoch_order(captions: np.ndarray, caption_rows: np.ndarray, seed: int, epoch: int,
                block_rows: int | None = None, window: int | None = None) -> np.ndarray:
    """`captions` (indices) in the order epoch `epoch` visits them (`epoch_windows` without the windows)."""
    return epoch_windows(captions, caption_rows, seed, epoch, block_rows, window)[0]


def epoch_windows(captions: np.ndarray, caption_rows: np.ndarray, seed: int, epoch: int,
                  block_rows: int | None = None, window: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """`(order, window of each position)`: `captions` (indices) in the order epoch `epoch` visits them, a
    permutation seeded by `(seed, epoch)` (one window), or, with `block_rows` (rows per inner chunk of the
    store; None: cached data), block-shuffled in windows of `window` chunks (None: `window_blocks`) as the
    module says. `caption_rows` maps a caption index to its image's table row. The windows are numbered
    from 0 in the order and never share an image."""
    rng = np.random.default_rng([seed, epoch])
    if block_rows is None:
        return rng.permutation(captions), np.zeros(len(captions), dtype=np.int64)
    window = window_blocks(block_rows) if window is None else window
    blocks = caption_rows[captions] // block_rows
    unique = np.unique(blocks)
    rank = np.empty(int(unique.max()) + 1 if unique.size else 0, dtype=np.int64)
    rank[unique[rng.permutation(len(unique))]] = np.arange(len(unique))  # each block's place in the epoch
    group = rank[blocks] // window
    noise = rng.random(len(captions))
    visit = np.lexsort((noise, group))  # groups in order, captions shuffled within each
    return captions[visit], group[visit]


def prefetched(make, keys, enabled: bool):
    """`make(key)` for each key in order; when `enabled` (streamed data), the next one is made on a
    background thread while the caller works on the current one (Zarr's decompression releases the GIL)."""
    if not enabled:
        yield from (make(key) for key in keys)
        return
    from concurrent.futures import ThreadPoolExecutor

    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="xmr-prefetch")
    try:
        keys = iter(keys)
        pending = next((pool.submit(make, key) for key in keys), None)
        while pending is not None:
            ready = pending.result()
            pending = next((pool.submit(make, key) for key in keys), None)
            yield ready
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
