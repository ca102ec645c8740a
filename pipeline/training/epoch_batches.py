"""The batches of one training epoch, as the loop consumes them.

From the cache, each batch is gathered from memory. Streamed from the store, the block-shuffled order's
windows (`pipeline.training.order`) are read whole, one window ahead on a background thread, and each
batch is gathered from the window that holds its images. Each inner chunk is then decompressed once per
epoch, where reading each batch's own chunks decompressed it once for every batch that used one of its
rows: about ten times at five captions per image.
"""
from __future__ import annotations

from typing import Iterator

import numpy as np

from pipeline.contract.batches import PairBatch
from pipeline.training.data import take_rows
from pipeline.training.order import prefetched


def epoch_batches(data, order: np.ndarray, windows: np.ndarray | None, batch_size: int, n_steps: int,
                  rank: int = 0, world: int = 1) -> Iterator[PairBatch]:
    """The `n_steps` batches of `batch_size` positions of `order` (this rank's share: every `world`-th
    caption from `rank`) as `PairBatch`es of `data` (a `RetrievalData`). `windows` (the window of each
    position, from `epoch_windows`): read window by window; None: batch by batch, from the cache."""
    spans = [slice(step * batch_size, (step + 1) * batch_size) for step in range(n_steps)]
    if windows is None:
        yield from (data.pair_batch(order[span][rank::world]) for span in spans)
        return
    starts = np.flatnonzero(np.r_[True, windows[1:] != windows[:-1]])
    bounds = np.r_[starts, len(order)]

    def read(w: int) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        rows = np.unique(data.caption_rows[order[bounds[w]:bounds[w + 1]]])
        return rows, data.regions(rows)

    reads = prefetched(read, range(len(starts)), enabled=True)  # in window order, the next one ahead
    held: dict[int, tuple[np.ndarray, dict[str, np.ndarray]]] = {}
    try:
        for span in spans:
            first, last = int(windows[span][0]), int(windows[span][-1])
            while max(held, default=-1) < last:
                held[max(held, default=-1) + 1] = next(reads)
            for w in [w for w in held if w < first]:
                del held[w]  # later batches are in later windows
            captions = order[span][rank::world]
            where = windows[span][rank::world]
            yield data.pair_batch(captions, _gather(held, data.caption_rows[captions], where))
    finally:
        reads.close()


def _gather(held: dict, rows: np.ndarray, where: np.ndarray) -> dict[str, np.ndarray]:
    """The region arrays of `rows` (window `where[i]` holds row i), in their order. `where` does not
    decrease, so each window's rows are one run: a batch inside one window (all but about one in 160 at
    COCO size) is one fancy index per array, without a copy into a preassembled result."""
    runs = np.split(np.arange(len(rows)), np.flatnonzero(np.diff(where)) + 1)
    parts = []
    for run in runs:
        window_rows, arrays = held[int(where[run[0]])]
        slots = np.searchsorted(window_rows, rows[run])
        parts.append({key: take_rows(values, slots) for key, values in arrays.items()})
    if len(parts) == 1:
        return parts[0]
    return {key: np.concatenate([part[key] for part in parts]) for key in parts[0]}
