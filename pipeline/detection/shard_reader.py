"""Rows of a sharded Zarr v3 array, read by decoding its inner chunks directly.

Each Zarr read call costs about 2 ms of machinery (an event loop hop, index parsing, buffer copies) before
any byte is decompressed, and a page-cached slice comes at 15-36% of the codec's rate on 2 cores: at COCO
size a window of a streamed epoch is 256 scattered inner chunks, so Zarr's overhead, not the disk or the
codec, set the rate of training from the store (docs/performance.md, "Store reads, codec and batch
dtype"). The layout the feature store writes
is simple, and this module reads exactly that layout: one file per shard of rows, the inner chunks'
Blosc frames in it, and at its end an index of (offset, length) per inner chunk with its CRC-32C. Any
other layout (another codec chain, the index first, another key encoding) gets no reader here
(`ShardReader.of` returns None) and is read through Zarr.

Integrity: the index checksum is verified on every read, each frame's declared size must be the inner
chunk's, and each frame must lie inside its file; a failure raises `ShardDamage` naming the shard and
its file. An inner chunk the index marks absent reads as the fill value, as Zarr reads it.
"""
from __future__ import annotations

import os
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import google_crc32c
import numpy as np
from numcodecs import Blosc

ABSENT = 2**64 - 1  # offset and length of an inner chunk the shard does not hold
_BLOSC = Blosc()  # decoding reads the codec settings from each frame's header


class ShardDamage(Exception):
    """A shard file that cannot be decoded: `shard` (its number), `path` and what is wrong (the message)."""

    def __init__(self, shard: int, path: Path, why: str):
        super().__init__(why)
        self.shard, self.path = shard, path


class ShardReader:
    """Reads rows of one array in the feature store's layout: shards of whole rows along axis 0, each split
    into inner chunks of whole rows, Blosc-compressed, index at the end with a CRC-32C."""

    def __init__(self, folder: Path, shape: tuple[int, ...], dtype: np.dtype, shard_rows: int, inner_rows: int,
                 fill_value):
        self.folder, self.shape, self.dtype = Path(folder), tuple(shape), np.dtype(dtype)
        self.shard_rows, self.inner_rows, self.fill_value = shard_rows, inner_rows, fill_value
        self.per_shard = shard_rows // inner_rows
        self.chunk_bytes = inner_rows * int(np.prod(shape[1:], dtype=np.int64)) * self.dtype.itemsize

    @classmethod
    def of(cls, arr, folder: Path) -> "ShardReader | None":
        """A reader of Zarr array `arr` stored at `folder`, or None when its layout is not the one above."""
        meta = arr.metadata.to_dict()
        codecs = meta.get("codecs", [])
        if (sys.byteorder != "little" or not hasattr(os, "pread") or len(codecs) != 1  # os.pread: POSIX only
                or codecs[0].get("name") != "sharding_indexed"):
            return None
        conf = codecs[0]["configuration"]
        inner_codecs = [c.get("name") for c in conf.get("codecs", [])]
        index_codecs = [c.get("name") for c in conf.get("index_codecs", [])]
        little = all(c.get("configuration", {}).get("endian", "little") == "little"
                     for c in conf.get("codecs", []) + conf.get("index_codecs", []) if c.get("name") == "bytes")
        key = meta.get("chunk_key_encoding", {})
        shard_shape, inner_shape = meta["chunk_grid"]["configuration"]["chunk_shape"], conf["chunk_shape"]
        whole_rows = list(shard_shape[1:]) == list(arr.shape[1:]) == list(inner_shape[1:])
        if (inner_codecs != ["bytes", "blosc"] or index_codecs != ["bytes", "crc32c"] or not little
                or conf.get("index_location", "end") != "end" or key.get("name") != "default"
                or key.get("configuration", {}).get("separator", "/") != "/" or not whole_rows
                or shard_shape[0] % inner_shape[0]):
            return None
        return cls(folder, arr.shape, arr.dtype, shard_shape[0], inner_shape[0], arr.fill_value)

    def shard_file(self, shard: int) -> Path:
        return self.folder / "c" / str(shard) / Path(*["0"] * (len(self.shape) - 1))

    def read(self, rows: np.ndarray, threads: int = 1, out: np.ndarray | None = None) -> np.ndarray:
        """`array[rows]` for sorted unique `rows`, into `out` when given (of the array's dtype: a cache fill
        decodes straight into its cache): each inner chunk that holds one of them decoded once, straight into
        the result when all its rows are asked for; shards on `threads` threads when there are several (Blosc
        releases the GIL while it decodes)."""
        if out is None:
            out = np.empty((len(rows), *self.shape[1:]), dtype=self.dtype)
        elif out.shape != (len(rows), *self.shape[1:]) or out.dtype != self.dtype or not out.flags.c_contiguous:
            raise ValueError(f"out: {out.dtype}{list(out.shape)} (contiguous), expected {self.dtype}"
                             f"{[len(rows), *self.shape[1:]]}")
        shards = rows // self.shard_rows
        starts = np.flatnonzero(np.r_[True, np.diff(shards) != 0])
        bounds = np.r_[starts, len(rows)]

        def one(k: int) -> None:
            lo, hi = int(bounds[k]), int(bounds[k + 1])
            self._read_shard(int(shards[lo]), rows[lo:hi], out[lo:hi])

        if threads < 2 or len(starts) < 2:
            for k in range(len(starts)):
                one(k)
            return out
        pool = ThreadPoolExecutor(threads, thread_name_prefix="xmr-read")
        try:
            list(pool.map(one, range(len(starts))))
        finally:  # an error or Ctrl-C drops the shards not yet started: a stop does not wait for them
            pool.shutdown(wait=True, cancel_futures=True)
        return out

    def _read_shard(self, shard: int, rows: np.ndarray, out: np.ndarray) -> None:
        path = self.shard_file(shard)
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError as exc:
            raise ShardDamage(shard, path, f"cannot open: {exc.strerror or exc}") from exc
        try:
            index = self._index(fd, shard, path)
            inner = (rows - shard * self.shard_rows) // self.inner_rows
            starts = np.flatnonzero(np.r_[True, np.diff(inner) != 0])
            for lo, hi in zip(starts, np.r_[starts[1:], len(rows)]):
                chunk = int(inner[lo])
                first = shard * self.shard_rows + chunk * self.inner_rows
                full = hi - lo == self.inner_rows  # every row of the chunk asked for, and inside the array
                target = out[lo:hi] if full else np.empty((self.inner_rows, *self.shape[1:]), self.dtype)
                self._decode(fd, index[chunk], target, shard, path)
                if not full:
                    out[lo:hi] = target[rows[lo:hi] - first]
        finally:
            os.close(fd)

    def _index(self, fd: int, shard: int, path: Path) -> np.ndarray:
        size = os.fstat(fd).st_size
        length = self.per_shard * 16 + 4
        if size < length:
            raise ShardDamage(shard, path, f"{size} bytes, shorter than its index of {length}")
        raw = os.pread(fd, length, size - length)
        if google_crc32c.value(raw[:-4]) != int.from_bytes(raw[-4:], "little"):
            raise ShardDamage(shard, path, "the checksum of its chunk index does not match (truncated or altered)")
        index = np.frombuffer(raw[:-4], dtype="<u8").reshape(self.per_shard, 2)
        absent = index == ABSENT
        if (absent[:, 0] != absent[:, 1]).any():
            raise ShardDamage(shard, path, "its chunk index has an entry half absent")
        frames, end = index[~absent[:, 0]], size - length
        if (frames > end).any() or (frames[:, 0] + frames[:, 1] > end).any():  # the sum cannot wrap: both <= end
            raise ShardDamage(shard, path, "its chunk index points past the end of the file")
        return index

    def _decode(self, fd: int, entry: np.ndarray, target: np.ndarray, shard: int, path: Path) -> None:
        offset, length = int(entry[0]), int(entry[1])
        if offset == ABSENT:
            target[...] = self.fill_value
            return
        frame = os.pread(fd, length, offset)
        # Blosc's 16-byte header: version, versionlz, flags, typesize, then uint32 nbytes, blocksize, cbytes
        nbytes, cbytes = int.from_bytes(frame[4:8], "little"), int.from_bytes(frame[12:16], "little")
        if len(frame) < 16 or nbytes != self.chunk_bytes or cbytes != len(frame):
            raise ShardDamage(shard, path, f"a chunk's frame declares {nbytes} bytes in {cbytes}, expected "
                                           f"{self.chunk_bytes} in {len(frame)}")
        try:
            _BLOSC.decode(frame, out=target)
        except (ValueError, RuntimeError) as exc:
            raise ShardDamage(shard, path, f"a chunk cannot be decoded: {exc}") from exc
