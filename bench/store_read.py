"""Reading the region-feature store: the inner-chunk layout against one image per inner chunk.

    python bench/store_read.py [--images 2000] [--dim 256] [--repeats 3] [--record reports/benchmarks.md]

Every train and evaluate stage opens data/<ds>/features.zarr and reads whole splits into memory, so
the per-inner-chunk overhead of Zarr is paid once per stage. The bench writes one synthetic store
through `FeatureStoreWriter` (the current layout: features in runs of FEATURE_INNER_ROWS images, the
small arrays one inner chunk per shard), copies it with every array re-chunked to one image per
inner chunk (the earlier layout), and times, in one run: the earlier layout and the current one with every
read through Zarr's `oindex` (SPAN_READ_FACTOR 0: before reads of dense rows became one slice), the current
one with dense rows as one Zarr slice (before `ShardReader`), and as shipped (`ShardReader`):
  split     `FeatureStore.read` of the first 90% of the rows (a training split) and the `valid` mask
  random    `FeatureStore.read` of 64 random rows (a mini-batch read without the cache)
"""
from __future__ import annotations

import argparse
import platform
import shutil
import statistics
import tempfile
import time
from datetime import date
from pathlib import Path

import numpy as np
import zarr

import pipeline.detection.store as store_module
from pipeline.detection.store import ARRAYS, FEATURE_INNER_ROWS, FeatureStore, FeatureStoreWriter


def synthetic_store(path: Path, n: int, k: int, d: int, chunk_rows: int) -> Path:
    rng = np.random.default_rng(0)
    writer = FeatureStoreWriter(path, n_rows=n, num_boxes=k, feature_dim=d, chunk_rows=chunk_rows,
                                signature={"bench": True}, attrs={"num_classes": 24, "class_names": []})
    for chunk in range(writer.num_chunks):
        rows = writer.chunk_rows_range(chunk)
        m = len(rows)
        boxes = rng.uniform(0, 100, (m, k, 4)).astype(np.float32)
        writer.write_chunk(chunk, {
            "features": np.maximum(rng.normal(size=(m, k, d)), 0).astype(np.float16), "boxes": boxes,
            "positions": rng.uniform(0, 1, (m, k, 5)).astype(np.float32),
            "scores": rng.uniform(0, 1, (m, k)).astype(np.float32),
            "classes": rng.integers(0, 24, (m, k)).astype(np.int32),
            "image_size": np.full((m, 2), 128, np.int32), "valid": np.ones(m, bool)})
    return writer.finalize()


def one_image_chunks(src: Path, dst: Path) -> Path:
    """A copy of `src` with every array stored one image per inner chunk (the earlier layout)."""
    shutil.copytree(src, dst)
    group = zarr.open_group(dst, mode="r+")
    for name in ARRAYS:
        old = zarr.open_group(src, mode="r")[name]
        del group[name]
        new = group.create_array(name, shape=old.shape, dtype=old.dtype, chunks=(1,) + old.shape[1:],
                                 shards=old.shards, fill_value=old.fill_value,
                                 compressors=store_module.compressor(name))
        new[:] = old[:]
    return dst


def time_reads(path: Path, repeats: int) -> dict:
    n = len(FeatureStore(path))
    split = np.arange(int(n * 0.9))
    rng = np.random.default_rng(1)
    out = {"split": [], "random": []}
    for _ in range(repeats):
        store = FeatureStore(path)  # fresh, as each stage opens it
        t0 = time.perf_counter()
        store.read(split)
        _ = store.valid
        out["split"].append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        store.read(np.sort(rng.choice(n, 64, replace=False)))
        out["random"].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in out.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=2000)
    ap.add_argument("--boxes", type=int, default=36)
    ap.add_argument("--dim", type=int, default=256, help="feature width (256: shapes_frcnn; 2048: BUTD)")
    ap.add_argument("--chunk-rows", type=int, default=64, help="images per shard (extract.chunk_size)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--record", type=Path, default=None, help="append the result table to this markdown file")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        current = synthetic_store(Path(tmp) / "current.zarr", args.images, args.boxes, args.dim, args.chunk_rows)
        earlier = one_image_chunks(current, Path(tmp) / "one_image.zarr")
        span_factor = store_module.SPAN_READ_FACTOR
        store_module.READ_DIRECT, store_module.SPAN_READ_FACTOR = False, 0
        rows = {"one image per inner chunk, through `oindex` (earlier)": time_reads(earlier, args.repeats),
                f"runs of {FEATURE_INNER_ROWS}, every read through `oindex`": time_reads(current, args.repeats)}
        store_module.SPAN_READ_FACTOR = span_factor
        rows[f"runs of {FEATURE_INNER_ROWS}, dense rows as one Zarr slice"] = time_reads(current, args.repeats)
        store_module.READ_DIRECT = True
        rows[f"runs of {FEATURE_INNER_ROWS}, `ShardReader` (current)"] = time_reads(current, args.repeats)
    before, oindex, zarr_slice, after = rows.values()
    lines = [f"\n### `python bench/store_read.py --images {args.images} --dim {args.dim}` ({date.today()}, "
             f"{platform.machine()}, {args.repeats} repeats, median)\n",
             f"{args.images} images x {args.boxes} RoIs x {args.dim}-d float16, shards of {args.chunk_rows} images.\n",
             f"| layout | read 90% of rows + valid (s) | read 64 random rows (s) |", "|---|---|---|"]
    lines += [f"| {name} | {r['split']:.3f} | {r['random']:.3f} |" for name, r in rows.items()]
    lines += ["", "Current over the earlier layout, over `oindex`, over one Zarr slice: split read "
                  + ", ".join(f"{r['split'] / after['split']:.1f}x" for r in (before, oindex, zarr_slice))
                  + "; random rows " + ", ".join(f"{r['random'] / after['random']:.2f}x"
                                                 for r in (before, oindex, zarr_slice)) + ".\n"]
    text = "\n".join(lines)
    print(text)
    if args.record:
        with args.record.open("a") as f:
            f.write(text)


if __name__ == "__main__":
    main()
