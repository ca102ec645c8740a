"""`ShardReader` reads what Zarr reads, refuses damage with the shard's file named, and steps aside for other
layouts."""
from __future__ import annotations

import os

import numpy as np
import pytest
import zarr
from zarr.codecs import BloscCodec

from pipeline.detection.shard_reader import ShardDamage, ShardReader
from pipeline.detection.store import FeatureStore, StoreError, compressor

from test_detection_store import written


def sharded(path, values, shard_rows=16, inner_rows=8, codec=None):
    arr = zarr.create_array(path, shape=values.shape, dtype=values.dtype, chunks=(inner_rows, *values.shape[1:]),
                            shards=(shard_rows, *values.shape[1:]), fill_value=0,
                            compressors=codec or compressor("features"))
    arr[:] = values
    return arr


@pytest.mark.parametrize("rows", [[0], [3, 4, 5], list(range(16)), [7, 8], [15, 16, 40, 41, 42, 49], list(range(50))])
@pytest.mark.parametrize("threads", [1, 3])
def test_rows_equal_zarrs_including_the_last_partial_shard(tmp_path, rows, threads):
    values = np.random.default_rng(0).normal(size=(50, 3, 4)).astype(np.float16)  # 50 rows: last shard holds 2
    arr = sharded(tmp_path / "a", values)
    reader = ShardReader.of(arr, tmp_path / "a")
    assert reader is not None and (reader.shard_rows, reader.inner_rows) == (16, 8)
    got = reader.read(np.asarray(rows), threads)
    assert got.dtype == np.float16 and np.array_equal(got, values[rows])
    zstd = sharded(tmp_path / "b", values, codec=BloscCodec(cname="zstd", clevel=3, shuffle="bitshuffle"))
    assert np.array_equal(ShardReader.of(zstd, tmp_path / "b").read(np.asarray(rows)), values[rows])  # older stores


def test_an_inner_chunk_the_shard_leaves_out_reads_as_the_fill_value(tmp_path):
    values = np.ones((32, 2), np.float32)
    values[8:16] = 0  # all fill value: Zarr by default writes no frame for it
    arr = sharded(tmp_path / "a", values)
    index = np.frombuffer(open(tmp_path / "a" / "c" / "0" / "0", "rb").read()[-36:-4], "<u8").reshape(2, 2)
    assert index[1, 0] == 2**64 - 1  # the second inner chunk of shard 0 is absent
    assert np.array_equal(ShardReader.of(arr, tmp_path / "a").read(np.arange(4, 20)), values[4:20])


def test_other_layouts_get_no_reader_and_read_through_zarr(tmp_path):
    values = np.arange(24, dtype=np.float32).reshape(6, 4)
    plain = zarr.create_array(tmp_path / "plain", shape=values.shape, dtype=values.dtype, chunks=(2, 4))
    plain[:] = values
    assert ShardReader.of(plain, tmp_path / "plain") is None
    split_columns = zarr.create_array(tmp_path / "cols", shape=values.shape, dtype=values.dtype, chunks=(2, 2),
                                      shards=(2, 4))
    assert ShardReader.of(split_columns, tmp_path / "cols") is None  # inner chunks are not whole rows


def test_without_pread_the_store_reads_through_zarr(tmp_path, monkeypatch):
    path, _ = store_with_shards(tmp_path)
    want = FeatureStore(path).read(np.array([1, 6, 9]))
    monkeypatch.delattr(os, "pread")  # as on Windows
    store = FeatureStore(path)
    assert all(reader is None for reader in store._readers.values())
    got = store.read(np.array([1, 6, 9]))
    assert all(np.array_equal(got[k], want[k]) for k in want)


def store_with_shards(tmp_path):
    path = written(tmp_path / "features.zarr")
    return path, path / "features" / "c" / "1" / "0" / "0"


def damage_index(data: bytes) -> bytes:
    return data[:-10] + bytes([data[-10] ^ 0xFF]) + data[-9:]


def index_entry(data: bytes, offset: int, length: int) -> bytes:
    """The shard (one inner chunk) with its index entry replaced and the index checksum made to match: damage
    the checksum cannot see."""
    import google_crc32c

    entry = offset.to_bytes(8, "little") + length.to_bytes(8, "little")
    return data[:-20] + entry + google_crc32c.value(entry).to_bytes(4, "little")


def damage_frame_header(data: bytes) -> bytes:
    return data[:4] + (12345).to_bytes(4, "little") + data[8:]  # the first frame declares another size


@pytest.mark.parametrize("damage, why", [
    (damage_index, "checksum of its chunk index does not match"),
    (damage_frame_header, "frame declares 12345 bytes"),
    (lambda data: data[-12:], "shorter than its index"),
    (lambda data: data[-20:], "points past the end of the file"),  # the frames cut off, the index kept
    (lambda data: index_entry(data, 10, 2**64 - 5), "points past the end of the file"),  # the sum wraps to 5
    (lambda data: index_entry(data, 2**64 - 1, 10), "half absent"),
])
def test_damaged_shards_are_store_errors_naming_the_file(tmp_path, damage, why):
    path, shard = store_with_shards(tmp_path)
    store = FeatureStore(path)
    shard.write_bytes(damage(shard.read_bytes()))
    assert store.read([0, 1])["features"].shape == (2, 3, 4)  # the other shards still read
    with pytest.raises(StoreError, match=why) as err:
        store.read(np.arange(10))
    assert "array 'features', chunk 1 (rows 4-7" in str(err.value) and str(shard) in str(err.value)


def test_a_shard_removed_after_opening_is_named(tmp_path):
    path, shard = store_with_shards(tmp_path)
    store = FeatureStore(path)
    os.remove(shard)
    with pytest.raises(StoreError, match="cannot open") as err:
        store.read([5])
    assert str(shard) in str(err.value)


def test_damage_is_raised_as_shard_damage_by_the_reader(tmp_path):
    path, shard = store_with_shards(tmp_path)
    shard.write_bytes(damage_index(shard.read_bytes()))
    reader = ShardReader.of(zarr.open_array(path / "features", mode="r"), path / "features")
    with pytest.raises(ShardDamage) as err:
        reader.read(np.array([4]))
    assert err.value.shard == 1 and err.value.path == shard
