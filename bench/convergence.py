"""How many epochs does a method need before its validation metric stops rising? (issue 14 item 5)

    python bench/convergence.py ss dual_path [--epochs 12] [--images 2000] [--threads 1]
                                [--record reports/benchmarks.md]

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
from pipeline.reporting.convergence import METRIC_RANGE, DEFAULT_RANGE, TOLERANCE, convergence  # noqa: E402
from pipeline.training.data import RetrievalData  # noqa: E402
from pipeline.training.loop import train_method  # noqa: E402


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
    tolerance = TOLERANCE * METRIC_RANGE.get(c.metric, DEFAULT_RANGE)
    flat = next(e["epoch"] for e, v in zip(history, values) if v >= c.best - tolerance)
    curve = " ".join(f"{v:.1f}" for v in values)
    return (f"| `{method}` | {c.metric.removeprefix('val_')} | {curve} | {c.selected_epoch} | {flat} | {c.status} at "
            f"{len(values)} | {wall:.0f} s |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("methods", nargs="+")
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--record", default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
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
