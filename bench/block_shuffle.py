"""Does block shuffling cost accuracy? Validation curves of one training run per epoch order (issue 24 item 2).

    python bench/block_shuffle.py --dataset shapes --data-dir /path/to/data [--methods ss] [--windows 16 64]
                                  [--seeds 0 1 2] [--params params.yaml]
                                  [--out /tmp/xmr-block-shuffle] [--record reports/benchmarks.md]

A streamed epoch visits the captions block-shuffled (`pipeline.training.order`: the store's inner chunks in
a seeded order, then the captions of `window` consecutive chunks shuffled together), so that a window is read
once, whole; a cached epoch is a plain permutation. This bench trains each method on a built dataset
(`data/<ds>/` of a finished main job, params.yaml's settings for it: cap, patience, recipe) once per order:

- `uniform`: the plain permutation (what the cache gives);
- `blocks, window W` for each of `--windows` (in chunks; default: the shipped window, `WINDOW_IMAGES`
  images' worth, and 16, the window shipped before it; 1 is the harshest: one chunk's captions at a time).
  On `shapes` the shipped window holds more images than the training split, so it orders like `uniform`.

The features stay in memory in every run (only the order differs), so a run costs what a cached run costs.
The table gives each run's validation curve on the metric the report judges it by, its best value and
epoch, and the difference to `uniform` with the same seed (the order's effect plus the noise of one
reordering); with several `--seeds`, the mean and std of those paired differences. Models and histories
go under `--out` (a rerun reuses finished runs).
"""
from __future__ import annotations

import argparse
import datetime
import functools
import os
import platform
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from record import emit  # noqa: E402

from pipeline.params import load_params  # noqa: E402
from pipeline.reporting.convergence import convergence  # noqa: E402
from pipeline.training import loop  # noqa: E402
from pipeline.training.data import RetrievalData  # noqa: E402
from pipeline.training.order import epoch_windows, window_blocks  # noqa: E402

DEFAULT_BLOCK_ROWS = 8  # the store's inner chunk at COCO size, when the built store has no inner chunks


def train_in_order(method: str, window: int | None, block_rows: int, seed: int, data: RetrievalData,
                   args) -> list[dict]:
    """The history of `method` trained with seed `seed` and epochs in one order (`window` None: uniform)."""
    params = load_params(Path(args.params))
    params["train"].update(threads=1, device="cpu")
    params["seed"] = seed
    rows = None if window is None else block_rows
    name = (f"{method}-uniform" if window is None else f"{method}-w{window}") + (f"-s{seed}" if seed else "")
    out = Path(args.out) / args.dataset / name
    original = (RetrievalData.stream_block_rows, loop.epoch_windows)
    RetrievalData.stream_block_rows = lambda self, captions: rows
    loop.epoch_windows = functools.partial(epoch_windows, window=window)
    try:
        return loop.train_method(method, params, data, out, out.with_suffix(".json"), dataset=args.dataset,
                                 progress=False, log=lambda m: print(m, flush=True)).history
    finally:
        RetrievalData.stream_block_rows, loop.epoch_windows = original


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="shapes")
    parser.add_argument("--data-dir", default="data")
    parser.add_argument("--methods", nargs="+", default=["ss"])
    parser.add_argument("--out", default="/tmp/xmr-block-shuffle")
    parser.add_argument("--windows", type=int, nargs="+", default=None,
                        help="block orders to compare with uniform: chunks whose captions are shuffled together "
                             "(default: the shipped window and 16)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0],
                        help="training seeds: each order runs with each, and the differences are paired by seed")
    parser.add_argument("--record", default=None)
    parser.add_argument("--params", default=str(ROOT / "params.yaml"),
                        help="the params file whose settings for --dataset train each run (a dataset outside the "
                             "main job, e.g. bench/scale.py's synthetic one, needs its own entry)")
    args = parser.parse_args()
    data = RetrievalData.open(args.data_dir, args.dataset, cache_splits=("train", "val"), progress=False,
                              log=lambda m: None)
    block_rows = int(getattr(data.store, "inner_chunk_rows", None) or DEFAULT_BLOCK_ROWS)
    windows = args.windows or [window_blocks(block_rows), 16]
    orders = {"uniform": None, **{f"blocks, window {w}": w for w in windows}}
    lines, summary = [], []
    for method in args.methods:
        gaps: dict[str, list[float]] = {name: [] for name in orders}
        for seed in args.seeds:
            base = None
            for name, window in orders.items():
                history = train_in_order(method, window, block_rows, seed, data, args)
                c = convergence(method, history)
                if not c.metric:
                    raise SystemExit(f"{method}: closed form, it has no epochs to order")
                curve = " ".join(f"{e[c.metric]:.1f}" for e in history)
                base = c.best if base is None else base
                gaps[name].append(c.best - base)
                lines.append(f"| `{method}` | {seed} | {name} | {c.metric.removeprefix('val_')} | {curve} | "
                             f"{c.best:.2f} (epoch {c.best_epoch}) | {c.best - base:+.2f} |")
                print(lines[-1], flush=True)
        for name, values in list(gaps.items())[1:]:
            spread = f" ± {statistics.stdev(values):.2f}" if len(values) > 1 else ""
            summary.append(f"| `{method}` | {name} | {statistics.mean(values):+.2f}{spread} (n={len(values)}) |")
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    emit("\n".join([
        f"### Block shuffling and accuracy on `{args.dataset}` (`bench/block_shuffle.py`)", "",
        f"2-core CPU sandbox ({platform.machine()}), {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} "
        f"UTC, load average at the end {load}; {Path(args.params).name}'s settings for `{args.dataset}`, one "
        f"torch thread, "
        f"blocks of {block_rows} rows (the store's inner chunk). Curve: the validation metric per epoch, "
        f"until the run stopped (cap or patience).", "",
        "| method | seed | epoch order | metric | validation curve | best | vs uniform, same seed |",
        "|---|---|---|---|---|---|---|", *lines, "",
        "| method | epoch order | best vs uniform: mean ± std over seeds |", "|---|---|---|", *summary, ""]),
        args.record)


if __name__ == "__main__":
    main()
