"""The pipeline at a real dataset's size: a synthetic dataset in xmr's formats, then every data-bound
stage timed against the machine's own disk and memory bandwidth, measured in the same run.

    python bench/scale.py --size coco [--fraction 0.1] [--dir DIR] [--keep] [--record reports/benchmarks.md]
    python bench/scale.py --size nuswide --fraction 0.05

Sizes: coco 123,287 images (5,000 val, 5,000 test, the Karpathy split), 5 captions each, 80 labels;
nuswide 195,834 images (5,000 val, 5,000 test here), one tag-list caption each, 81 labels. Every image
has 36 RoIs x 2048 float16 features (BUTD's), written in shards of 64 images (`extract.chunk_size`) by
`FeatureStoreWriter`; the table by `write_table`, the captions by `write_text_data`. The first
`n_labels` feature dimensions carry the image's multi-hot labels (plus noise) and two words of each
caption are label words, so a model trained on the data learns; the other dimensions are drawn from a
pool of random blocks (generating 15 GB of fresh random floats would be the slowest part of the bench).
`--fraction` scales the image count (val and test too). The dataset is built under `--dir` (default: a
temporary folder beside the repository, on the same disk) and reused there by a rerun with `--keep`
when its recorded size and codec match: building is the slow part.

Measured, in one run (each rate also as a ratio to the physical reference it is bound by):
  disk      sequential read of the feature shards, cold (evicted from the page cache with
            POSIX_FADV_DONTNEED first; `mincore` checks the eviction) and page-cached; at most `--ref-gb`
  memory    a large numpy copy, bytes read + written per second; and the first write to fresh memory (page
            faults, zeroing): a cache fill pays it for every byte of its cache on top of reading the disk
  decode    the features' inner chunks decoded from memory on one thread per core: the codec's rate on this
            CPU, and the earlier codec's (zstd + bit shuffle) on the same rows; then the same rows read
            page-cached by one Zarr slice (before) and by `FeatureStore.read` (`ShardReader`, shipped)
  stream    batches of 64 captions read from the store (cache off, cold start) as training reads them:
            the shipped `epoch_batches` (block order, each window of `WINDOW_IMAGES` images read once, the
            next on the prefetch thread), the block order read batch by batch as shipped before it (with
            the current and the earlier store reads), and the uniform permutation without prefetch; feature
            bytes delivered = 64 images x 36 x 2048 x 2 bytes per batch (float16, as stored), and the
            feature bytes read from the store (a window's images once, else each batch's own images)
  cache     filling the in-memory cache the shipped way (`train.cache_features_gb: null`): the train
            split when it fits (and `--cache-gb`, default 4: COCO's 15.6 GiB is not filled three times),
            else val + test; seconds, rate, peak transient memory (RSS in a child
            process) as a ratio to the cache; then batches/s served from it
  train     `ss` optimizer steps/s at batch 64 (params.yaml `train` + `methods.ss`), streamed and cached
  evaluate  `scan_t2i` (untrained, params.yaml settings) through `score_split` on `--eval-images` test images
            (5 captions each), extrapolated to COCO 5K (5,000 x 25,000 pairs) by the pair count; `ss`
            `score_split` + `split_metrics` on the test split, extrapolated the same way.
The report step is not timed (5.5 s for 30,000 queries; issue 24).

Cost on the 2-core sandbox, measured at full `--size coco` (reports/benchmarks.md, 2026-12-04): the store
is 12.3 GiB on disk and built in 399 s (LZ4HC encodes at 30-55 MB/s per core); the measurements take about
10 minutes with `--cache-gb 16` (the 15.6 GiB train cache filled three times), under 18 GB of RAM.
"""
from __future__ import annotations

import argparse
import ctypes
import json
import mmap
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.record import emit  # noqa: E402
from pipeline.data.table import read_table, table_fingerprint, write_table  # noqa: E402
from pipeline.detection.store import FeatureStore, FeatureStoreWriter, compressor  # noqa: E402
from pipeline.text.store import write_text_data  # noqa: E402
from pipeline.text.vocab import RESERVED  # noqa: E402

DATASET = "scale"
SIZES = {  # images, captions per image, labels, val, test
    "coco": (123_287, 5, 80, 5000, 5000),
    "nuswide": (195_834, 1, 81, 5000, 5000),
}
BOXES, DIM, CHUNK_ROWS = 36, 2048, 64
CAPTION_LEN, VOCAB = 11, 10_000
POOL_BLOCKS = 97  # random blocks of CHUNK_ROWS images the feature "noise" is drawn from
SPEC_FILE = "scale.json"
COCO5K_PAIRS = 5000 * 25000


# --- the dataset ------------------------------------------------------------------------------------

def spec_of(size: str, fraction: float, images: int | None = None, dim: int = DIM) -> dict:
    n, per_image, n_labels, n_val, n_test = SIZES[size]
    if images is None:
        images = max(1, round(n * fraction))
    scale = images / n
    n_val, n_test = max(1, round(n_val * scale)), max(1, round(n_test * scale))
    if dim < n_labels:
        raise SystemExit(f"--dim: {dim} dimensions cannot carry {n_labels} labels")
    if images < n_val + n_test + 1:
        raise SystemExit(f"--images/--fraction: {images} images leave no training split")
    return {"size": size, "images": images, "captions_per_image": per_image, "labels": n_labels, "val": n_val,
            "test": n_test, "boxes": BOXES, "dim": dim, "chunk_rows": CHUNK_ROWS, "format": 1,
            "codec": compressor("features").to_dict()}  # a store written with another codec is rebuilt


def image_labels(spec: dict, rng: np.random.Generator) -> np.ndarray:
    """[N, L] bool: one to three labels per image."""
    n, n_labels = spec["images"], spec["labels"]
    labels = rng.random((n, n_labels)) < 1.0 / n_labels
    labels[np.arange(n), rng.integers(0, n_labels, n)] = True
    return labels


def label_features(labels: np.ndarray, pool: np.ndarray, pick: np.ndarray, boxes: int) -> np.ndarray:
    """[m, boxes, dim] float16: a pool block (random, relu'd) with the first L dims set to the labels + noise."""
    features = pool[pick].copy()
    n_labels = labels.shape[1]
    features[:, :, :n_labels] = (labels[:, None, :] * 2.0 + features[:, :, :n_labels] * 0.25).astype(np.float16)
    return features


def build(root: Path, spec: dict, seed: int = 0, log=print) -> Path:
    """Write `root/scale/{table.parquet, features.zarr, text/}` for `spec`; `root/scale/scale.json` last,
    so a complete dataset is recognised (and reused) by its spec."""
    out = root / DATASET
    marker = out / SPEC_FILE
    if marker.is_file() and json.loads(marker.read_text()) == spec:
        log(f"reusing the complete dataset at {out}")
        return out
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    n, per_image, n_labels = spec["images"], spec["captions_per_image"], spec["labels"]
    labels = image_labels(spec, rng)
    n_train = n - spec["val"] - spec["test"]
    split = ["train"] * n_train + ["val"] * spec["val"] + ["test"] * spec["test"]
    label_lists = [np.flatnonzero(r).astype(np.int32) for r in labels]
    write_table({"image_id": list(range(n)), "file_path": [f"synthetic/{i}.jpg" for i in range(n)],
                 "width": [640] * n, "height": [480] * n, "captions": [["synthetic"] * per_image] * n,
                 "labels": label_lists, "boxes": [[]] * n, "box_labels": [[]] * n, "split": split},
                [f"label{i}" for i in range(n_labels)], DATASET, out / "table.parquet")
    table = read_table(out / "table.parquet")  # the stores record the fingerprint of the table as read back

    # captions: two label words of the image, then random words
    n_caps = n * per_image
    caption_rows = np.repeat(np.arange(n), per_image)
    first = np.array([lab[0] for lab in label_lists])[caption_rows]
    last = np.array([lab[-1] for lab in label_lists])[caption_rows]
    label_word = len(RESERVED) + np.arange(n_labels)
    ids = rng.integers(len(RESERVED) + n_labels, VOCAB, (n_caps, CAPTION_LEN))
    ids[:, 0], ids[:, 1] = label_word[first], label_word[last]
    vocab = list(RESERVED) + [f"label{i}" for i in range(n_labels)] + \
        [f"w{i}" for i in range(VOCAB - len(RESERVED) - n_labels)]
    embeddings = rng.normal(size=(VOCAB, 300)).astype(np.float32)
    embeddings[0] = 0
    write_text_data(out / "text", vocab=vocab, rows=caption_rows, caption_index=np.tile(np.arange(per_image), n),
                    offsets=np.arange(n_caps + 1) * CAPTION_LEN, flat_ids=ids.reshape(-1), embeddings=embeddings,
                    stats={"captions": n_caps, "synthetic": True}, table_fingerprint=table_fingerprint(table))

    boxes, dim, chunk_rows = spec["boxes"], spec["dim"], spec["chunk_rows"]
    pool = np.maximum(rng.standard_normal((POOL_BLOCKS * chunk_rows, boxes, dim), dtype=np.float32), 0).astype(np.float16)
    writer = FeatureStoreWriter(out / "features.zarr", n_rows=n, num_boxes=boxes, feature_dim=dim,
                                chunk_rows=chunk_rows, signature={"bench": "scale", "seed": seed},
                                attrs={"num_classes": n_labels, "class_names": [f"label{i}" for i in range(n_labels)],
                                       "table_fingerprint": table_fingerprint(table)})
    xy = rng.uniform(0, 320, (chunk_rows, boxes, 2)).astype(np.float32)
    box = np.concatenate([xy, xy + 160], -1)
    positions = np.concatenate([box / 640, np.full((chunk_rows, boxes, 1), 0.0625, np.float32)], -1)
    started, pending = time.perf_counter(), writer.pending_chunks()
    for i, chunk in enumerate(pending):
        rows = writer.chunk_rows_range(chunk)
        m = len(rows)
        pick = rng.integers(0, len(pool), m)
        writer.write_chunk(chunk, {
            "features": label_features(labels[rows.start:rows.stop], pool, pick, boxes), "boxes": box[:m],
            "positions": positions[:m], "scores": np.ones((m, boxes), np.float32),
            "classes": np.argmax(labels[rows.start:rows.stop], 1)[:, None].repeat(boxes, 1).astype(np.int32),
            "image_size": np.tile(np.array([640, 480], np.int32), (m, 1)), "valid": np.ones(m, bool)})
        if (i + 1) % 200 == 0:
            log(f"  features: {i + 1}/{len(pending)} shards, {time.perf_counter() - started:.0f} s")
    writer.finalize()
    marker.write_text(json.dumps(spec))
    return out


# --- physical references ------------------------------------------------------------------------------

def store_files(store: Path, array: str = "features") -> list[Path]:
    return sorted(p for p in (store / array).rglob("*") if p.is_file() and p.name != "zarr.json")


def evict(paths: list[Path]) -> bool | None:
    """Drop `paths` from the page cache; True when `mincore` finds them gone, None when it cannot tell."""
    for p in paths:
        fd = os.open(p, os.O_RDONLY)
        try:
            os.fdatasync(fd)  # dirty pages (a store just written) are not dropped
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)
    resident = resident_fraction(paths[:: max(1, len(paths) // 50)])
    return None if resident is None else resident < 0.05


def resident_fraction(paths: list[Path]) -> float | None:
    """Fraction of the pages of `paths` in the page cache (Linux `mincore` on a fresh mapping); None where
    the platform does not offer it."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.mmap.restype = ctypes.c_void_p
        libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
        libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
        libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p]
        page = os.sysconf("SC_PAGE_SIZE")
        total = resident = 0
        for p in paths:
            size = p.stat().st_size
            if size == 0:
                continue
            fd = os.open(p, os.O_RDONLY)
            try:
                addr = libc.mmap(None, size, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
                if addr in (None, ctypes.c_void_p(-1).value):
                    return None
                pages = -(-size // page)
                vec = np.zeros(pages, np.uint8)
                ok = libc.mincore(addr, size, vec.ctypes.data) == 0
                libc.munmap(addr, size)
            finally:
                os.close(fd)
            if not ok:
                return None
            total += pages
            resident += int(np.count_nonzero(vec & 1))
        return resident / total if total else None
    except (OSError, AttributeError):
        return None


def sequential_read(paths: list[Path], limit_bytes: int) -> tuple[float, int]:
    """(bytes/s, bytes) reading `paths` in order, whole, in 16 MiB blocks, up to `limit_bytes`."""
    done, started = 0, time.perf_counter()
    for p in paths:
        with open(p, "rb", buffering=0) as f:
            while block := f.read(16 << 20):
                done += len(block)
        if done >= limit_bytes:
            break
    return done / (time.perf_counter() - started), done


def memory_bandwidth(mib: int = 512, repeats: int = 3) -> float:
    """Bytes read + written per second by a numpy copy of `mib` MiB (best of `repeats`)."""
    src = np.ones(mib << 18, np.float32)
    dst = np.empty_like(src)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        np.copyto(dst, src)
        best = min(best, time.perf_counter() - t0)
    return 2 * src.nbytes / best


def first_touch_bandwidth(mib: int = 2048) -> float:
    """Bytes per second written to freshly allocated memory (page faults and the kernel zeroing each page;
    numpy asks for huge pages): what allocating a cache costs before any feature lands in it."""
    fresh = np.empty(mib << 20, np.uint8)
    t0 = time.perf_counter()
    fresh.fill(1)
    return fresh.nbytes / (time.perf_counter() - t0)


def references(dataset: Path, ref_gb: float) -> dict:
    paths = store_files(dataset / "features.zarr")
    limit = int(ref_gb * 2**30)
    verified = evict(paths)
    cold, n_bytes = sequential_read(paths, limit)
    cached, _ = sequential_read(paths, limit)
    return {"disk_cold": cold, "disk_cached": cached, "disk_bytes": n_bytes, "evicted": verified,
            "memory": memory_bandwidth(), "first_touch": first_touch_bandwidth(), **decode_rates(dataset)}


EARLIER_CODEC = {"cname": "zstd", "clevel": 3, "shuffle": "bitshuffle"}  # the features' codec before 2026-12-04


def decode_rates(dataset: Path, rows: int = 4096) -> dict:
    """Feature bytes/s of the first `rows` rows: `decode`, their inner chunks encoded with the store's codec
    and decoded from memory on one thread per core (the codec's rate on this CPU, the bound of every store
    read however fast the disk is); `decode_earlier`, the same with `EARLIER_CODEC`; then, page-cached, one
    Zarr slice (`zarr_slice`: how the store was read before `ShardReader`) and `FeatureStore.read`
    (`store_read`, as shipped)."""
    from concurrent.futures import ThreadPoolExecutor

    from numcodecs import Blosc

    store = FeatureStore(dataset / "features.zarr")
    arr = store.group["features"]
    rows = min(rows, arr.shape[0])
    values = arr[0:rows]  # and into the page cache
    inner = int(arr.chunks[0])
    chunks = [np.ascontiguousarray(values[i:i + inner]) for i in range(0, rows - inner + 1, inner)]
    shipped = compressor("features").to_dict()["configuration"]  # what the store was built with (its spec)
    out = {}
    with ThreadPoolExecutor(os.cpu_count() or 1) as pool:
        for key, conf in (("decode", shipped), ("decode_earlier", EARLIER_CODEC)):
            codec = Blosc(cname=conf["cname"], clevel=conf["clevel"],
                          shuffle={"shuffle": Blosc.SHUFFLE, "bitshuffle": Blosc.BITSHUFFLE}[conf["shuffle"]])
            frames = [codec.encode(c) for c in chunks]
            target = np.zeros_like(values)  # touched: the page faults of a fresh buffer are not the codec's
            t0 = time.perf_counter()
            list(pool.map(lambda i: codec.decode(frames[i], out=target[i * inner:(i + 1) * inner]),
                          range(len(frames))))
            out[key] = sum(c.nbytes for c in chunks) / (time.perf_counter() - t0)
    for key, read in (("zarr_slice", lambda: arr[0:rows]),
                      ("store_read", lambda: store.read(np.arange(rows), float32=False, arrays=("features",)))):
        t0 = time.perf_counter()
        read()
        out[key] = values.nbytes / (time.perf_counter() - t0)
    return out


# --- the data layer -----------------------------------------------------------------------------------

class EarlierReads:
    """The feature store as the data layer read it before `read(float32=False)` and `ShardReader`: features
    converted to float32 by numpy on every read (and back to float16 by a cache fill), every read through
    Zarr (scattered rows by `oindex`). For the before/after rows of the same run."""

    def __init__(self, store: FeatureStore):
        self._store = store

    def __getattr__(self, name):
        return getattr(self._store, name)

    def __len__(self) -> int:
        return len(self._store)

    def read(self, rows, float32: bool = True, arrays=None, out=None) -> dict:
        """Every array, features as float32, as the earlier layer read them (`arrays` is not honoured); with
        `out`, copied into it as the earlier cache fill did."""
        import pipeline.detection.store as store_module

        store_module.READ_DIRECT = False
        try:
            values = self._store.read(rows)
        finally:
            store_module.READ_DIRECT = True
        for key, target in (out or {}).items():
            target[...] = values[key]
        return values if out is None else out


def open_data(dataset: Path, *, earlier: bool = False, **kwargs):
    """`RetrievalData` of the built dataset; `earlier`: over `EarlierReads` (the earlier data layer)."""
    from pipeline.data.table import read_table
    from pipeline.text.store import TextData
    from pipeline.training.data import RetrievalData

    if not earlier:
        return RetrievalData.open(dataset.parent, DATASET, **kwargs)
    return RetrievalData(read_table(dataset / "table.parquet"), EarlierReads(FeatureStore(dataset / "features.zarr")),
                         TextData.load(dataset / "text"), **kwargs)


def batch_bytes(data, batch: int) -> int:
    return batch * data.info.num_regions * data.info.feature_dim * 2


PER_BATCH_WINDOW = 16  # chunks per window of the block order shipped before window reads (`epoch_batches`)


def streamed(dataset: Path) -> dict:
    """`RetrievalData` keywords that open the train split as training opens one whose features do not fit
    the cache: the boxes' positions and classes (28 bytes per RoI, 0.7% of the features' at 2048-d) held
    in memory, the features streamed (a limit of 64 bytes per RoI)."""
    spec = json.loads((dataset / SPEC_FILE).read_text())
    train = spec["images"] - spec["val"] - spec["test"]
    return {"cache_splits": ("train",), "cache_gb": train * spec["boxes"] * 64 / 2**30}


def _batch_keys(order: np.ndarray, batches: int, batch: int) -> list[np.ndarray]:
    return [order[i * batch:(i + 1) * batch] for i in range(min(batches, len(order) // batch))]


def stream_rates(dataset: Path, batches: int, batch: int = 64, seed: int = 0, windows: int = 3) -> dict:
    """Batches/s and feature bytes/s of training batches streamed from the store, cold, over four data
    layers: the uniform permutation read batch by batch in the loop's thread; the block order of 16-chunk
    windows read batch by batch on the prefetch thread, over `EarlierReads` and over the shipped reads
    (both before window reads); and the shipped `epoch_batches` (windows of `WINDOW_IMAGES` images, each
    read once), timed over `windows` whole windows or `batches` batches, whichever is more. `store_bytes`:
    feature bytes read from the store per second (a window's images once; a batch's own rows otherwise)."""
    from pipeline.training.epoch_batches import epoch_batches
    from pipeline.training.order import epoch_windows, prefetched

    out = {}
    for name, window, earlier in (("uniform", None, False), ("earlier", PER_BATCH_WINDOW, True),
                                  ("per_batch", PER_BATCH_WINDOW, False), ("shipped", "shipped", False)):
        opened = streamed(dataset) if window == "shipped" else {"cache_splits": ()}
        data = open_data(dataset, earlier=earlier, **opened)
        captions = data.split_items("train").captions
        block_rows = data.stream_block_rows(captions) if window else None
        order, groups = epoch_windows(captions, data.caption_rows, seed, 0, block_rows,
                                      None if window == "shipped" else window)
        if window == "shipped":
            ends = np.r_[np.flatnonzero(np.diff(groups)) + 1, len(order)]  # where each window's captions end
            n = min(len(order) // batch, max(batches, -(-int(ends[min(windows, len(ends)) - 1]) // batch)))
            stream = epoch_batches(data, order, groups, batch, n)
            # the windows the batches used, each read whole (the next one is in flight when timing stops)
            read_images = len(np.unique(data.caption_rows[order[:ends[groups[n * batch - 1]]]]))
            window_images = len(np.unique(data.caption_rows[order[:ends[0]]]))
        else:
            keys = _batch_keys(order, batches, batch)
            n = len(keys)
            stream = prefetched(data.pair_batch, keys, window is not None)
            read_images = sum(len(np.unique(data.caption_rows[k])) for k in keys)
            window_images = window * block_rows if window else None
        evict(store_files(dataset / "features.zarr"))
        t0 = last = time.perf_counter()
        for _ in stream:
            last = time.perf_counter()
        seconds = last - t0
        out[name] = {"batches_per_s": n / seconds, "bytes_per_s": n * batch_bytes(data, batch) / seconds,
                     "store_bytes_per_s": read_images * batch_bytes(data, 1) / seconds, "block_rows": block_rows,
                     "window_images": window_images, "batches": n}
    return out


def cache_splits_that_fit(dataset: Path, at_most_gb: float) -> tuple[str, ...]:
    """The train split when its features fit the shipped cache limit (`cache_features_gb: null`) and
    `at_most_gb` (the bench fills the cache three times), else val + test."""
    import pyarrow.parquet as pq

    from pipeline.training.data import cache_limit_gb

    split = np.asarray(pq.read_table(dataset / "table.parquet", columns=["split"]).column("split").to_pylist())
    spec = json.loads((dataset / SPEC_FILE).read_text())
    need = np.count_nonzero(split == "train") * spec["boxes"] * spec["dim"] * 2 / 2**30
    return ("train",) if need <= min(at_most_gb, cache_limit_gb(None)[0]) else ("val", "test")


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def fill_child(dataset: Path, splits: list[str], earlier: bool = False) -> dict:
    """Run in a child process: open the data without cache, then fill the cache of `splits` the shipped
    way; time, cache bytes, peak RSS over the fill (VmHWM after resetting it, else ru_maxrss)."""
    import resource

    t0 = time.perf_counter()
    open_data(dataset, earlier=earlier, cache_splits=())  # imports, table, text: subtracted below
    opening = time.perf_counter() - t0
    t0 = time.perf_counter()
    open_data(dataset, earlier=earlier, cache_splits=())
    opening = min(opening, time.perf_counter() - t0)
    try:
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS
    except OSError:
        pass
    base = _rss_bytes()
    evict(store_files(dataset / "features.zarr"))
    t0 = time.perf_counter()
    data = open_data(dataset, earlier=earlier, cache_splits=splits, cache_gb=None)
    seconds = time.perf_counter() - t0 - opening
    peak = None
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            peak = int(line.split()[1]) * 1024
    if peak is None:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    cache = sum(v.nbytes for v in (data._cache or {}).values())
    features = int(data._cache["features"].nbytes) if "features" in (data._cache or {}) else 0
    return {"seconds": seconds, "cache_bytes": cache, "feature_bytes": features,
            "transient_bytes": max(0, peak - base - cache), "peak_over_base": peak - base, "note": data.cache_note}


def cache_fill(dataset: Path, splits: tuple[str, ...], earlier: bool = False) -> dict:
    flag = ["--earlier-reads"] if earlier else []
    out = subprocess.run([sys.executable, __file__, *flag, "--fill-child", str(dataset), *splits], capture_output=True,
                         text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    if out.returncode != 0:
        raise RuntimeError(f"cache fill child failed: {out.stderr.strip().splitlines()[-1:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def cached_rates(data, splits: tuple[str, ...], batches: int, batch: int = 64, seed: int = 0) -> dict:
    from pipeline.training.order import epoch_order, prefetched

    captions = np.concatenate([data.split_items(s).captions for s in splits])
    order = epoch_order(captions, data.caption_rows, seed, 0, data.stream_block_rows(captions))
    keys = [order[(i * batch) % (len(order) - batch):][:batch] for i in range(batches)]
    out = {}
    for key, deliver in (("", data.pair_batch), ("_float32", lambda k: data.pair_batch(k).to("cpu"))):
        t0 = time.perf_counter()
        for _ in prefetched(deliver, keys, data.is_streamed(captions)):
            pass
        seconds = time.perf_counter() - t0
        out |= {f"batches_per_s{key}": batches / seconds,
                f"bytes_per_s{key}": batches * batch_bytes(data, batch) / seconds}
    return out


# --- training and evaluation ------------------------------------------------------------------------

def shipped_params() -> dict:
    from pipeline.params import load_params

    return load_params(ROOT / "params.yaml")


def step_rate(data, captions: np.ndarray, params: dict, steps: int, warmup: int = 2, seed: int = 0) -> float:
    """`ss` optimizer steps/s over the loop's order and batches (as `_train_epoch` runs them): `steps` after
    `warmup` (streamed, the first window's read falls in the warm-up; later windows are read on the
    prefetch thread while the steps run, one per `WINDOW_IMAGES` images)."""
    import torch

    from pipeline.training.epoch_batches import epoch_batches
    from pipeline.training.order import epoch_windows
    from pipeline.training.registry import build_method
    from pipeline.training.schedule import make_optimizer
    from pipeline.training.schema import method_train_settings

    settings = method_train_settings(params, "ss")
    torch.set_num_threads(settings["threads"] or torch.get_num_threads())
    torch.manual_seed(seed)
    method = build_method("ss", params, data.info, word_vectors=np.asarray(data.text.embeddings))
    optimizer = make_optimizer([(m, [p for p in ps if p.requires_grad]) for m, ps in method.lr_groups()], settings)
    method.start_epoch(0)
    method.train()
    bs = settings["batch_size"]
    block_rows = data.stream_block_rows(captions)
    order, windows = epoch_windows(captions, data.caption_rows, seed, 0, block_rows)
    t0 = None
    steps = min(steps, len(order) // bs - warmup)
    for i, batch in enumerate(epoch_batches(data, order, None if block_rows is None else windows, bs,
                                            warmup + steps)):
        if i == warmup:
            t0 = time.perf_counter()
        loss, _ = method.training_loss(batch.to("cpu"))  # as the loop moves it: features to float32
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(method.parameters(), settings["grad_clip"])
        optimizer.step()
    return steps / (time.perf_counter() - t0)


def eval_seconds(method_name: str, data, params: dict, max_images: int, with_metrics: bool, dataset: str) -> dict:
    """Seconds of `score_split` (+ `split_metrics`) on the first `max_images` test images, untrained model."""
    import torch

    from pipeline.training.registry import build_method
    from pipeline.training.scoring import score_split, split_metrics

    torch.manual_seed(0)
    method = build_method(method_name, params, data.info, word_vectors=np.asarray(data.text.embeddings)).eval()
    t0 = time.perf_counter()
    scores = score_split(method, data, "test", metrics_params=params["metrics"], dataset=dataset,
                         batch_size=params["train"]["eval_batch_size"], device=torch.device("cpu"),
                         max_images=max_images)
    if with_metrics:
        split_metrics(scores, data, metrics_params=params["metrics"], dataset=dataset, device=torch.device("cpu"))
    seconds = time.perf_counter() - t0
    pairs = len(scores.items.image_rows) * len(scores.items.captions)
    return {"seconds": seconds, "images": len(scores.items.image_rows), "captions": len(scores.items.captions),
            "coco5k_seconds": seconds * COCO5K_PAIRS / pairs}


# --- the run ------------------------------------------------------------------------------------------

def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def measure(dataset: Path, *, ref_gb: float, batches: int, steps: int, eval_images: int, cache_gb: float = 4.0,
            log=print) -> dict:
    """Every measurement of the module docstring on the dataset at `dataset`, as one dict."""
    from pipeline.training.data import RetrievalData

    params = shipped_params()
    res = {"load_before": load_average()}
    log("physical references ...")
    res["ref"] = references(dataset, ref_gb)
    log("streamed data layer ...")
    res["stream"] = stream_rates(dataset, batches)
    splits = cache_splits_that_fit(dataset, cache_gb)
    log(f"cache fill ({', '.join(splits)}) ...")
    res["fill"] = cache_fill(dataset, splits)
    res["fill_earlier"] = cache_fill(dataset, splits, earlier=True)
    res["cache_splits"] = splits
    cached = RetrievalData.open(dataset.parent, DATASET, cache_splits=splits, cache_gb=None)
    res["cached"] = cached_rates(cached, splits, batches * 10)
    log("ss steps ...")
    streamed_data = RetrievalData.open(dataset.parent, DATASET, **streamed(dataset))
    evict(store_files(dataset / "features.zarr"))
    res["ss_streamed"] = step_rate(streamed_data, streamed_data.split_items("train").captions, params, steps)
    cached_captions = np.concatenate([cached.split_items(s).captions for s in splits])
    res["ss_cached"] = step_rate(cached, cached_captions, params, steps)
    log("evaluation ...")
    data = cached if "test" in splits else streamed_data
    spec = json.loads((dataset / SPEC_FILE).read_text())
    metrics_dataset = spec["size"] if spec["test"] >= 5000 else DATASET
    res["eval_scan"] = eval_seconds("scan_t2i", data, params, eval_images, False, metrics_dataset)
    res["eval_ss"] = eval_seconds("ss", data, params, 0, True, metrics_dataset)
    res["load_after"] = load_average()
    return res


def table(res: dict, spec: dict, command: str, build_seconds: float | None, disk_bytes: int) -> str:
    ref, mib = res["ref"], 2**20
    cold, warm = ref["disk_cold"], ref["disk_cached"]
    evicted = {True: "eviction verified by mincore", False: "eviction NOT verified (pages still resident)",
               None: "eviction could not be verified"}[ref["evicted"]]
    s, f, c = res["stream"], res["fill"], res["cached"]
    rows = [
        ("disk, sequential read, cold", f"{cold / mib:,.0f} MB/s",
         f"{ref['disk_bytes'] / 2**30:.2f} GiB of shards; {evicted}"),
        ("disk, sequential read, page-cached", f"{warm / mib:,.0f} MB/s", ""),
        ("memory, numpy copy (read + write)", f"{ref['memory'] / mib:,.0f} MB/s", ""),
        ("memory, first write to fresh pages (2 GiB)", f"{ref['first_touch'] / mib:,.0f} MB/s",
         "what a cache's allocation costs, once per byte"),
        ("codec decode, in memory, one thread per core", f"{ref['decode'] / mib:,.0f} MB/s",
         f"{ref['decode'] / cold:.0%} of cold disk: the bound of every store read on this CPU"),
        ("codec decode, earlier codec (zstd + bit shuffle) (before)", f"{ref['decode_earlier'] / mib:,.0f} MB/s",
         f"{ref['decode_earlier'] / cold:.0%} of cold disk; the shipped codec decodes "
         f"{ref['decode'] / ref['decode_earlier']:.2f}x faster"),
        ("page-cached rows, one Zarr slice (before)", f"{ref['zarr_slice'] / mib:,.0f} MB/s",
         f"{ref['zarr_slice'] / ref['decode']:.0%} of decode"),
        ("page-cached rows, `FeatureStore.read` (shipped)", f"{ref['store_read'] / mib:,.0f} MB/s",
         f"{ref['store_read'] / ref['decode']:.0%} of decode; {ref['store_read'] / ref['zarr_slice']:.2f}x the Zarr "
         f"slice"),
    ]
    for name, label in (("uniform", "uniform permutation, batch by batch, no prefetch"),
                        ("earlier", f"block order ({PER_BATCH_WINDOW}-chunk windows) batch by batch + prefetch, "
                                    f"earlier reads (before)"),
                        ("per_batch", f"block order ({PER_BATCH_WINDOW}-chunk windows) batch by batch + prefetch "
                                      f"(before window reads)"),
                        ("shipped", f"shipped: windows of {s['shipped']['window_images']:,} images, each read once, "
                                    f"+ prefetch")):
        r = s[name]
        rows.append((f"streamed batches of 64, {label}",
                     f"{r['batches_per_s']:.2f} batches/s, {r['bytes_per_s'] / mib:,.0f} MB/s",
                     f"{r['bytes_per_s'] / cold:.0%} of cold disk, {r['bytes_per_s'] / warm:.1%} of cached disk "
                     f"({r['batches']} batches); read from the store: {r['store_bytes_per_s'] / mib:,.0f} MB/s, "
                     f"{r['store_bytes_per_s'] / ref['decode']:.0%} of decode"))
    rows += [
        ("shipped over uniform; over batch by batch; over earlier reads (streamed)",
         "; ".join(f"{s['shipped']['batches_per_s'] / s[k]['batches_per_s']:.2f}x"
                   for k in ("uniform", "per_batch", "earlier")),
         "before: 16-chunk windows read batch by batch; earlier: float32 reads, scattered rows by `oindex`"),
        (f"batches of 64 from the cache ({', '.join(res['cache_splits'])}), float16 as stored",
         f"{c['batches_per_s']:,.0f} batches/s",
         f"{c['bytes_per_s'] / ref['memory']:.1%} of memory bandwidth; target 1,000"),
        ("the same, moved to the CPU as a CPU run's loop does (`to`: features to float32 on the host)",
         f"{c['batches_per_s_float32']:,.0f} batches/s",
         "on a GPU, `to` moves float16 and the device converts"),
    ]
    for fill, label in ((res["fill_earlier"], "earlier reads (before)"), (f, "shipped")):
        rate = fill["feature_bytes"] / fill["seconds"]
        rows += [
            (f"cache fill, cold, {label}", f"{fill['seconds']:.1f} s, {rate / mib:,.0f} MB/s",
             f"{rate / cold:.0%} of cold disk (target 70%), {rate / ref['decode']:.0%} of decode, "
             f"{rate * (1 / cold + 1 / ref['first_touch']):.0%} of cold disk and first writes in series; "
             f"{fill['feature_bytes'] / 2**30:.2f} GiB of features"),
            (f"cache fill, peak transient memory, {label}", f"{fill['transient_bytes'] / mib:,.0f} MiB",
             f"peak {(fill['transient_bytes'] + fill['cache_bytes']) / fill['cache_bytes']:.2f}x the cache of "
             f"{fill['cache_bytes'] / mib:,.0f} MiB (target 1.2x)")]
    rows += [
        ("`ss` steps/s at batch 64, streamed", f"{res['ss_streamed']:.2f}", ""),
        ("`ss` steps/s at batch 64, cached", f"{res['ss_cached']:.2f}",
         f"streamed / cached = {res['ss_streamed'] / res['ss_cached']:.0%} (target 80%)"),
    ]
    for key, name in (("eval_scan", "`scan_t2i` `score_split`"), ("eval_ss", "`ss` `score_split` + `split_metrics`")):
        e = res[key]
        rows.append((f"{name}, {e['images']:,} x {e['captions']:,}", f"{e['seconds']:.1f} s",
                     f"COCO 5K (5,000 x 25,000) by pair count: {e['coco5k_seconds'] / 60:.1f} min"))
    size = (f"{spec['images']:,} images ({spec['val']:,} val, {spec['test']:,} test), {spec['captions_per_image']} "
            f"caption(s) each, {spec['labels']} labels, {spec['boxes']} x {spec['dim']} float16 in shards of "
            f"{spec['chunk_rows']} ({spec['codec']['configuration']['cname']}); {disk_bytes / 2**30:.2f} GiB on disk")
    lines = [f"### `{command}` ({datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, {platform.machine()}, "
             f"{os.cpu_count()} CPUs)", "", size + ".",
             (f"Build: {build_seconds:.0f} s." if build_seconds is not None else "Build: reused from --keep."),
             f"Load average (1, 5, 15 min) before: {res['load_before']}; after: {res['load_after']}.",
             f"Cache: {res['fill']['note']}.", "",
             "| what | measured | against the reference |", "|---|---|---|"]
    lines += [f"| {a} | {b} | {c} |" for a, b, c in rows]
    return "\n".join(lines) + "\n"


def du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", choices=sorted(SIZES), default="coco")
    ap.add_argument("--fraction", type=float, default=1.0, help="share of the images to build (val and test too)")
    ap.add_argument("--dir", type=Path, default=None, help="where to build (default: a temp folder beside the repo)")
    ap.add_argument("--keep", action="store_true", help="keep the dataset for a rerun (reused when its size matches)")
    ap.add_argument("--record", type=Path, default=None, help="append the table to this markdown file")
    ap.add_argument("--ref-gb", type=float, default=4.0, help="GiB read for the sequential disk reference")
    ap.add_argument("--batches", type=int, default=60, help="streamed batches timed per order (x10 from the cache)")
    ap.add_argument("--steps", type=int, default=200,
                    help="ss steps timed, streamed and cached (200: more than one window of COCO captions)")
    ap.add_argument("--eval-images", type=int, default=1000, help="test images scan_t2i is timed on")
    ap.add_argument("--cache-gb", type=float, default=4.0,
                    help="cache the train split when its features fit in this (and the machine), else val + test")
    ap.add_argument("--images", type=int, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--dim", type=int, default=DIM, help=argparse.SUPPRESS)
    ap.add_argument("--fill-child", nargs="+", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--earlier-reads", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.fill_child:
        print(json.dumps(fill_child(Path(args.fill_child[0]), args.fill_child[1:], args.earlier_reads)))
        return
    if not 0 < args.fraction <= 1:
        ap.error(f"--fraction must be in (0, 1], got {args.fraction}")
    spec = spec_of(args.size, args.fraction, args.images, args.dim)
    root = args.dir or Path(tempfile.mkdtemp(prefix=".xmr-scale-", dir=ROOT.parent))
    root.mkdir(parents=True, exist_ok=True)
    try:
        reuse = (root / DATASET / SPEC_FILE).is_file() and json.loads((root / DATASET / SPEC_FILE).read_text()) == spec
        t0 = time.perf_counter()
        dataset = build(root, spec)
        build_seconds = None if reuse else time.perf_counter() - t0
        print(f"dataset at {dataset} ({'reused' if reuse else f'built in {build_seconds:.0f} s'})")
        res = measure(dataset, ref_gb=args.ref_gb, batches=args.batches, steps=args.steps,
                      eval_images=args.eval_images, cache_gb=args.cache_gb)
        command = f"python bench/scale.py --size {args.size} --fraction {args.fraction}" + \
            "".join(f" --{k.replace('_', '-')} {v}" for k, v in vars(args).items()
                    if k in ("images", "dim", "ref_gb", "batches", "steps", "eval_images", "cache_gb") and v != ap.get_default(k))
        emit(table(res, spec, command, build_seconds, du(dataset)), args.record)
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
