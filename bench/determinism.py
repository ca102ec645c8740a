"""Measure how far the numbers move when only the thread count changes (1 vs N torch threads), on tiny data.

Same machine, same params, same seed; only `torch.set_num_threads` differs, as `detector.threads`,
`extract.threads` and `train.threads` would set it. For each stage: the largest absolute difference of
its outputs, and of the metric it reports. Also checks that a rerun at the same thread count is
bit-identical (tests/test_determinism.py asserts it). Prints a Markdown section; `--record FILE` appends it.

    python bench/determinism.py [--threads 2] [--record reports/benchmarks.md]
"""
from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from detection_helpers import params, shapes_table  # noqa: E402  (the tests' tiny data builders)
from retrieval_fixtures import make_dataset, small_params  # noqa: E402

from pipeline.data.table import read_table  # noqa: E402
from pipeline.detection.detectors import load_detector  # noqa: E402
from pipeline.detection.extract import extract_features  # noqa: E402
from pipeline.detection.settings import extract_settings  # noqa: E402
from pipeline.detection.store import FeatureStore  # noqa: E402
from pipeline.detection.train import TrainSettings, load_shapes_detector, train_shapes_detector  # noqa: E402
from pipeline.training.checkpoint import load_state  # noqa: E402
from pipeline.training.data import RetrievalData  # noqa: E402
from pipeline.training.loop import train_method  # noqa: E402
from record import emit  # bench/record.py: print and append to reports/benchmarks.md

DETECTOR = TrainSettings(iterations=30, batch_size=2, lr=0.004, warmup=0.0, width=8, representation=32,
                         proposals=50, checkpoint_every=10)


def max_state_diff(a: dict, b: dict) -> tuple[float, int]:
    """Largest absolute difference over all tensors, and how many tensors differ at all."""
    diffs = [(a[k].double() - b[k].double()).abs().max().item() for k in a if a[k].is_floating_point()]
    return max(diffs), sum(d > 0 for d in diffs)


def with_threads(n: int, fn):
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        return fn()
    finally:
        torch.set_num_threads(before)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--record", type=Path)
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        table = read_table(shapes_table(tmp, 16))
        settings = extract_settings(params(), "tiny")
        runs = {}
        for name, threads in (("1", 1), ("1 again", 1), (str(args.threads), args.threads)):
            models = tmp / name.replace(" ", "_") / "models"
            report = with_threads(threads, lambda: train_shapes_detector(
                table, models / "tiny" / "detector", DETECTOR, seed=0, progress=False))
            store = models.parent / "features.zarr"
            # extraction always with the 1-thread detector, so that only extraction's own threads differ
            source = tmp / "1" / "models"
            with_threads(threads, lambda: extract_features(table, store, load_detector(settings, "tiny", source),
                                                           settings, progress=False))
            runs[name] = {"detector": load_shapes_detector(models / "tiny" / "detector")[0].state_dict(),
                          "recall": report["metrics"]["recall"], "features": FeatureStore(store).read(np.arange(16))}
        data = RetrievalData(*make_dataset(), cache_splits=("train", "val"))
        for name, threads in (("1", 1), ("1 again", 1), (str(args.threads), args.threads)):
            out = tmp / f"ss_{name.replace(' ', '_')}"
            p = small_params(epochs=3, threads=threads)  # train_method applies train.threads itself
            result = train_method("ss", p, data, out, out / "h.json", dataset="synthetic", progress=False,
                                  log=lambda _m: None)
            runs[name]["ss"] = load_state(out / "last.pt")["model"]
            runs[name]["ndcg"] = result.best_value
        for other in ("1 again", str(args.threads)):
            a, b = runs["1"], runs[other]
            det_diff, det_n = max_state_diff(a["detector"], b["detector"])
            feat = {k: float(np.abs(a["features"][k].astype(np.float64) - b["features"][k].astype(np.float64)).max())
                    for k in ("features", "boxes", "scores")}
            classes = int((a["features"]["classes"] != b["features"]["classes"]).sum())
            ss_diff, ss_n = max_state_diff(a["ss"], b["ss"])
            rows.append([f"1 vs {other}", f"{det_diff:.2e} ({det_n} of {len(a['detector'])})",
                         f"{b['recall'] - a['recall']:+.4f}", f"{feat['features']:.2e} / {feat['boxes']:.2e} / "
                         f"{feat['scores']:.2e}", str(classes), f"{ss_diff:.2e} ({ss_n} of {len(a['ss'])})",
                         f"{b['ndcg'] - a['ndcg']:+.4f}"])
    lines = ["## Determinism: thread count (`bench/determinism.py`)", "",
             f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
             f"{datetime.date.today().isoformat()}. Tiny data: detector {DETECTOR.iterations} iterations on 16 shapes "
             "images, extraction of those 16 images with the 1-thread detector, `ss` 3 epochs on the tests' "
             "synthetic retrieval set. Same seed and params; only the torch thread count differs.", "",
             "| threads | detector weights: max abs diff (tensors differing) | detector val recall diff | "
             "extracted features / boxes / scores: max abs diff | RoI classes differing | `ss` weights: max abs "
             "diff (tensors differing) | `ss` val NDCG diff |", "|---|---|---|---|---|---|---|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows] + [""]
    text = "\n".join(lines)
    emit(text, args.record)


if __name__ == "__main__":
    main()
