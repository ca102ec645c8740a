"""The order of a training epoch: a plain permutation from the cache, block shuffling when streamed from
the store (every caption once, seed-determined, batches drawn from few inner chunks), and prefetching."""
from __future__ import annotations

import dataclasses
import threading

import numpy as np
import pytest

from pipeline.training.order import epoch_order, prefetched

CAPTIONS_PER_IMAGE = 5


def _captions(n_images=400):
    caption_rows = np.repeat(np.arange(n_images), CAPTIONS_PER_IMAGE)
    train = np.flatnonzero(caption_rows < n_images - 40)  # the last 40 images are another split
    return train, caption_rows


def test_cached_epochs_are_the_seeded_permutation_as_before():
    train, rows = _captions()
    assert np.array_equal(epoch_order(train, rows, 3, 2), np.random.default_rng([3, 2]).permutation(train))


@pytest.mark.parametrize("epoch", [0, 1, 7])
def test_block_shuffling_visits_every_caption_once_in_few_chunks(epoch):
    train, rows = _captions()
    order = epoch_order(train, rows, seed=0, epoch=epoch, block_rows=8, window=4)
    assert np.array_equal(np.sort(order), train)                     # each caption exactly once
    chunk = rows[order] // 8
    per_window = 4 * 8 * CAPTIONS_PER_IMAGE                          # captions of 4 full chunks
    for start in range(0, len(order), per_window):
        assert len(np.unique(chunk[start:start + per_window])) <= 4
    first_seen = chunk[np.sort(np.unique(chunk, return_index=True)[1])]
    assert not np.array_equal(first_seen, np.sort(first_seen))       # chunks in a random order
    batch = order[:64]
    assert len(np.unique(rows[batch])) < 64                          # images share a batch with their chunk


def test_block_order_is_a_function_of_seed_and_epoch():
    train, rows = _captions()
    a = epoch_order(train, rows, seed=1, epoch=0, block_rows=8)
    assert np.array_equal(a, epoch_order(train, rows, seed=1, epoch=0, block_rows=8))
    assert not np.array_equal(a, epoch_order(train, rows, seed=1, epoch=1, block_rows=8))
    assert not np.array_equal(a, epoch_order(train, rows, seed=2, epoch=0, block_rows=8))


def test_prefetching_gives_the_same_items_in_order_and_stops_cleanly():
    made = []

    def make(k):
        made.append((k, threading.current_thread().name))
        return k * k

    assert list(prefetched(make, range(6), enabled=True)) == [k * k for k in range(6)]
    assert all(name.startswith("xmr-prefetch") for _, name in made)
    assert list(prefetched(make, range(6), enabled=False)) == [k * k for k in range(6)]

    def broken(k):
        if k == 2:
            raise ValueError("row 2 cannot be read")
        return k

    with pytest.raises(ValueError, match="row 2"):
        list(prefetched(broken, range(5), enabled=True))
    stream = prefetched(make, range(100), enabled=True)
    next(stream)
    stream.close()                                                   # the consumer stops early
    assert not [t for t in threading.enumerate() if t.name.startswith("xmr-prefetch")]


def test_a_streamed_training_run_uses_blocks_and_matches_its_rerun(tmp_path):
    """`train_method` on data streamed from a store with inner chunks: block-shuffled, prefetched, and
    bit-identical when run again."""
    import torch

    from pipeline.training.data import RetrievalData
    from pipeline.training.loop import train_method
    from retrieval_fixtures import make_dataset, small_params

    torch.set_num_threads(1)
    table, store, text = make_dataset()
    store.inner_chunk_rows = 8
    weights = []
    for run in range(2):
        data = RetrievalData(table, store, text, cache_splits=("train", "val"), cache_gb=0.0)
        assert data.stream_block_rows(np.arange(10)) == 8
        train_method("ss_wo_c", small_params(epochs=1), data, tmp_path / f"m{run}", tmp_path / f"h{run}.json",
                     dataset="synthetic", progress=False, log=lambda m: None)
        weights.append(torch.load(tmp_path / f"m{run}" / "model.pt", map_location="cpu"))
    for key, value in weights[0].items():
        assert torch.equal(value, weights[1][key]), key


@pytest.mark.parametrize("window", [None, 3])
def test_windows_partition_the_epoch_by_images(window):
    from pipeline.training.order import epoch_windows, window_blocks

    train, rows = _captions()
    order, windows = epoch_windows(train, rows, seed=4, epoch=1, block_rows=8, window=window)
    assert np.array_equal(order, epoch_order(train, rows, 4, 1, block_rows=8, window=window))
    assert np.array_equal(np.unique(windows), np.arange(windows.max() + 1))  # numbered from 0, in order
    assert (np.diff(windows) >= 0).all()
    chunks_per_window = window or window_blocks(8)
    images = [set(rows[order[windows == w]]) for w in range(windows.max() + 1)]
    assert sum(map(len, images)) == len(set().union(*images))          # no image in two windows
    assert all(len({r // 8 for r in imgs}) <= chunks_per_window for imgs in images)
    order, windows = epoch_windows(train, rows, seed=4, epoch=1)       # cached: one window, a permutation
    assert not windows.any() and np.array_equal(np.sort(order), train)


class _CountingStore:
    """A store that records the rows of every read."""

    def __init__(self, store):
        self._store, self.reads, self.arrays = store, [], set()

    def __getattr__(self, name):
        return getattr(self._store, name)

    def __len__(self):
        return len(self._store)

    def read(self, rows, float32=True, arrays=None, out=None):
        self.reads.append(np.asarray(rows))
        self.arrays.add(arrays)
        return self._store.read(rows, float32, arrays, out)


@pytest.mark.parametrize("rank,world,boxes_held", [(0, 1, False), (1, 2, False), (0, 1, True)])
def test_streamed_batches_equal_batch_by_batch_reads_and_read_each_image_once(rank, world, boxes_held):
    """Window reads give exactly the batches that reading each batch from the store gives, and each image
    of the epoch is read once (not once per batch that holds one of its captions); with the boxes held in
    memory, only the features are read."""
    from pipeline.training.data import RetrievalData
    from pipeline.training.epoch_batches import epoch_batches
    from pipeline.training.order import epoch_windows
    from retrieval_fixtures import make_dataset

    table, store, text = make_dataset(n_images=200, captions_per_image=3)
    counting = _CountingStore(store)
    n_train = int(np.count_nonzero(np.asarray(table.column("split").to_pylist()) == "train"))
    between = n_train * 8 * (16 * 2 + 28) / 2 / 2**30                   # over the boxes, under the features
    data = RetrievalData(table, counting, text, cache_splits=("train",) if boxes_held else (), cache_gb=between)
    assert ("features" not in (data._cache or {})) and ("positions" in (data._cache or {})) == boxes_held
    train = data.split_items("train").captions
    order, windows = epoch_windows(train, data.caption_rows, seed=2, epoch=0, block_rows=8, window=2)
    n_steps = len(order) // 10
    counting.reads.clear()
    counting.arrays.clear()
    streamed = list(epoch_batches(data, order, windows, 10, n_steps, rank, world))
    read_rows = np.concatenate(counting.reads)
    assert len(read_rows) == len(np.unique(read_rows))                   # every image read once
    assert set(data.caption_rows[order[:n_steps * 10]]) <= set(read_rows)  # what the batches hold
    assert len(counting.reads) <= windows.max() + 1                      # one read per window
    assert counting.arrays == {("features",) if boxes_held else ("features", "positions", "classes")}
    assert len(streamed) == n_steps
    for step, batch in enumerate(streamed):
        want = data.pair_batch(order[step * 10:(step + 1) * 10][rank::world])
        for got, expected in ((batch.images, want.images), (batch.texts, want.texts)):
            for field in dataclasses.fields(expected):
                assert torch_equal(getattr(got, field.name), getattr(expected, field.name)), (step, field.name)


def torch_equal(a, b) -> bool:
    import torch

    return a.shape == b.shape and a.dtype == b.dtype and bool(torch.equal(a, b))


def test_cached_batches_are_gathered_batch_by_batch_and_stopping_early_ends_the_reader():
    from pipeline.training.data import RetrievalData
    from pipeline.training.epoch_batches import epoch_batches
    from pipeline.training.order import epoch_windows
    from retrieval_fixtures import make_dataset

    table, store, text = make_dataset()
    data = RetrievalData(table, store, text, cache_splits=("train",))
    train = data.split_items("train").captions
    order, _ = epoch_windows(train, data.caption_rows, seed=0, epoch=0)
    batches = list(epoch_batches(data, order, None, 16, 3))
    assert [b.texts.captions.tolist() for b in batches] == [order[i * 16:(i + 1) * 16].tolist() for i in range(3)]
    order, windows = epoch_windows(train, data.caption_rows, seed=0, epoch=0, block_rows=8, window=1)
    stream = epoch_batches(data, order, windows, 16, 5)
    next(stream)
    stream.close()
    assert not [t for t in threading.enumerate() if t.name.startswith("xmr-prefetch")]
