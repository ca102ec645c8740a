"""DVC overhead of the whole stage graph: `dvc status`, a no-op `dvc repro`, and a lambda experiment
against a full reproduction.

    python bench/pipeline_overhead.py [--datasets 3] [--repeats 3] [--workdir DIR] [--record reports/benchmarks.md]

The project is tests/tiny_project.py's copy of this repository's pipeline with every method of
params.yaml on `--datasets` 40-image shapes datasets (one epoch), so the stage graph is the real
one (5 data stages per dataset, train + evaluate per dataset x method, the report) while each
stage's own work is small: the times are DVC's bookkeeping plus one `xmr` process per stage.
Measured, in one run:
  full      the first `dvc repro` (every stage)
  status    `dvc status` on the reproduced project (median of --repeats)
  noop      `dvc repro` with nothing to do (median of --repeats)
  lambda    `dvc exp run -S lambda=0.1` from lambda 0.05: the lambda methods' train and evaluate
            stages and the report re-run, everything else is cached
"""
from __future__ import annotations

import argparse
import platform
import statistics
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from tiny_project import commit, create_project, dvc, ran, tiny_params  # noqa: E402


def timed(args, project: Path) -> tuple[float, str]:
    t0 = time.perf_counter()
    out = dvc(args, project).stdout
    return time.perf_counter() - t0, out


def median_time(args, project: Path, repeats: int) -> float:
    return statistics.median(timed(args, project)[0] for _ in range(repeats))


def measure(workdir: Path, n_datasets: int, repeats: int) -> dict:
    datasets = ["shapes"] + [f"shapes_{i}" for i in range(2, n_datasets + 1)]

    def edit(params: dict) -> None:
        tiny_params(params, datasets)
        params["lambda"] = 0.05

    project = create_project(workdir / "project", edit)
    print(f"project: {project}", flush=True)
    full, out = timed(["repro"], project)
    stages = len(ran(out))
    print(f"full repro: {stages} stages in {full:.1f} s", flush=True)
    commit(project, "tiny pipeline")
    status = median_time(["status"], project, repeats)
    noop = median_time(["repro"], project, repeats)
    print(f"status {status:.2f} s, no-op repro {noop:.2f} s", flush=True)
    lam, out = timed(["exp", "run", "-S", "lambda=0.1"], project)
    rerun = sorted(ran(out))
    print(f"lambda experiment: {len(rerun)} stages in {lam:.1f} s", flush=True)
    return {"datasets": n_datasets, "stages": stages, "full_s": full, "status_s": status, "noop_s": noop,
            "lambda_s": lam, "lambda_stages": len(rerun), "repeats": repeats}


def table(r: dict) -> str:
    rows = [
        ("full `dvc repro` (every stage)", r["stages"], r["full_s"], 1.0),
        ("`dvc status`, nothing changed", 0, r["status_s"], r["status_s"] / r["full_s"]),
        ("no-op `dvc repro`", 0, r["noop_s"], r["noop_s"] / r["full_s"]),
        ("`dvc exp run -S lambda=0.1`", r["lambda_stages"], r["lambda_s"], r["lambda_s"] / r["full_s"]),
    ]
    lines = ["| command | stages run | s | / full repro |", "|---|---|---|---|"]
    lines += [f"| {name} | {n} | {s:.2f} | {ratio:.3f} |" for name, n, s, ratio in rows]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--datasets", type=int, default=3, help="number of 40-image shapes datasets")
    ap.add_argument("--repeats", type=int, default=3, help="timings of status / no-op repro (median)")
    ap.add_argument("--workdir", type=Path, default=None, help="where the project is built (default: a temp dir)")
    ap.add_argument("--record", type=Path, default=None, help="append the result table to this markdown file")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        r = measure(Path(tmp), args.datasets, args.repeats)
    text = (f"\n### `python bench/pipeline_overhead.py --datasets {args.datasets}` ({date.today()}, "
            f"{platform.machine()}, {platform.python_version()})\n\n"
            f"{r['stages']} stages: {args.datasets} datasets x (5 data stages + train and evaluate per method) + report.\n\n"
            f"{table(r)}\n")
    print(text)
    if args.record:
        with args.record.open("a") as f:
            f.write(text)


if __name__ == "__main__":
    main()
