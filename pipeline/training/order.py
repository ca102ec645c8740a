"""The order in which an epoch visits the training captions.

From the in-memory cache any order costs the same, so the epoch is a plain seeded permutation. Streamed
from the Zarr store, a random order reads one row here and one there: Zarr decompresses a whole inner
chunk of rows for each (8 images of 36 x 2048 float16 at COCO size) and opens a shard file for each, so
the step waits on the store. There the epoch is shuffled in two levels: the store's inner chunks in a
seeded random order, then the captions of every `window` consecutive chunks shuffled together. A
mini-batch then draws its images from at most `window` chunks, most of whose rows it uses; every caption
is still visited exactly once, and the order is a function of the seed and the epoch alone. The chunks
are in table order, which carries no meaning (image ids), so a window is a random set of images.
"""
from __future__ import annotations

import numpy as np

# Inner chunks whose captions are shuffled together in a streamed epoch: 16 chunks of 8 images with 5
# captions each are 640 captions, 10 batches of 64 drawn from the same 128 images.
WINDOW_BLOCKS = 16


def epoch_order(captions: np.ndarray, caption_rows: np.ndarray, seed: int, epoch: int,
                block_rows: int | None = None, window: int = WINDOW_BLOCKS) -> np.ndarray:
    """`captions` (indices) in the order epoch `epoch` visits them: a permutation seeded by `(seed, epoch)`,
    or, with `block_rows` (rows per inner chunk of the store; None: cached data), block-shuffled as the module says.
    `caption_rows` maps a caption index to its image's table row."""
    rng = np.random.default_rng([seed, epoch])
    if block_rows is None:
        return rng.permutation(captions)
    blocks = caption_rows[captions] // block_rows
    unique = np.unique(blocks)
    rank = np.empty(int(unique.max()) + 1 if unique.size else 0, dtype=np.int64)
    rank[unique[rng.permutation(len(unique))]] = np.arange(len(unique))  # each block's place in the epoch
    group = rank[blocks] // window
    noise = rng.random(len(captions))
    return captions[np.lexsort((noise, group))]  # groups in order, captions shuffled within each


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
