"""The order of a training epoch: a plain permutation from the cache, block shuffling when streamed from
the store (every caption once, seed-determined, batches drawn from few inner chunks), and prefetching."""
from __future__ import annotations

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
