"""Benchmark: what a training process pays to build and step its optimiser, torch.optim against
`pipeline.training.optimizers`, in one run.

Each sample is a new Python process that imports torch, builds Adam over a small model through the one
or the other, takes one step and exits: the process cost the main job pays once per training stage (37
iterative trainings). The two kinds alternate so that both see the same machine state; the medians and the
difference are printed as a Markdown section (`--record FILE` appends it). A process that only imports torch
is the floor.

    python bench/optimizer_import.py [--repeats 7] [--record reports/benchmarks.md]
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from pipeline.machine import cpu_model  # noqa: E402
from record import emit  # noqa: E402  bench/record.py: print and append to reports/benchmarks.md

STEP = ("m = torch.nn.GRU(8, 8)\n"
        "opt = {cls}([{{'params': list(m.parameters()), 'lr_mult': 1.0}}], lr=1e-3)\n"
        "m(torch.ones(2, 1, 8))[0].sum().backward()\n"
        "opt.step()\n"
        "assert ('torch._dynamo' in sys.modules) == {dynamo}\n")
KINDS = {
    "import torch only (floor)": "import sys, torch\n",
    "torch.optim.Adam": "import sys, torch\n" + STEP.format(cls="torch.optim.Adam", dynamo=True),
    "pipeline.training.optimizers.Adam": "import sys, torch\nfrom pipeline.training.optimizers import Adam\n"
                                         + STEP.format(cls="Adam", dynamo=False),
}


def sample(code: str) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[1])
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--record", help="append the section to this file (reports/benchmarks.md)")
    args = parser.parse_args()
    for code in KINDS.values():
        sample(code)  # warm the page cache
    times: dict[str, list[float]] = {name: [] for name in KINDS}
    for _ in range(args.repeats):
        for name, code in KINDS.items():
            times[name].append(sample(code))
    median = {name: statistics.median(t) for name, t in times.items()}
    floor = median["import torch only (floor)"]
    lines = [f"## Optimiser without torch._dynamo ({datetime.now(timezone.utc):%Y-%m-%d})", "",
             f"`python bench/optimizer_import.py --repeats {args.repeats}`: {cpu_model()}, {os.cpu_count()} CPUs, "
             f"Python {platform.python_version()}, torch {__import__('torch').__version__}; a new process per "
             "sample, the kinds alternating.", "",
             "| process | median s | above the floor s |", "|---|---|---|"]
    lines += [f"| {name} | {median[name]:.2f} | {median[name] - floor:.2f} |" for name in KINDS]
    saved = median["torch.optim.Adam"] - median["pipeline.training.optimizers.Adam"]
    lines += ["", f"Saved per training process: {saved:.2f} s; over the main job's 37 iterative trainings "
              f"{37 * saved:.0f} s of CPU, about {37 * saved / 2:.0f} s of wall time on 2 busy cores."]
    emit("\n".join(lines) + "\n", args.record)


if __name__ == "__main__":
    main()
