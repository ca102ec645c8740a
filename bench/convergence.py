"""How many epochs does a method need before its validation metric stops rising? (issue 14 item 5, issue 27)

    python bench/convergence.py ss dual_path [--epochs 12] [--images 2000] [--threads 1]
                                [--record reports/benchmarks.md]
    python bench/convergence.py ss scml --dataset shapes --data-dir /path/to/data --out /tmp/conv
                                [--epochs 15] [--patience 2] [--record reports/benchmarks.md]

With `--dataset`, the second mode: each method trains on that dataset's built data (`data/<ds>/` of a
finished main job) with params.yaml's settings, except `per_dataset.<ds>.train` epochs and patience
(`--epochs`, the cap; `--patience`, the stopping rule of `pipeline.training.plateau`; a method's own
`epochs` override is dropped, a recipe's epochs stay its cap), and the table gives per method the epoch
where it stopped and why, its best epoch on the validation curve, seconds per epoch of training and of
validation, and the total. Models and histories go under `--out` (a rerun resumes or reuses them).

Trains each named method with its params.yaml settings (the `train` section and `methods.<m>`; only
`train.epochs` is replaced by `--epochs`, and patience is off) on synthetic data shaped like the embedded
`shapes` dataset (`bench/train.py`'s generator: `--images` images, 5 captions each, 36 RoIs x 256-d, 24
labels; 10% validation, 10% test), and prints its validation curve on the metric that selects its model,
the epoch where it peaks, and the first epoch within the report's tolerance of that peak
(`pipeline.reporting.convergence`). The data are a stand-in: the real shapes features are DVC outputs that
a fresh checkout does not have, and a synthetic set's curve is not shapes' curve; the numbers say how
many epochs of shapes-sized training a method's curve takes to flatten on data of this kind.

Cost: per epoch about as long as a method's embedded epoch (`reports/training/shapes/<m>.json` `seconds`)
times the thread ratio; ss at 2,000 images is about 20 s an epoch on one core.
"""
from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / "tests"))

from record import emit  # noqa: E402
from train import synthetic  # noqa: E402  (bench/train.py's shapes-shaped generator)

from pipeline.params import load_params  # noqa: E402
from pipeline.reporting.convergence import convergence  # noqa: E402
from pipeline.training.data import RetrievalData  # noqa: E402
from pipeline.training.loop import train_method  # noqa: E402
from pipeline.training.plateau import TOLERANCE, tolerance  # noqa: E402
from pipeline.training.schema import method_train_settings  # noqa: E402


def curve_of(method: str, args) -> tuple[list[dict], float]:
    params = load_params(ROOT / "params.yaml")
    params["train"].update(epochs=args.epochs, patience=0, threads=args.threads, device="cpu")
    params["methods"][method].setdefault("train", {}).pop("epochs", None)   # the bench's epochs for every method
    held_out = args.images // 10
    data = RetrievalData(*synthetic(args.images, 5, 36, 256, 12, 24, 120, held_out, held_out, seed=args.seed),
                         cache_splits=("train", "val"))
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        result = train_method(method, params, data, Path(tmp) / "m", Path(tmp) / "h.json", dataset="bench",
                              progress=False, log=lambda m: None)
        return result.history, time.perf_counter() - t0


def row(method: str, history: list[dict], wall: float) -> str:
    c = convergence(method, history)
    values = [e[c.metric] for e in history]
    flat = next(e["epoch"] for e, v in zip(history, values) if v >= c.best - tolerance(c.metric))
    curve = " ".join(f"{v:.1f}" for v in values)
    return (f"| `{method}` | {c.metric.removeprefix('val_')} | {curve} | {c.best_epoch} | {flat} | {c.status} at "
            f"{len(values)} | {wall:.0f} s |")


def dataset_run(method: str, args) -> tuple[dict, list[dict], float]:
    """Train `method` on `args.dataset`'s built data with the cap and patience of `args`; returns its loop
    settings, its history and the wall seconds of this call (about 0 when a finished run was reused)."""
    params = load_params(ROOT / "params.yaml")
    layer = params.setdefault("per_dataset", {}).setdefault(args.dataset, {})
    layer["train"] = {**layer.get("train", {}), "epochs": args.epochs, "patience": args.patience,
                      "threads": args.threads, "device": "cpu"}
    for section in (params["methods"].get(method, {}), (layer.get("methods") or {}).get(method, {})):
        section.get("train", {}).pop("epochs", None)
        section.get("train", {}).pop("patience", None)
    data = RetrievalData.open(args.data_dir, args.dataset, cache_splits=("train", "val"), progress=False,
                              log=lambda m: None)
    out = Path(args.out) / args.dataset
    t0 = time.perf_counter()
    result = train_method(method, params, data, out / method, out / f"{method}.json", dataset=args.dataset,
                          progress=False, log=lambda m: print(m, flush=True))
    return method_train_settings(params, method, args.dataset), result.history, time.perf_counter() - t0


def dataset_row(method: str, settings: dict, history: list[dict]) -> str:
    c = convergence(method, history)
    seconds = [e["seconds"] for e in history]
    val = [e.get("validate_seconds") or 0.0 for e in history]
    n = len(history)
    why = ("closed form" if c.status == "closed form" else
           "cap" if n >= settings["epochs"] else f"patience {settings['patience']}")
    train_s, val_s = (sum(seconds) - sum(val)) / n, sum(val) / n
    return (f"| `{method}` | {c.metric.removeprefix('val_') or '-'} | {n} ({why}) | {c.best_epoch or '-'} | "
            f"{c.status} | {train_s:.1f} | {val_s:.1f} | {sum(seconds):.0f} |")


def dataset_main(args) -> None:
    rows = []
    for m in args.methods:
        settings, history, wall = dataset_run(m, args)
        rows.append(dataset_row(m, settings, history))
        print(rows[-1], f"(wall {wall:.0f} s)", flush=True)
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    emit("\n".join([
        f"### Epochs to converge on `{args.dataset}` (`bench/convergence.py --dataset {args.dataset}`)", "",
        f"2-core CPU sandbox ({platform.machine()}), {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} "
        f"UTC, load average at the end {load} (shared machine), {args.threads} torch thread(s); params.yaml "
        f"with `per_dataset.{args.dataset}.train` epochs {args.epochs} (the cap; a recipe's own epochs stay "
        f"its cap) and patience {args.patience} (`pipeline.training.plateau`: an epoch improves when it beats "
        f"the best earlier one by more than {TOLERANCE:.1%} of the metric's range). Stopped: epochs trained "
        f"and why; best: the best epoch of the validation curve; seconds per epoch: training (with the "
        f"method's after-epoch pass) and validation; total: every epoch's seconds.", "",
        "| method | curve | stopped | best | status | train s/epoch | val s/epoch | total s |",
        "|---|---|---|---|---|---|---|---|", *rows, ""]), args.record)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("methods", nargs="+")
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--record", default=None)
    parser.add_argument("--dataset", default=None, help="train on this dataset's built data (second mode)")
    parser.add_argument("--data-dir", default="data")
    parser.add_argument("--out", default="/tmp/xmr-convergence")
    parser.add_argument("--patience", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.dataset:
        return dataset_main(args)
    rows = [row(m, *curve_of(m, args)) for m in args.methods]
    emit("\n".join([
        "### Epochs to converge on shapes-shaped synthetic data (`bench/convergence.py`)", "",
        f"2-core CPU sandbox ({platform.machine()}), {datetime.date.today()}, {args.threads} torch thread(s); "
        f"{args.images} synthetic "
        f"images x 5 captions (80% train), params.yaml settings with `--epochs {args.epochs}`. Peak: the epoch "
        f"with the best validation value; flat from: the first epoch within the report's tolerance "
        f"({TOLERANCE:.1%} of the metric's range) of the peak.", "",
        "| method | metric | validation curve by epoch | peak | flat from | status | wall |",
        "|---|---|---|---|---|---|---|", *rows, ""]), args.record)


if __name__ == "__main__":
    main()
