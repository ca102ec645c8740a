"""The region-feature store `data/<ds>/features.zarr` (Zarr v3), its resumable writer and its reader.

Layout (row i = prepared-table row i; docs/architecture.md):
  features [N, K, D] (float16 by default), boxes [N, K, 4] float32 pixels, positions [N, K, 5] float32,
  scores [N, K] float32, classes [N, K] int32, image_size [N, 2] int32 (W, H), valid [N] bool
  (False for an image skipped as unreadable; its other rows are zeros).
Each array is sharded by `chunk_rows` images (the unit of writing and of resuming). Inside a shard,
`features` is compressed in runs of (at most) FEATURE_INNER_ROWS images, so that reading a few random rows
decompresses little while reading a whole split does not pay a per-image overhead (one image per inner
chunk made loading a 1,800-image split about 4x slower); the small arrays are one inner chunk per shard.

Writing goes to `.<name>.partial` beside the final path. A chunk is complete once all its arrays are
written and its marker `_progress/<chunk>` exists; a rerun with the same signature (detector, weights,
selection, table, layout) skips complete chunks, a different signature starts over. `finalize`
checks every chunk, removes `_progress`, marks the store complete and renames it into place, so an
unfinished store never sits at the final path. Ranks of a distributed run write disjoint chunks.

Zarr reads a chunk file that is absent as the array's fill value (zeros, `valid` False) without an
error, so `FeatureStore` lists every array's chunk files when it opens the store and refuses one that
lacks any. The attributes hold `table_fingerprint` (the prepared table the rows belong to), which
training and evaluation compare with the table they read; `FeatureStore.fingerprint` (a hash of the
signature) is the identity a trained model records.
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import shutil
from pathlib import Path

import numpy as np
import zarr
from zarr.codecs import BloscCodec

from pipeline.detection.shard_reader import ShardDamage, ShardReader
from pipeline.io import disk_error, temp_name

ARRAYS = ("features", "boxes", "positions", "scores", "classes", "image_size", "valid")
DTYPES = ("float16", "float32")
FORMAT_VERSION = 2
FEATURE_INNER_ROWS = 8
# Through Zarr (a layout `ShardReader` does not read), `read` takes one slice over the requested rows when
# their span is at most this many times their count, else `oindex`.
SPAN_READ_FACTOR = 4
READ_DIRECT = True  # False: every read through Zarr (bench/scale.py's "earlier" rows)
READ_THREADS = 4  # threads decoding the shards of one read (bench/scale.py, issue 24)


def compressor(name: str) -> BloscCodec:
    """The codec of array `name`. Features are read at training speed, every epoch: LZ4HC over byte-shuffled
    float16 decodes 3-5x faster than zstd over bit-shuffled (2.4-3.1 vs 0.5-0.7 GB/s on one core) and packs
    real RoI features tighter (4.1x vs 3.9x on coco_mini's), at 2-3x the encoding time, paid once on the
    extraction's writer thread (docs/performance.md, "Store reads, codec and batch dtype"). The small arrays
    are read whole, once."""
    if name == "features":
        return BloscCodec(cname="lz4hc", clevel=5, shuffle="shuffle")
    return BloscCodec(cname="zstd", clevel=3, shuffle="bitshuffle" if name != "valid" else "noshuffle")


class StoreError(ValueError):
    """A feature store is missing, incomplete or does not follow the layout."""


class _PendingTaskNoise(logging.Filter):
    """zarr's event loop logs "Task was destroyed but it is pending!" for each read still in flight when
    one fails (about 160 lines for one damaged chunk); the StoreError already says what happened."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Task was destroyed but it is pending")


logging.getLogger("asyncio").addFilter(_PendingTaskNoise())


def partial_path(path: str | Path) -> Path:
    path = Path(path)
    return path.with_name(f".{path.name}.partial")


def _specs(n: int, k: int, d: int, dtype: str) -> dict[str, tuple[tuple[int, ...], str]]:
    return {
        "features": ((n, k, d), dtype),
        "boxes": ((n, k, 4), "float32"),
        "positions": ((n, k, 5), "float32"),
        "scores": ((n, k), "float32"),
        "classes": ((n, k), "int32"),
        "image_size": ((n, 2), "int32"),
        "valid": ((n,), "bool"),
    }


class FeatureStoreWriter:
    """Write a feature store chunk by chunk; reopen the partial store of an interrupted run."""

    def __init__(self, path: str | Path, *, n_rows: int, num_boxes: int, feature_dim: int,
                 dtype: str = "float16", chunk_rows: int = 64, signature: dict, attrs: dict):
        if dtype not in DTYPES:
            raise StoreError(f"feature dtype must be one of {DTYPES}, got {dtype!r}")
        if chunk_rows < 1 or n_rows < 1:
            raise StoreError(f"need n_rows >= 1 and chunk_rows >= 1, got {n_rows}, {chunk_rows}")
        self.path = Path(path)
        self.tmp = partial_path(self.path)
        self.n_rows, self.chunk_rows = n_rows, chunk_rows
        self.num_chunks = -(-n_rows // chunk_rows)
        self.signature = dict(signature, n_rows=n_rows, num_boxes=num_boxes, feature_dim=feature_dim,
                              dtype=dtype, chunk_rows=chunk_rows, format_version=FORMAT_VERSION)
        self.attrs = attrs
        self._specs = _specs(n_rows, num_boxes, feature_dim, dtype)
        self.resumed = self._reuse_partial()
        if not self.resumed:
            self._create()
        self.progress_dir.mkdir(exist_ok=True)
        with zarr.config.set({"array.write_empty_chunks": True}):  # every shard gets its file (all zeros too):
            self.group = zarr.open_group(self.tmp, mode="r+")   # the reader takes an absent file for damage
            self.arrays = {name: self.group[name] for name in ARRAYS}

    @property
    def progress_dir(self) -> Path:
        return self.tmp / "_progress"

    def _reuse_partial(self) -> bool:
        meta = self.tmp / "zarr.json"
        if not meta.is_file():
            return False
        try:
            attrs = json.loads(meta.read_text()).get("attributes", {})
        except (OSError, json.JSONDecodeError):
            return False
        return attrs.get("signature") == json.loads(json.dumps(self.signature))

    def _create(self) -> None:
        if self.tmp.exists():
            shutil.rmtree(self.tmp)
        group = zarr.open_group(self.tmp, mode="w", zarr_format=3)
        shard_rows = min(self.chunk_rows, self.n_rows)
        for name, (shape, dtype) in self._specs.items():
            inner = math.gcd(FEATURE_INNER_ROWS, shard_rows) if name == "features" else shard_rows  # divides the shard
            group.create_array(
                name, shape=shape, dtype=dtype, chunks=(inner,) + shape[1:], shards=(shard_rows,) + shape[1:],
                compressors=compressor(name),
                fill_value=False if dtype == "bool" else 0,
            )
        self.progress_dir.mkdir()
        # The signature goes last: a store killed while being created is never resumed.
        group.attrs.update(dict(self.attrs, signature=self.signature, complete=False))

    def chunk_rows_range(self, chunk: int) -> range:
        start = chunk * self.chunk_rows
        return range(start, min(start + self.chunk_rows, self.n_rows))

    def done_chunks(self) -> set[int]:
        if not self.progress_dir.is_dir():
            return set()
        return {int(p.name) for p in self.progress_dir.iterdir() if p.name.isdigit()}

    def pending_chunks(self, rank: int = 0, world: int = 1) -> list[int]:
        """Chunks still to write that belong to `rank` of `world` (round-robin)."""
        done = self.done_chunks()
        return [c for c in range(self.num_chunks) if c % world == rank and c not in done]

    def write_chunk(self, chunk: int, data: dict[str, np.ndarray], stats: dict | None = None) -> None:
        """Write all arrays of one chunk (whole shards, no read-modify-write), then mark it complete;
        the marker holds the chunk's `stats` (JSON), gathered by `chunk_stats` at the end."""
        rows = self.chunk_rows_range(chunk)
        for name in ARRAYS:
            if name not in data:
                raise StoreError(f"chunk {chunk}: array '{name}' missing")
            shape = (len(rows),) + self._specs[name][0][1:]
            value = np.asarray(data[name])
            if value.shape != shape:
                raise StoreError(f"chunk {chunk}: array '{name}' has shape {value.shape}, expected {shape}")
            try:
                self.arrays[name][rows.start:rows.stop] = value
            except OSError as exc:  # zarr's OSError names no file: name the array being written
                raise (disk_error(exc, self.tmp / name) or exc) from exc
        marker = self.progress_dir / f"{chunk:08d}"
        tmp = temp_name(marker)  # not atomic_output: ranks on other nodes write markers here too
        try:
            tmp.write_text(json.dumps(stats or {}))
            os.replace(tmp, marker)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    def chunk_stats(self) -> list[dict]:
        """The stats recorded with each complete chunk, in chunk order."""
        return [json.loads((self.progress_dir / f"{c:08d}").read_text() or "{}") for c in sorted(self.done_chunks())]

    def finalize(self, extra_attrs: dict | None = None) -> Path:
        """Check completeness, mark the store complete and move it to the final path."""
        missing = sorted(set(range(self.num_chunks)) - self.done_chunks())
        if missing:
            raise StoreError(f"{self.tmp}: {len(missing)} of {self.num_chunks} chunks not written yet "
                             f"(first: {missing[0]}); run the extraction again to finish them")
        self.group.attrs.update(dict(extra_attrs or {}, complete=True))
        shutil.rmtree(self.progress_dir)
        if self.path.exists():
            shutil.rmtree(self.path)
        os.replace(self.tmp, self.path)
        return self.path


class FeatureStore:
    """Random access by table row to a complete feature store."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if not (self.path / "zarr.json").is_file():
            hint = " (an interrupted extraction left a partial store; rerun `xmr extract`)" \
                if partial_path(self.path).exists() else " (run `xmr extract` / `dvc repro` first)"
            raise StoreError(f"{self.path}: feature store not found{hint}")
        self.group = zarr.open_group(self.path, mode="r")
        self.attrs = dict(self.group.attrs)
        if not self.attrs.get("complete"):
            raise StoreError(f"{self.path}: feature store is not marked complete")
        missing = [name for name in ARRAYS if name not in self.group]
        if missing:
            raise StoreError(f"{self.path}: array '{missing[0]}' missing (expected: {', '.join(ARRAYS)})")
        self.arrays = {name: self.group[name] for name in ARRAYS}
        self._readers = {name: ShardReader.of(arr, self.path / name) for name, arr in self.arrays.items()}
        self._valid: np.ndarray | None = None
        for name in ARRAYS:
            self._check_chunk_files(name)

    def _check_chunk_files(self, name: str) -> None:
        """Refuse the store when a chunk (shard) file of array `name` is absent: zarr would read it as zeros."""
        arr = self.arrays[name]
        shard_rows = arr.shards[0] if arr.shards else arr.chunks[0]
        shards = -(-arr.shape[0] // shard_rows)

        def key(shard: int) -> str:
            return arr.metadata.encode_chunk_key((shard,) + (0,) * (arr.ndim - 1))

        first = key(0)  # "c/0/0/0": the shard number is the one field that changes (encoding it is slow)
        template = first.split("/")
        fast = template[0] == "c" and template[1] == "0" and key(shards - 1).split("/")[1] == str(shards - 1)
        folder = os.fspath(self.path / name)
        for shard in range(shards):
            relative = "/".join([template[0], str(shard), *template[2:]]) if fast else key(shard)
            if not os.path.isfile(os.path.join(folder, relative)):
                key_text = relative
                stop = min((shard + 1) * shard_rows, arr.shape[0])
                raise StoreError(f"{self.path}: array '{name}', chunk {shard} (rows {shard * shard_rows}-{stop - 1}): "
                                 f"file {self.path / name / key_text} is missing; the store is damaged: remove it "
                                 f"and rerun `xmr extract` (or `dvc checkout` it)")

    @property
    def fingerprint(self) -> str:
        """Identity of this store: a hash of what it was extracted from and how (its signature)."""
        signature = json.dumps(self.attrs.get("signature"), sort_keys=True)
        return hashlib.sha256(signature.encode()).hexdigest()[:16]

    @property
    def table_fingerprint(self) -> str | None:
        return self.attrs.get("table_fingerprint")

    def __len__(self) -> int:
        return self.arrays["features"].shape[0]

    @property
    def dim(self) -> int:
        return int(self.arrays["features"].shape[2])

    @property
    def num_boxes(self) -> int:
        return int(self.arrays["features"].shape[1])

    @property
    def num_classes(self) -> int:
        return int(self.attrs["num_classes"])

    @property
    def class_names(self) -> list[str]:
        return list(self.attrs["class_names"])

    @property
    def inner_chunk_rows(self) -> int:
        """Rows of `features` that Zarr decompresses together (the unit a random row read costs)."""
        return int(self.group["features"].chunks[0])

    @property
    def valid(self) -> np.ndarray:
        """[N] bool: False for images skipped as unreadable (training must leave them out)."""
        if self._valid is None:
            self._valid = np.asarray(self.arrays["valid"][:], dtype=bool)
        return self._valid

    def read(self, rows, float32: bool = True, arrays: tuple[str, ...] | None = None,
             out: dict[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
        """Arrays of the given table rows, in the given order: those named in `arrays` (None: all); features as
        float32, or as stored with `float32=False` (the training data keep float16 and convert in torch:
        numpy's float16 -> float32 cost more than the decompression, and a cache fill converted back to
        float16 after it). `out`: arrays to fill instead, one per name, for sorted unique `rows`, each in its
        own dtype (a cache fill: features decoded straight into the cache, without a copy)."""
        rows = np.asarray(rows, dtype=np.int64).reshape(-1)
        n = len(self)
        if rows.size and (rows.min() < -n or rows.max() >= n):
            raise IndexError(f"{self.path}: row index out of range for {n} rows")
        rows = np.where(rows < 0, rows + n, rows)
        uniq, inverse = np.unique(rows, return_inverse=True)
        in_order = np.array_equal(uniq, rows)
        if out is not None and not in_order:
            raise ValueError("FeatureStore.read(out=...) takes sorted unique rows")
        result = {}
        for name, arr in self.arrays.items():
            if arrays is not None and name not in arrays:
                continue
            target = None if out is None else out[name]
            if not uniq.size:
                values = np.zeros((0,) + arr.shape[1:], dtype=arr.dtype)
            else:
                values = self._read_rows(name, arr, uniq, target if target is not None and target.dtype == arr.dtype
                                         else None)
            if target is not None:
                if values is not target:
                    target[...] = values
                result[name] = target
                continue
            values = values if in_order else values[inverse]
            result[name] = values.astype(np.float32) if name == "features" and float32 else values
        return result

    def _read_rows(self, name: str, arr, rows: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """`arr[rows]` for sorted unique `rows`, by `ShardReader` (each inner chunk that holds a row decoded
        once, shards on `READ_THREADS` threads: at COCO size 2.2-5.2x a Zarr slice, and without Zarr's ~2 ms per
        call on the scattered chunks of a streamed window), or through Zarr for another layout. A damaged shard
        (truncated, altered index, undecodable chunk) is a StoreError naming the array, the shard and its file;
        through Zarr it is found by reading the shards one at a time. `out`: where `ShardReader` decodes to."""
        reader = self._readers.get(name) if READ_DIRECT else None
        if reader is not None:
            try:
                return reader.read(rows, READ_THREADS, out)
            except ShardDamage as exc:
                raise self._damaged(name, arr, exc.shard, exc) from exc
        try:
            first, stop = int(rows[0]), int(rows[-1]) + 1
            if stop - first <= SPAN_READ_FACTOR * len(rows):
                return arr[first:stop][rows - first]
            return arr.oindex[rows]
        except Exception as exc:  # zarr/numcodecs raise ValueError, RuntimeError, ... for damaged bytes
            shard_rows = arr.shards[0] if arr.shards else arr.chunks[0]
            for shard in np.unique(rows // shard_rows):
                try:
                    arr[int(shard) * shard_rows:(int(shard) + 1) * shard_rows]
                except Exception as inner:
                    raise self._damaged(name, arr, int(shard), inner) from inner
            raise StoreError(f"{self.path}: array '{name}' cannot be read ({exc}); the store is damaged: remove "
                             f"it and rerun `xmr extract`") from exc

    def _damaged(self, name: str, arr, shard: int, why: Exception) -> StoreError:
        shard_rows = arr.shards[0] if arr.shards else arr.chunks[0]
        key = arr.metadata.encode_chunk_key((shard,) + (0,) * (arr.ndim - 1))
        stop = min((shard + 1) * shard_rows, arr.shape[0])
        return StoreError(f"{self.path}: array '{name}', chunk {shard} (rows {shard * shard_rows}-{stop - 1}, "
                          f"file {self.path / name / key}) cannot be read ({why}); the store is damaged: "
                          f"remove it and rerun `xmr extract` (or `dvc checkout` it)")


