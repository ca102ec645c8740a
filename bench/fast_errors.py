"""How long `xmr` takes to report a wrong name or a missing model, against what the old order paid.

    python bench/fast_errors.py [--repeat 5] [--record reports/benchmarks.md]

Each case runs `xmr <args>` as a fresh process (what a user types) and takes the median wall time of
`--repeat` runs. The reference is the work the stages did before they checked the names: importing torch
and the training data layer (`pipeline.training.data`, `pipeline.training.loop`) in a fresh process.
Opening the test split (the old cost of a missing model) comes on top and is not included, so the ratio
is a lower bound for that case.
"""
from __future__ import annotations

import argparse
import datetime
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
CASES = {
    "unknown method": ["train", "shapes", "nope"],
    "unknown dataset": ["train", "nowhere", "ss"],
    "missing model": ["evaluate", "shapes", "ss", "--models-dir", "{empty}"],
}
REFERENCE = [str(BIN / "python"), "-c", "import torch, pipeline.training.data, pipeline.training.loop"]


def wall(cmd: list[str], repeat: int, expect: int) -> float:
    times = []
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}")
    for _ in range(repeat):
        start = time.perf_counter()
        proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
        times.append(time.perf_counter() - start)
        if proc.returncode != expect:
            raise SystemExit(f"{cmd} exited {proc.returncode}, expected {expect}:\n{proc.stderr}")
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--record", type=Path)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as empty:
        rows = [(name, wall([str(BIN / "xmr"), *(a.format(empty=empty) for a in argv)], args.repeat, 2))
                for name, argv in CASES.items()]
    reference = wall(REFERENCE, args.repeat, 0)
    lines = [f"| case | seconds (median of {args.repeat}) | torch + data layer import / this |", "|---|---|---|"]
    lines += [f"| {name} | {t:.2f} | {reference / t:.1f}x |" for name, t in rows]
    lines.append(f"| reference: import torch + training data layer | {reference:.2f} | 1.0x |")
    table = "\n".join(lines)
    print(table)
    if args.record:
        day = datetime.date.today().isoformat()
        with open(args.record, "a") as f:
            f.write(f"\n## Fast errors (`bench/fast_errors.py`, {os.cpu_count()}-core CPU sandbox, {day})\n\n"
                    f"Load average {os.getloadavg()[0]:.1f}; each case is a fresh `xmr` process.\n\n{table}\n")


if __name__ == "__main__":
    main()
