"""Zarr feature store: layout, resumable chunk writing, completeness, random-access reader."""
from __future__ import annotations

import json

import numpy as np
import pytest

import pipeline.detection.store as store_module
from pipeline.detection.store import ARRAYS, FeatureStore, FeatureStoreWriter, StoreError, partial_path

N, K, D = 10, 3, 4


def chunk_data(rows: range) -> dict:
    n = len(rows)
    r = np.asarray(rows, dtype=np.float32)
    return {
        "features": np.broadcast_to(r[:, None, None], (n, K, D)).astype(np.float16) + np.arange(D, dtype=np.float16),
        "boxes": np.broadcast_to(r[:, None, None], (n, K, 4)).astype(np.float32),
        "positions": np.full((n, K, 5), 0.5, np.float32),
        "scores": np.broadcast_to(r[:, None], (n, K)).astype(np.float32) / 100,
        "classes": np.broadcast_to(np.asarray(rows, np.int32)[:, None], (n, K)).copy(),
        "image_size": np.stack([np.asarray(rows) + 10, np.asarray(rows) + 20], 1).astype(np.int32),
        "valid": np.asarray(rows) != 7,
    }


def writer(path, **kw) -> FeatureStoreWriter:
    args = dict(n_rows=N, num_boxes=K, feature_dim=D, dtype="float16", chunk_rows=4,
                signature={"detector": "test", "weights_sha256": "abc"},
                attrs={"detector": "test", "weights_sha256": "abc", "selection": {"num_boxes": K},
                       "num_classes": 2, "class_names": ["a", "b"], "feature_dim": D})
    args.update(kw)
    return FeatureStoreWriter(path, **args)


def written(path, **kw):
    """A complete store at `path` (`writer`'s layout, overridden by `kw`) holding `chunk_data` of every row."""
    w = writer(path, **kw)
    for c in range(w.num_chunks):
        w.write_chunk(c, chunk_data(w.chunk_rows_range(c)))
    return w.finalize()


def test_layout_attrs_and_row_access(tmp_path):
    path = tmp_path / "features.zarr"
    w = writer(path)
    assert w.num_chunks == 3 and w.pending_chunks() == [0, 1, 2]
    for c in range(3):
        w.write_chunk(c, chunk_data(w.chunk_rows_range(c)), {"images": len(w.chunk_rows_range(c))})
    assert [s["images"] for s in w.chunk_stats()] == [4, 4, 2]
    w.finalize()
    assert path.is_dir() and not partial_path(path).exists()
    meta = json.loads((path / "zarr.json").read_text())
    assert meta["zarr_format"] == 3 and meta["attributes"]["complete"] is True
    store = FeatureStore(path)
    assert len(store) == N and store.dim == D and store.num_boxes == K and store.num_classes == 2
    assert store.group["features"].dtype == np.float16
    assert store.group["features"].shards[0] == 4 and store.group["features"].chunks[0] == 4  # gcd(8, 4)
    assert store.group["boxes"].chunks[0] == store.group["boxes"].shards[0] == 4
    assert store.valid.tolist() == [r != 7 for r in range(N)]
    got = store.read([9, 2, 2, 0])
    assert set(got) == set(ARRAYS)
    assert got["features"].dtype == np.float32 and got["features"].shape == (4, K, D)
    assert got["classes"][:, 0].tolist() == [9, 2, 2, 0]  # row order of the request
    assert got["image_size"][0].tolist() == [19, 29]
    assert np.allclose(got["features"][0, 0], 9 + np.arange(D))


def test_features_use_the_fast_codec_and_stores_of_the_earlier_codec_still_read(tmp_path):
    import zarr
    from zarr.codecs import BloscCodec

    path = written(tmp_path / "features.zarr")
    inner = json.loads((path / "features" / "zarr.json").read_text())["codecs"][0]["configuration"]["codecs"]
    blosc = next(c["configuration"] for c in inner if c["name"] == "blosc")
    assert (blosc["cname"], blosc["shuffle"], blosc["typesize"]) == ("lz4hc", "shuffle", 2)
    want = FeatureStore(path).read(np.arange(N))
    group = zarr.open_group(path, mode="r+")  # as a store extracted before the codec changed
    old = group["features"]
    values = old[:]
    del group["features"]
    group.create_array("features", shape=old.shape, dtype=old.dtype, chunks=old.chunks, shards=old.shards,
                       compressors=BloscCodec(cname="zstd", clevel=3, shuffle="bitshuffle"), fill_value=0)[:] = values
    got = FeatureStore(path).read(np.array([9, 0, 4]))
    for name in ARRAYS:
        assert np.array_equal(got[name], want[name][[9, 0, 4]]), name


def test_unfinished_store_is_not_visible_and_resumes(tmp_path):
    path = tmp_path / "features.zarr"
    w = writer(path)
    w.write_chunk(1, chunk_data(w.chunk_rows_range(1)))
    with pytest.raises(StoreError, match="2 of 3 chunks"):
        w.finalize()
    with pytest.raises(StoreError, match="partial store"):
        FeatureStore(path)
    again = writer(path)  # same signature: resumes
    assert again.resumed and again.pending_chunks() == [0, 2]
    assert again.pending_chunks(rank=0, world=2) == [0, 2] and again.pending_chunks(rank=1, world=2) == []
    other = writer(path, signature={"detector": "other", "weights_sha256": "abc"})  # different run: restart
    assert not other.resumed and other.pending_chunks() == [0, 1, 2]


def test_write_chunk_checks_shapes_and_dtype(tmp_path):
    w = writer(tmp_path / "f.zarr")
    bad = chunk_data(w.chunk_rows_range(0))
    bad["boxes"] = bad["boxes"][:, :2]
    with pytest.raises(StoreError, match="'boxes' has shape"):
        w.write_chunk(0, bad)
    with pytest.raises(StoreError, match="dtype"):
        writer(tmp_path / "g.zarr", dtype="int8")


def test_missing_store_is_a_clear_error(tmp_path):
    with pytest.raises(StoreError, match="not found"):
        FeatureStore(tmp_path / "nothing.zarr")


@pytest.mark.parametrize("rows", [[3, 4, 5, 6], [9, 1, 4, 2, 2], [0, 9], [8], [-1, 0]])
def test_slice_and_scattered_reads_return_the_requested_rows(tmp_path, rows):
    """Rows that fill a quarter of their span are read as one slice, others through `oindex`: both give
    exactly the requested rows, in the request's order."""
    path = tmp_path / "features.zarr"
    w = writer(path)
    for c in range(w.num_chunks):
        w.write_chunk(c, chunk_data(w.chunk_rows_range(c)), {"images": len(w.chunk_rows_range(c))})
    w.finalize()
    truth = chunk_data(range(N))
    got = FeatureStore(path).read(rows)
    wanted = np.asarray(rows) % N
    for name in ARRAYS:
        expected = truth[name][wanted]
        assert np.array_equal(got[name], expected.astype(np.float32) if name == "features" else expected), name
    stored = FeatureStore(path).read(rows, float32=False)["features"]  # what the training data read
    assert stored.dtype == np.float16 and np.array_equal(stored, truth["features"][wanted])


@pytest.mark.parametrize("rows", [[1, 3, 5, 60, 62, 5], [62, 1, 9, 14], [0, 30, 63], [17, 40, 41, 42]])
@pytest.mark.parametrize("direct, threads", [(True, 4), (True, 1), (False, 4)])
def test_rows_scattered_over_inner_chunks_read_exactly(tmp_path, monkeypatch, rows, direct, threads):
    """Rows are read by decoding the inner chunks that hold them (`ShardReader`; features here: runs of 8 in
    shards of 16; shards on threads), or through Zarr (the earlier reads, and any other layout); every path
    gives the rows asked, and `arrays` limits what is read."""
    from pipeline.detection.shard_reader import ShardReader

    monkeypatch.setattr(store_module, "READ_DIRECT", direct)
    monkeypatch.setattr(store_module, "READ_THREADS", threads)
    path = written(tmp_path / "features.zarr", n_rows=64, chunk_rows=16)
    truth = chunk_data(range(64))
    calls, read = [], ShardReader.read
    monkeypatch.setattr(ShardReader, "read", lambda self, *a: calls.append(self.folder.name) or read(self, *a))
    got = FeatureStore(path).read(rows, float32=False)
    for name in ARRAYS:
        assert np.array_equal(got[name], truth[name][rows]), name
    assert sorted(calls) == (sorted(ARRAYS) if direct else [])
    some = FeatureStore(path).read(rows, float32=False, arrays=("features", "classes"))
    assert set(some) == {"features", "classes"} and np.array_equal(some["classes"], truth["classes"][rows])


@pytest.mark.parametrize("direct", [True, False])
def test_read_fills_given_arrays_in_their_own_dtype(tmp_path, monkeypatch, direct):
    """A cache fill hands `read` slices of its cache: features are decoded straight into them (rows 16-23 are
    one whole inner chunk, the others parts of chunks), classes are converted into the cache's int64; both
    equal a plain read. Unsorted rows are refused."""
    monkeypatch.setattr(store_module, "READ_DIRECT", direct)
    store = FeatureStore(written(tmp_path / "features.zarr", n_rows=64, chunk_rows=16))
    rows = np.r_[2, 3, 16:24, 40, 41, 63]
    n = len(rows)
    cache = {"features": np.full((n + 2, K, D), -1, np.float16), "classes": np.full((n + 2, K), -1, np.int64)}
    out = {key: values[1:n + 1] for key, values in cache.items()}
    got = store.read(rows, float32=False, arrays=("features", "classes"), out=out)
    assert got["features"] is out["features"]
    truth = chunk_data(range(64))
    assert np.array_equal(out["features"], truth["features"][rows]) and (cache["features"][[0, n + 1]] == -1).all()
    assert np.array_equal(out["classes"], truth["classes"][rows]) and cache["classes"].dtype == np.int64
    with pytest.raises(ValueError, match="sorted unique rows"):
        store.read(rows[::-1], float32=False, arrays=("classes",), out={"classes": cache["classes"][:n]})
