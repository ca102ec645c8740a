"""Extract region features for every row of a prepared table into the Zarr store.

Throughput: images are decoded by DataLoader workers (pinned memory on CUDA) while the detector
runs on the previous batch; batches never straddle a store chunk, and a finished chunk is handed to
a writer thread, so decoding, compute and compression/writes overlap. On CUDA the detector's
convolutions run channels-last, in float32 by default as the reference extractors, or under bfloat16
autocast with `extract.autocast: true` (the RPN, selection and positions stay in float32).
Batches never change results: `regions.candidate_regions` runs each image unpadded (images of one
size together) and batches only the RoI head.
Resume: complete chunks are skipped (see `store`). Distributed (torchrun): rank r of w extracts
chunks r, r+w, ...; rank 0 creates and finalises the store around two barriers.
"""
from __future__ import annotations

import os
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pyarrow as pa
import torch
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from pipeline.data.table import table_fingerprint
from pipeline.detection.detectors import LoadedDetector
from pipeline.detection.images import CONVERSIONS, ImageError, decode_image
from pipeline.detection.positions import box_positions
from pipeline.detection.regions import candidate_regions
from pipeline.detection.selection import select_rois
from pipeline.detection.settings import ExtractSettings
from pipeline.detection.store import FeatureStoreWriter
from pipeline.machine import machine_record


class _RowImages(Dataset):
    """Table rows -> (row, uint8 [3,H,W] tensor or None, error or None, conversion or None)."""

    def __init__(self, paths: list[str], sizes: list[tuple[int, int]], modes: str):
        self.paths, self.sizes, self.modes = paths, sizes, modes

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, row: int):
        try:
            arr, conversion = decode_image(self.paths[row], modes=self.modes, expected_size=self.sizes[row])
        except ImageError as exc:
            return row, None, str(exc), None
        return row, torch.from_numpy(arr).permute(2, 0, 1), None, conversion


def _collate(items):
    return tuple(zip(*items))


def chunk_batches(writer: FeatureStoreWriter, chunks: list[int], batch_size: int) -> list[list[int]]:
    """Row batches of the given chunks; no batch spans two chunks."""
    batches = []
    for chunk in chunks:
        rows = list(writer.chunk_rows_range(chunk))
        batches += [rows[i:i + batch_size] for i in range(0, len(rows), batch_size)]
    return batches


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        return torch.device("cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"params.yaml: extract.device is {name!r} but CUDA is not available")
    return device


@torch.inference_mode()
def describe_batch(detector: LoadedDetector, images: list[torch.Tensor], settings: ExtractSettings,
                   device: torch.device) -> dict[str, np.ndarray]:
    """Selected RoIs of a batch of uint8 images: features, boxes, positions, scores, classes, image_size."""
    x = [im.to(device, non_blocking=True).float().div_(255.0) for im in images]
    K = settings.selection.num_boxes
    amp = torch.bfloat16 if settings.autocast and device.type == "cuda" else None
    cand = candidate_regions(detector.model, x, min_candidates=K, amp_dtype=amp)
    sel = select_rois(cand.boxes.float(), cand.probs, cand.valid, settings.selection)
    index = sel.index
    features = cand.features.gather(1, index[..., None].expand(-1, -1, cand.features.shape[-1]))
    boxes = cand.boxes.float().gather(1, index[..., None].expand(-1, -1, 4))
    sizes = np.array([[im.shape[-1], im.shape[-2]] for im in images], dtype=np.int32)
    boxes_np = boxes.cpu().numpy().astype(np.float32)
    return {
        "features": features.float().cpu().numpy().astype(settings.dtype),
        "boxes": boxes_np,
        "positions": box_positions(boxes_np, sizes),
        "scores": sel.scores.cpu().numpy().astype(np.float32),
        "classes": sel.classes.cpu().numpy().astype(np.int32),
        "image_size": sizes,
        "_num_above": sel.num_above.cpu().numpy(),
        "_relaxed": (sel.nms_used > settings.selection.nms + 1e-6).cpu().numpy(),
        "_num_unique": sel.num_unique.cpu().numpy(),
    }


class _ChunkBuffer:
    """One chunk's arrays and stats, filled batch by batch until every row has arrived."""

    def __init__(self, rows: range, K: int, D: int, dtype: str):
        n = len(rows)
        self.start, self.size, self.filled = rows.start, n, 0
        self.data = {"features": np.zeros((n, K, D), dtype=dtype), "boxes": np.zeros((n, K, 4), np.float32),
                     "positions": np.zeros((n, K, 5), np.float32), "scores": np.zeros((n, K), np.float32),
                     "classes": np.zeros((n, K), np.int32), "image_size": np.zeros((n, 2), np.int32),
                     "valid": np.zeros(n, dtype=bool)}
        self.stats = {"images": 0, "valid": 0, "skipped": [], "conversions": {c: 0 for c in CONVERSIONS},
                      "num_above_sum": 0, "images_with_k_above": 0, "nms_relaxed": 0, "padded": 0}

    def skip(self, row: int, file: str, error: str) -> None:
        self.stats["skipped"].append({"row": int(row), "file": file, "error": error})

    def put(self, rows: list[int], out: dict[str, np.ndarray], K: int) -> None:
        local = np.asarray(rows) - self.start
        for name in ("features", "boxes", "positions", "scores", "classes", "image_size"):
            self.data[name][local] = out[name]
        self.data["valid"][local] = True
        st = self.stats
        st["valid"] += len(rows)
        st["num_above_sum"] += int(out["_num_above"].sum())
        st["images_with_k_above"] += int((out["_num_above"] >= K).sum())
        st["nms_relaxed"] += int(out["_relaxed"].sum())
        st["padded"] += int((out["_num_unique"] < K).sum())

    def count(self, n: int, conversions) -> bool:
        """Record `n` rows as handled; True once the chunk is complete."""
        self.stats["images"] += n
        for conv in conversions:
            if conv:
                self.stats["conversions"][conv] += 1
        self.filled += n
        return self.filled == self.size


def inference_config(detector: LoadedDetector) -> dict:
    """The detector's actual test-time proposals and resize (read from the torchvision modules)."""
    model = detector.model
    return {"proposals": int(model.rpn._post_nms_top_n["testing"]),
            "image_resize": {"min_size": int(model.transform.min_size[-1]), "max_size": int(model.transform.max_size)}}


def store_signature(detector: LoadedDetector, settings: ExtractSettings, table: pa.Table) -> dict:
    """What must be equal for a partial store to be resumed."""
    return {"detector": detector.name, "weights_sha256": detector.weights_sha256,
            "selection": settings.selection.as_dict(), **inference_config(detector),
            "image_modes": settings.image_modes,
            "on_bad_image": settings.on_bad_image,
            "table_fingerprint": table_fingerprint(table),
            "table_rows": table.num_rows, "table_files_head": table.column("file_path").slice(0, 3).to_pylist(),
            "table_files_tail": table.column("file_path").slice(max(0, table.num_rows - 3)).to_pylist()}


def _distributed() -> tuple[int, int]:
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def _barrier(world: int) -> None:
    """Synchronise torchrun ranks (a no-op for a single process or explicitly given ranks)."""
    if world > 1:
        import torch.distributed as dist

        if not dist.is_initialized():
            dist.init_process_group(backend="gloo")
        dist.barrier()


def extract_features(table: pa.Table, out_path: str | Path, detector: LoadedDetector, settings: ExtractSettings,
                     *, rank: int | None = None, world: int | None = None, finalize: bool = True,
                     progress: bool = True, max_chunks: int | None = None) -> dict:
    """Fill `out_path` with the selected RoIs of every table row; returns the stats.

    `rank`/`world` default to torchrun's RANK/WORLD_SIZE (then ranks synchronise through
    torch.distributed); given explicitly, the caller coordinates the runs. With `finalize`, the
    store is moved into place once every chunk is written (by rank 0). `max_chunks` stops after
    that many chunks (tests of resuming).
    """
    env_rank, env_world = _distributed()
    sync_world = env_world if rank is None and world is None else 1
    rank = env_rank if rank is None else rank
    world = env_world if world is None else world
    if not 0 <= rank < world:
        raise ValueError(f"rank {rank} outside world size {world}")
    n = table.num_rows
    if n == 0:
        raise ValueError("prepared table has no rows to extract")
    device = resolve_device(settings.device)
    detector.model.to(device).eval()
    if device.type == "cuda":  # NHWC convolutions: the fast layout for tensor cores
        detector.model.to(memory_format=torch.channels_last)
    K, D = settings.selection.num_boxes, detector.feature_dim
    attrs = {"detector": detector.name, "weights_sha256": detector.weights_sha256,
             "weights_file": Path(detector.weights_path).name, "selection": settings.selection.as_dict(),
             "num_classes": len(detector.class_names), "class_names": detector.class_names, "feature_dim": D,
             "num_boxes": K, "dtype": settings.dtype, **inference_config(detector),
             "image_modes": settings.image_modes, "detector_info": detector.info,
             "table_fingerprint": table_fingerprint(table)}

    def make() -> FeatureStoreWriter:
        return FeatureStoreWriter(out_path, n_rows=n, num_boxes=K, feature_dim=D, dtype=settings.dtype,
                                  chunk_rows=settings.chunk_size,
                                  signature=store_signature(detector, settings, table), attrs=attrs)

    if rank == 0:
        writer = make()
    _barrier(sync_world)
    if rank != 0:
        writer = make()
    chunks = writer.pending_chunks(rank, world)[:max_chunks]
    paths = table.column("file_path").to_pylist()
    sizes = list(zip(table.column("width").to_pylist(), table.column("height").to_pylist()))
    loader = DataLoader(_RowImages(paths, sizes, settings.image_modes),
                        batch_sampler=chunk_batches(writer, chunks, settings.batch_size),
                        num_workers=settings.workers, collate_fn=_collate, pin_memory=device.type == "cuda",
                        prefetch_factor=4 if settings.workers else None)
    total = sum(len(writer.chunk_rows_range(c)) for c in chunks)
    pool = ThreadPoolExecutor(max_workers=1)
    pending_write: Future | None = None
    buffers: dict[int, _ChunkBuffer] = {}
    t0, done = time.perf_counter(), 0
    bar = tqdm(total=total, desc=f"extract [{detector.name}]", unit="img", disable=not progress, mininterval=1.0)
    try:
        for rows, images, errors, conversions in loader:
            chunk = rows[0] // settings.chunk_size
            buf = buffers.setdefault(chunk, _ChunkBuffer(writer.chunk_rows_range(chunk), K, D, settings.dtype))
            for row, err in zip(rows, errors):
                if err is not None:
                    if settings.on_bad_image == "error":
                        raise ImageError(err)
                    buf.skip(row, paths[row], err)
            good = [i for i, err in enumerate(errors) if err is None]
            if good:
                out = describe_batch(detector, [images[i] for i in good], settings, device)
                if not np.isfinite(out["features"]).all():
                    raise FloatingPointError(f"rows {rows[good[0]]}..{rows[good[-1]]}: non-finite features "
                                             f"(overflow of {settings.dtype}? set extract.dtype: float32)")
                buf.put([rows[i] for i in good], out, K)
            done += len(rows)
            bar.update(len(rows))
            if buf.count(len(rows), conversions):
                if pending_write is not None:
                    pending_write.result()  # at most one chunk in flight: bounded memory, errors surface
                pending_write = pool.submit(writer.write_chunk, chunk, buf.data, buf.stats)
                del buffers[chunk]
        if pending_write is not None:
            pending_write.result()
    finally:
        bar.close()
        pool.shutdown(wait=True)
    seconds = time.perf_counter() - t0
    run = {"images": done, "seconds": round(seconds, 2), "images_per_s": round(done / seconds, 2) if seconds else None,
           "device": str(device), "rank": rank, "world": world, "resumed": writer.resumed}
    if not finalize:
        return {"complete": False, "run": run}
    _barrier(sync_world)
    if rank != 0:
        return {"complete": False, "run": run}
    remaining = set(range(writer.num_chunks)) - writer.done_chunks()
    if remaining:
        return {"complete": False, "run": run, "chunks_left": len(remaining)}
    totals = summarize(writer.chunk_stats(), K)
    writer.finalize({"stats": {k: v for k, v in totals.items() if k != "skipped"},
                     "machine": machine_record(device)})  # the class that computed the features (the last run's)
    return {"complete": True, **totals, "run": run}


def summarize(chunk_stats: list[dict], num_boxes: int) -> dict:
    """Dataset totals from the per-chunk stats."""
    out = {"images": 0, "valid": 0, "skipped": [], "conversions": {c: 0 for c in CONVERSIONS},
           "num_above_sum": 0, "images_with_k_above": 0, "nms_relaxed": 0, "padded": 0}
    for s in chunk_stats:
        for key in ("images", "valid", "num_above_sum", "images_with_k_above", "nms_relaxed", "padded"):
            out[key] += s.get(key, 0)
        out["skipped"] += s.get("skipped", [])
        for conv, count in s.get("conversions", {}).items():
            out["conversions"][conv] = out["conversions"].get(conv, 0) + count
    valid = max(out["valid"], 1)
    return {"images": out["images"], "valid_images": out["valid"], "skipped_images": len(out["skipped"]),
            "skipped": out["skipped"], "conversions": out["conversions"],
            "mean_rois_above_threshold": round(out["num_above_sum"] / valid, 3),
            "images_with_all_rois_above_threshold": out["images_with_k_above"],
            "images_with_relaxed_nms": out["nms_relaxed"], "images_with_repeated_rois": out["padded"],
            "num_boxes": num_boxes}
