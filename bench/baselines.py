"""Benchmark of the Table-1 baselines on embedded-sized data, and of the two CCA solvers.

    python bench/baselines.py embedded [--methods cca lcfs ...] [--epochs 5] [--threads 1] [--record reports/benchmarks.md]
    python bench/baselines.py cca      [--pairs 2000] [--dim 512] [--record reports/benchmarks.md]

embedded  one whole run (fit, or `--epochs` epochs + validation each epoch) of every baseline through
          `pipeline.training.loop.train_method`, with the small settings proposed for params.yaml
          (EMBEDDED below), on the real embedded table and text (data/shapes/table.parquet,
          data/shapes/text/: 2,000 images, 10,000 captions, 24 labels, 76-word vocabulary, 300-d
          vectors) and RoI features synthesised from the ground-truth boxes (36 RoIs x 256-d: each
          object's RoI near its class prototype, the rest clutter), since the detector stage may not
          have run. Reports wall and CPU seconds, per-epoch time and the best validation NDCG.
cca       scikit-learn's NIPALS CCA against the closed-form solver (`methods.cca.solver: svd`) on
          random correlated views: time and canonical correlations of both.
"""
from __future__ import annotations

import os
import sys


import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from pipeline.data.table import label_names, read_table
from pipeline.params import validate
from pipeline.text.store import TextData
from pipeline.training.data import RetrievalData
from pipeline.training.loop import train_method
from retrieval_fixtures import FakeFeatureStore

# Proposed params.yaml settings for the embedded dataset (train section shared by all methods).
TRAIN = {"batch_size": 64, "lr": 1e-3, "device": "cpu", "eval_batch_size": 256}
EMBEDDED = {
    "cca": {"solver": "svd", "n_components": 24},
    "lcfs": {},
    "jfssl": {},
    "dcca": {"hidden": [256, 256], "out_dim": 10, "activation": "relu"},
    "dscmr": {"hidden": 256, "common_dim": 128},
    "scml": {"hidden": 256},
    "vilbert": {"d_model": 64, "heads": 4, "d_ff": 128, "layers": 1, "co_layers": 1},
}


def embedded_data(data_dir: Path, dim: int = 256, regions: int = 36, seed: int = 0) -> RetrievalData:
    """The embedded table and text with RoI features synthesised from the ground-truth boxes."""
    table = read_table(data_dir / "table.parquet")
    text = TextData.load(data_dir / "text")
    rng = np.random.default_rng(seed)
    n_labels = len(label_names(table))
    n_det = n_labels + 8
    protos = rng.normal(size=(n_det, dim)).astype(np.float32)
    box_labels = table.column("box_labels").to_pylist()
    n = table.num_rows
    classes = rng.integers(n_labels, n_det, (n, regions)).astype(np.int32)
    for i, objects in enumerate(box_labels):
        k = min(len(objects), regions)
        classes[i, :k] = objects[:k]
    features = (protos[classes] + 1.0 * rng.standard_normal((n, regions, dim), dtype=np.float32)).astype(np.float16)
    xy = rng.uniform(0, 0.5, (n, regions, 2))
    wh = rng.uniform(0.1, 0.5, (n, regions, 2))
    positions = np.concatenate([xy, xy + wh, wh[..., :1] * wh[..., 1:]], -1).astype(np.float32)
    return RetrievalData(table, FakeFeatureStore(features, positions, classes, n_det), text,
                         cache_splits=("train", "val"))


def embedded(args) -> str:
    data = embedded_data(Path(args.data))
    rows = []
    for name in args.methods:
        params = validate({"train": {**TRAIN, "epochs": args.epochs}, "methods": {name: EMBEDDED[name]}})
        with tempfile.TemporaryDirectory() as tmp:
            wall, cpu = time.perf_counter(), time.process_time()
            result = train_method(name, params, data, Path(tmp) / "m", Path(tmp) / "h.json", dataset="bench",
                                  progress=False, log=lambda m: None)
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        per_epoch = np.mean([h["seconds"] for h in result.history])
        rows.append(f"| {name} | `{EMBEDDED[name]}` | {result.epochs_done} | {wall:.1f} | {cpu:.1f} | {per_epoch:.2f} | "
                    f"{result.best_value:.1f} ({result.best_epoch}) |")
        print(rows[-1], flush=True)
    load = os.getloadavg()[0]
    return "\n".join([
        "### Baselines: whole runs on the embedded data (`bench/baselines.py embedded`)", "",
        f"Shared train section: {TRAIN}, epochs {args.epochs}; torch threads {torch.get_num_threads()}. "
        f"Data: the embedded table and text (8,000 training pairs, 1,000 validation captions of 200 images), "
        f"RoI features synthesised from the ground-truth boxes (36 x 256-d). Load average at the end: {load:.1f} "
        f"on 2 cores (shared with other jobs), so wall times are inflated; CPU seconds are this process's.", "",
        "| method | methods.<name> | epochs (1 = closed-form fit) | wall s | CPU s | s per epoch (incl. validation) | best val NDCG (epoch) |",
        "|---|---|---|---|---|---|---|", *rows, ""])


def cca(args) -> str:
    from sklearn.cross_decomposition import CCA

    from pipeline.models.baselines.cca import closed_form_cca

    rng = np.random.default_rng(0)
    z = rng.normal(size=(args.pairs, 10))
    x = np.hstack([z, rng.normal(size=(args.pairs, args.dim - 10))]) @ rng.normal(size=(args.dim, args.dim)) / np.sqrt(args.dim)
    y = np.hstack([z + 0.5 * rng.normal(size=z.shape), rng.normal(size=(args.pairs, 290))])
    x, y = (x - x.mean(0)) / x.std(0, ddof=1), (y - y.mean(0)) / y.std(0, ddof=1)
    out = {}
    for solver in ("svd", "sklearn"):
        wall, cpu = time.perf_counter(), time.process_time()
        if solver == "svd":
            a1, a2 = closed_form_cca(x, y, args.components, 1e-4)
        else:
            m = CCA(n_components=args.components, scale=False).fit(x, y)
            a1, a2 = m.x_rotations_, m.y_rotations_
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        corr = [np.corrcoef(x @ a1[:, j], y @ a2[:, j])[0, 1] for j in range(args.components)]
        out[solver] = (wall, cpu, corr)
        print(solver, wall, cpu, np.round(corr, 3), flush=True)
    ratio_w, ratio_c = out["sklearn"][0] / out["svd"][0], out["sklearn"][1] / out["svd"][1]
    diff = np.max(np.abs(np.array(out["sklearn"][2]) - np.array(out["svd"][2])))
    return "\n".join([
        f"### CCA solvers: {args.pairs:,} pairs, {args.dim}-d image x 300-d text, {args.components} components "
        f"(`bench/baselines.py cca`)", "",
        "| solver | wall s | CPU s | first / last canonical correlation |", "|---|---|---|---|",
        *[f"| {k} | {v[0]:.2f} | {v[1]:.2f} | {v[2][0]:.3f} / {v[2][-1]:.3f} |" for k, v in out.items()], "",
        f"Closed form faster by {ratio_w:.0f}x wall / {ratio_c:.0f}x CPU in this run; largest difference of the "
        f"canonical correlations {diff:.1e}. Load average {os.getloadavg()[0]:.1f} on 2 cores (shared).", ""])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("mode", choices=("embedded", "cca"))
    ap.add_argument("--methods", nargs="+", default=list(EMBEDDED), choices=list(EMBEDDED))
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--data", default=str(ROOT / "data" / "shapes"))
    ap.add_argument("--pairs", type=int, default=2000)
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--components", type=int, default=10)
    ap.add_argument("--record", type=Path)
    args = ap.parse_args()
    if args.threads:  # torch and the BLAS under numpy/scipy (a shared machine thrashes with more threads)
        from threadpoolctl import threadpool_limits
        torch.set_num_threads(args.threads)
        threadpool_limits(args.threads)
    text = embedded(args) if args.mode == "embedded" else cca(args)
    header = ("Machine: 2-core CPU sandbox, no GPU. Date: 2026-11-22. "
              f"torch {torch.__version__}, numpy {np.__version__}, threads (torch and BLAS) {args.threads or 'default'}.\n")
    print(header + text)
    if args.record:
        with open(args.record, "a") as f:
            f.write("\n" + header + "\n" + text)


if __name__ == "__main__":
    main()
