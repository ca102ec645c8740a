"""Benchmark: region-feature extraction throughput (images/s) and peak memory per detector.

Runs the stage's path end to end (`pipeline.detection.extract.extract_features`: DataLoader decode,
detector, RoI selection, positions, Zarr writes) on randomly initialised detectors (speed does not
depend on the weights, except that selection work grows with the number of confident class scores):
  shapes_frcnn           128x128 generated shapes images, trained-size config, 300 proposals
  frcnn_r50_fpn_v2_coco  real COCO JPEGs (../shared/coco-mini, else synthetic 640x480), short side 600, max 1000, 300 proposals
  butd_r101_c4           same images and bottom-up-attention settings (600 / 1000 / 300 proposals, 14x14 RoIPool, res5 head)
for each batch size x DataLoader workers. Each configuration runs in a fresh subprocess (peak RSS
is per configuration); one warm-up batch is excluded. On CUDA the peak is torch's max allocated.

    python bench/extract.py [--device cpu|cuda] [--detectors a,b] [--images 32] [--big-images 4]
                            [--batch-sizes 1,8] [--workers 0,2] [--threads 1,2] [--selection]
                            [--record reports/benchmarks.md]
    python bench/extract.py --batching [--batching-images 8] [--batch-sizes 4] [--batching-size 600,1000]
                            [--proposals 300] [--threads 2] [--record reports/benchmarks.md]

`--batching` measures, in one run on the same images, what batch independence costs: the former
path (a batch padded to a multiple of 32 and to its largest image, one backbone call) against the
current one (`regions.candidate_regions`: each image unpadded, images of one size together, one RoI
head call), each image's deviation from its features extracted alone, and bf16 autocast against fp32.
"""
from __future__ import annotations

import os
import sys


import argparse
import copy
import json
import platform
import resource
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import torch
from PIL import Image
from record import emit  # bench/record.py: print and append to reports/benchmarks.md

ROOT = Path(__file__).resolve().parents[1]
COCO_MINI = ROOT.parent / "shared" / "coco-mini" / "val2017"
DETECTORS = ("shapes_frcnn", "frcnn_r50_fpn_v2_coco", "butd_r101_c4")


def image_table(detector: str, n: int, workdir: Path) -> pa.Table:
    """`n` image files for the detector: generated shapes, or COCO JPEGs (cycled), else synthetic JPEGs."""
    paths, sizes = [], []
    if detector == "shapes_frcnn":
        from pipeline.data.shapes import generate_image
        from pipeline.params import SHAPES_SCHEMA

        p = copy.deepcopy(SHAPES_SCHEMA)
        for i in range(n):
            img, _, _ = generate_image(i, p)
            path = workdir / f"shape_{i}.png"
            img.save(path)
            paths.append(str(path))
            sizes.append(img.size)
    else:
        files = sorted(COCO_MINI.glob("*.jpg"))
        rng = np.random.default_rng(0)
        for i in range(n):
            if files:
                path = files[i % len(files)]
            else:
                path = workdir / f"synthetic_{i}.jpg"
                Image.fromarray(rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)).save(path, quality=90)
            paths.append(str(path))
            sizes.append(Image.open(path).size)
    return pa.table({"file_path": paths, "width": [s[0] for s in sizes], "height": [s[1] for s in sizes]})


def build(detector: str, proposals: int):
    """A randomly initialised detector wrapped as the stage loads it."""
    from pipeline.data.shapes import CLASSES
    from pipeline.detection import coco_frcnn
    from pipeline.detection.butd import ButdConfig, build_butd, init_random_
    from pipeline.detection.detectors import LoadedDetector
    from pipeline.detection.shapes_frcnn import ShapesDetectorConfig, build_shapes_detector, init_weights_

    torch.manual_seed(0)
    if detector == "shapes_frcnn":
        model = init_weights_(build_shapes_detector(ShapesDetectorConfig(num_classes=len(CLASSES), proposals=proposals)))
        return LoadedDetector(detector, model.eval(), list(CLASSES), 256, "random", "0" * 64)
    if detector == "frcnn_r50_fpn_v2_coco":
        model = coco_frcnn.build(min_size=600, max_size=1000, proposals=proposals)
        return LoadedDetector(detector, model, coco_frcnn.class_names(), coco_frcnn.FEATURE_DIM, "random", "0" * 64)
    model = init_random_(build_butd(ButdConfig(min_size=600, max_size=1000, proposals=proposals)))
    return LoadedDetector(detector, model, [f"vg_{i}" for i in range(1600)], 2048, "random", "0" * 64)


def run_one(args) -> dict:
    """One configuration, in this process: warm-up batch, then the timed extraction."""
    from pipeline.detection.extract import describe_batch, extract_features, resolve_device
    from pipeline.detection.images import decode_image
    from pipeline.detection.settings import extract_settings
    from pipeline.params import validate

    params = validate({"datasets": ["b"], "data": {"b": {"kind": "coco"}},
                       "extract": {"batch_size": args.batch_size, "workers": args.workers, "device": args.device,
                                   "chunk_size": 64, "proposals": 300, "min_size": 600, "max_size": 1000}})
    settings = extract_settings(params, "b")
    detector = build(args.single, settings.proposals)
    device = resolve_device(settings.device)
    detector.model.to(device)
    with tempfile.TemporaryDirectory() as tmp:
        table = image_table(args.single, args.n, Path(tmp))
        warm = [torch.from_numpy(decode_image(p)[0]).permute(2, 0, 1) for p in table.column("file_path").to_pylist()[: args.batch_size]]
        describe_batch(detector, warm, settings, device)
        if device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        t0 = time.perf_counter()
        stats = extract_features(table, Path(tmp) / "f.zarr", detector, settings, progress=False)
        seconds = time.perf_counter() - t0
    peak = (torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    return {"detector": args.single, "device": str(device), "batch_size": args.batch_size, "workers": args.workers,
            "images": args.n, "seconds": round(seconds, 2), "images_per_s": round(args.n / seconds, 3),
            "peak_mib": round(peak), "peak_kind": "GPU max allocated" if device.type == "cuda" else "process max RSS",
            "relaxed_nms": stats["images_with_relaxed_nms"], "repeated": stats["images_with_repeated_rois"]}


def selection_bench(device: str, repeats: int = 3) -> list[dict]:
    """Per-class NMS of `selection.surviving_scores` (shared-box, rank-stepped) against one torchvision
    `batched_nms` call over (image, class) groups, on [8, 300, C] random candidates."""
    from torchvision.ops import batched_nms

    from pipeline.detection.selection import surviving_scores

    rows = []
    gen = torch.Generator().manual_seed(0)
    for classes, alpha, label in ((24, 1.0, "24 classes, flat scores (untrained shapes detector)"),
                                  (1600, 0.02, "1600 classes, peaked scores (Visual Genome-like)")):
        B, R = 8, 300
        xy = torch.rand(B, R, 2, generator=gen) * 500
        boxes = torch.cat([xy, xy + 20 + torch.rand(B, R, 2, generator=gen) * 200], dim=2).to(device)
        probs = torch.distributions.Dirichlet(torch.full((classes,), alpha)).sample((B, R)).to(device)
        valid = torch.ones(B, R, dtype=torch.bool, device=device)

        def reference():
            b, r, c = ((probs >= 0.01) & valid[..., None]).nonzero(as_tuple=True)
            keep = batched_nms(boxes[b, r], probs[b, r, c], b * classes + c, 0.3)
            best = torch.full((B * R,), -1.0, device=device)
            return best.scatter_reduce_(0, (b * R + r)[keep], probs[b, r, c][keep], reduce="amax")

        out = {}
        for name, fn in (("shared-box", lambda: surviving_scores(boxes, probs, valid, 0.3, 0.01)), ("batched_nms", reference)):
            times = []
            for _ in range(repeats):
                t0 = time.perf_counter()
                result = fn()
                if device.startswith("cuda"):
                    torch.cuda.synchronize()
                times.append(time.perf_counter() - t0)
            out[name] = (min(times), result.view(B, R))
        same = torch.equal(out["shared-box"][1], out["batched_nms"][1])
        rows.append({"case": label, "pairs": int(((probs >= 0.01)).sum()), "shared_s": out["shared-box"][0],
                     "reference_s": out["batched_nms"][0], "equal": same})
    return rows


def padded_batch_regions(model, images):
    """The former path, kept here as the benchmark's "before": one padded batch through the whole model."""
    from collections import OrderedDict

    from torchvision.models.detection.transform import resize_boxes

    from pipeline.detection.regions import _resize_scale

    model.transform.size_divisible = 32
    try:
        image_list, _ = model.transform(images)
    finally:
        model.transform.size_divisible = 1
    image_list.scales = [_resize_scale(model.transform, *im.shape[-2:]) for im in images]
    features = OrderedDict([("0", model.backbone(image_list.tensors)["0"])])
    proposals, _ = model.rpn(image_list, features)
    pooled = model.roi_heads.box_roi_pool(features, proposals, image_list.image_sizes)
    rep = model.roi_heads.box_head(pooled)
    counts = [len(p) for p in proposals]
    boxes = [resize_boxes(p, r, tuple(im.shape[-2:])) for p, r, im in zip(proposals, image_list.image_sizes, images)]
    return boxes, list(rep.split(counts))


def _max_dev(a_boxes, a_feats, b_boxes, b_feats) -> float:
    """Largest relative feature deviation over regions with the same proposal (inf if proposals differ)."""
    if a_boxes.shape != b_boxes.shape or not torch.allclose(a_boxes, b_boxes, atol=1e-3):
        return float("inf")
    return float(((a_feats - b_feats).norm(dim=1) / b_feats.norm(dim=1).clamp_min(1e-12)).max())


def _features_at(model, images, boxes, padded: bool, amp=None) -> list[torch.Tensor]:
    """RoI features of given boxes (original pixels) when `images` go through the backbone as one padded
    batch (`padded`) or one by one unpadded; under `amp` autocast if given."""
    from torchvision.models.detection.transform import resize_boxes

    ctx = torch.autocast("cpu", dtype=amp or torch.float32, enabled=amp is not None)
    groups = [images] if padded else [[im] for im in images]
    out = []
    model.transform.size_divisible = 32 if padded else 1
    try:
        for group in groups:
            image_list, _ = model.transform(group)
            k = len(out)
            props = [resize_boxes(boxes[k + i], tuple(im.shape[-2:]), size)
                     for i, (im, size) in enumerate(zip(group, image_list.image_sizes))]
            with ctx:
                feats = model.backbone(image_list.tensors)
                rep = model.roi_heads.box_head(model.roi_heads.box_roi_pool(feats, props, image_list.image_sizes))
            out += [r.float() for r in rep.split([len(p) for p in props])]
    finally:
        model.transform.size_divisible = 1
    return out


def _rel(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a - b).norm(dim=1) / b.norm(dim=1).clamp_min(1e-12)


@torch.inference_mode()
def batching_bench(n_images: int, batch_size: int, min_size: int, max_size: int, proposals: int) -> dict:
    """Throughput of the padded (before) and batch-independent (after) paths, their deviations, bf16."""
    from pipeline.detection.butd import ButdConfig, build_butd, init_random_
    from pipeline.detection.images import decode_image
    from pipeline.detection.regions import candidate_regions

    torch.manual_seed(0)
    model = init_random_(build_butd(ButdConfig(min_size=min_size, max_size=max_size, proposals=proposals)))
    with tempfile.TemporaryDirectory() as tmp:
        table = image_table("butd_r101_c4", n_images, Path(tmp))
        images = [torch.from_numpy(decode_image(p)[0]).permute(2, 0, 1).float() / 255
                  for p in table.column("file_path").to_pylist()]
    batches = [images[i:i + batch_size] for i in range(0, len(images), batch_size)]
    candidate_regions(model, images[:1])  # warm-up
    paths = {"before": lambda b: padded_batch_regions(model, b),
             "after": lambda b: (lambda c: ([c.boxes[i][c.valid[i]] for i in range(len(b))],
                                            [c.features[i][c.valid[i]] for i in range(len(b))]))(
                 candidate_regions(model, b))}
    out = {name: {"seconds": 0.0, "boxes": [], "features": []} for name in paths}
    for k, batch in enumerate(batches):  # interleaved, alternating order: a shared machine's load hits both
        for name in (("before", "after") if k % 2 == 0 else ("after", "before")):
            t0 = time.perf_counter()
            boxes, feats = paths[name](batch)
            out[name]["seconds"] += time.perf_counter() - t0
            out[name]["boxes"] += boxes
            out[name]["features"] += feats
    for name in paths:
        out[name]["images_per_s"] = len(images) / out[name]["seconds"]
    alone = [candidate_regions(model, [im]) for im in images]
    alone = [(c.boxes[0][c.valid[0]], c.features[0][c.valid[0]]) for c in alone]
    for name in ("before", "after"):
        devs = [_max_dev(b, f, ab, af) for b, f, (ab, af) in zip(out[name]["boxes"], out[name]["features"], alone)]
        out[name]["max_dev_vs_alone"] = max(devs)
        out[name]["images_differing"] = sum(d > 1e-4 for d in devs)
    # Same boxes (each image's own fp32 proposals), so that only the features can differ.
    alone_boxes = [ab for ab, _ in alone]
    padded = [f for batch_start in range(0, len(images), batch_size)
              for f in _features_at(model, images[batch_start:batch_start + batch_size],
                                    alone_boxes[batch_start:batch_start + batch_size], padded=True)]
    unpadded = _features_at(model, images, alone_boxes, padded=False)
    bf16_same_boxes = _features_at(model, images, alone_boxes, padded=False, amp=torch.bfloat16)
    out["before"]["same_boxes_max_rel_dev"] = max(float(_rel(p, u).max()) for p, u in zip(padded, unpadded))
    out["before"]["same_boxes_mean_rel_dev"] = float(np.mean([float(_rel(p, u).mean()) for p, u in zip(padded, unpadded)]))
    bf16_rel = [_rel(f, u) for f, u in zip(bf16_same_boxes, unpadded)]
    bf16 = [candidate_regions(model, [im], amp_dtype=torch.bfloat16) for im in images]
    rel, same_props = [], 0
    for c, (ab, af) in zip(bf16, alone):
        b, f = c.boxes[0][c.valid[0]], c.features[0][c.valid[0]].float()
        if b.shape == ab.shape and torch.allclose(b, ab, atol=1e-3):
            same_props += 1
            rel.append(float(((f - af).norm(dim=1) / af.norm(dim=1).clamp_min(1e-12)).mean()))
    return {"images": len(images), "sizes": sorted({tuple(im.shape[-2:]) for im in images}),
            "before": {k: v for k, v in out["before"].items() if k not in ("boxes", "features")},
            "after": {k: v for k, v in out["after"].items() if k not in ("boxes", "features")},
            "bf16_same_proposals": same_props,
            "bf16_same_boxes_mean_rel_dev": float(np.mean([float(r.mean()) for r in bf16_rel])),
            "bf16_same_boxes_max_rel_dev": max(float(r.max()) for r in bf16_rel), "bf16_mean_rel_dev": float(np.mean(rel)) if rel else None,
            "bf16_max_rel_dev": float(np.max(rel)) if rel else None}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--detectors", default=",".join(DETECTORS))
    ap.add_argument("--images", type=int, default=32, help="images per configuration (shapes)")
    ap.add_argument("--big-images", type=int, default=4, help="images per configuration (COCO-size detectors)")
    ap.add_argument("--batch-sizes", default="1,8")
    ap.add_argument("--workers", default="0,2")
    ap.add_argument("--threads", default="0", help="torch CPU threads per run, comma-separated (0: torch default)")
    ap.add_argument("--record", type=Path, help="append the Markdown section to this file")
    ap.add_argument("--selection", action="store_true", help="also time per-class NMS against torchvision batched_nms")
    ap.add_argument("--batching", action="store_true", help="cost of batch-independent extraction and bf16 deviation")
    ap.add_argument("--batching-images", type=int, default=8)
    ap.add_argument("--batching-size", default="600,1000", help="min_size,max_size of the butd resize")
    ap.add_argument("--proposals", type=int, default=300)
    ap.add_argument("--single", help=argparse.SUPPRESS)
    ap.add_argument("--n", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--batch-size", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--workers-one", type=int, dest="workers_one", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.batching:
        return batching_main(args)
    if args.single:
        if int(args.threads):
            torch.set_num_threads(int(args.threads))
        args.workers = args.workers_one
        print(json.dumps(run_one(args)))
        return
    rows = []
    for det in args.detectors.split(","):
        n = args.images if det == "shapes_frcnn" else args.big_images
        for bs in (int(b) for b in args.batch_sizes.split(",")):
            for w in (int(x) for x in args.workers.split(",")):
                for threads in args.threads.split(","):
                    cmd = [sys.executable, os.path.abspath(__file__), "--single", det, "--n", str(n), "--batch-size",
                           str(bs), "--workers-one", str(w), "--device", args.device, "--threads", threads]
                    out = subprocess.run(cmd, capture_output=True, text=True, check=True, cwd=ROOT)
                    rows.append(dict(json.loads(out.stdout.strip().splitlines()[-1]), threads=threads))
                    print(rows[-1], file=sys.stderr, flush=True)
    lines = ["## Region features: extraction throughput (`bench/extract.py`)", "",
             f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs visible, device `{args.device}`"
             f"{' (' + torch.cuda.get_device_name() + ')' if args.device.startswith('cuda') else ''}. "
             f"Command: `python bench/extract.py --device {args.device} --detectors {args.detectors} --images {args.images} "
             f"--big-images {args.big_images} --batch-sizes {args.batch_sizes} --workers {args.workers} --threads {args.threads}"
             f"{' --selection' if args.selection else ''}`. Random weights; one warm-up batch excluded.", "",
             "| detector | device | batch | workers | threads | images | s | images/s | peak MiB |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['detector']} | {r['device']} | {r['batch_size']} | {r['workers']} | {r['threads']} | "
                     f"{r['images']} | {r['seconds']} | {r['images_per_s']} | {r['peak_mib']} ({r['peak_kind']}) |")
    if args.selection:
        if int(args.threads.split(",")[0]):
            torch.set_num_threads(int(args.threads.split(",")[0]))
        lines += ["", "Per-class NMS over 8 images x 300 proposals (best of 3, same results required):", "",
                  "| case | pairs >= 0.01 | shared-box (s) | torchvision batched_nms (s) | ratio | equal |",
                  "|---|---|---|---|---|---|"]
        for r in selection_bench(args.device):
            lines.append(f"| {r['case']} | {r['pairs']} | {r['shared_s']:.3f} | {r['reference_s']:.3f} | "
                         f"{r['reference_s'] / r['shared_s']:.1f}x | {r['equal']} |")
    text = "\n".join(lines) + "\n"
    emit(text, args.record)


def batching_main(args) -> None:
    if int(args.threads.split(",")[0]):
        torch.set_num_threads(int(args.threads.split(",")[0]))
    lo, hi = (int(x) for x in args.batching_size.split(","))
    bs = int(args.batch_sizes.split(",")[0])
    r = batching_bench(args.batching_images, bs, lo, hi, args.proposals)
    b, a = r["before"], r["after"]
    lines = ["## Region features: cost of batch-independent extraction (`bench/extract.py --batching`, issue 16)", "",
             f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs visible (shared), CPU, "
             f"torch threads {torch.get_num_threads()}. Command: `python bench/extract.py --batching --batching-images "
             f"{args.batching_images} --batch-sizes {bs} --batching-size {lo},{hi} --proposals {args.proposals} "
             f"--threads {args.threads}`. butd_r101_c4 (ResNet-101 C4) with random weights; {r['images']} COCO images "
             f"of {len(r['sizes'])} different sizes in batches of {bs}; both paths in one run on the same images, batch by batch in alternating order.", "",
             "| path | s | images/s | max relative feature deviation from the image alone | images that differ (> 1e-4) |",
             "|---|---|---|---|---|",
             f"| before: batch padded to /32 and to its largest image | {b['seconds']:.1f} | {b['images_per_s']:.3f} | "
             f"{b['max_dev_vs_alone']:.2e} | {b['images_differing']} of {r['images']} |",
             f"| after: unpadded, same-size groups, one RoI-head call | {a['seconds']:.1f} | {a['images_per_s']:.3f} | "
             f"{a['max_dev_vs_alone']:.2e} | {a['images_differing']} of {r['images']} |", "",
             f"Throughput after / before: {a['images_per_s'] / b['images_per_s']:.2f}. "
             f"(A deviation of inf means the image's proposals themselves changed.) With the proposals held "
             f"fixed (each image's own), padding alone changes the RoI features by {b['same_boxes_mean_rel_dev']:.2e} "
             f"on average (relative L2) and by up to {b['same_boxes_max_rel_dev']:.2e}.", "",
             f"bf16 autocast against fp32, same boxes: relative L2 deviation of the RoI features "
             f"{r['bf16_same_boxes_mean_rel_dev']:.2e} on average, {r['bf16_same_boxes_max_rel_dev']:.2e} at most.", "",
             f"bf16 autocast against fp32 (CPU autocast, each image alone): proposals identical for "
             f"{r['bf16_same_proposals']} of {r['images']} images"
             + (f" (their RoI features deviate by {r['bf16_mean_rel_dev']:.2e} on average, {r['bf16_max_rel_dev']:.2e} "
                f"at most). " if r["bf16_same_proposals"] else
                " (random weights give near-flat objectness, so bf16's small changes reorder the proposals). "),
             "Random weights: the deviation on the real checkpoint may differ."]
    text = "\n".join(lines) + "\n"
    emit(text, args.record)


if __name__ == "__main__":
    main()
