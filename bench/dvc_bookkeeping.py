"""DVC's bookkeeping around one stage: what `dvc repro` costs beyond the stage's own command.

    python bench/dvc_bookkeeping.py --project DIR [--project DIR2 ...] [--stage train_jfssl@shapes] [--repeats 2]

Each DIR is a project where the main job has run (a fresh clone after `make repro`, or a copy of one:
the stage is forced, so its outputs are rewritten). For each, in one run: the lines of dvc.lock, the
stage's command alone, and `dvc repro -f --single-item <stage>` with ruamel.yaml's C parser and with its
pure-Python parser (DVC uses the C one for its plain loads when `ruamel.yaml.clib` is installed; the
round-trip load and the dump it does around every stage are pure Python either way). Bookkeeping =
repro minus the command. Medians of --repeats.
"""
from __future__ import annotations

import argparse
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import yaml

# `dvc` with the C parser hidden: ruamel.yaml falls back to its pure-Python loader.
PURE_PYTHON_DVC = ("import sys; sys.modules['_ruamel_yaml'] = None; from dvc.cli import main; "
                   "sys.exit(main(sys.argv[1:]))")


def _seconds(cmd: list[str], cwd: Path, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run(cmd, cwd=cwd, check=True, capture_output=True, text=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def measure(project: Path, stage: str, repeats: int) -> dict:
    lock = project / "dvc.lock"
    name, _, item = stage.partition("@")
    body = yaml.safe_load((project / "dvc.yaml").read_text())["stages"][name]
    command = (body.get("do", body)["cmd"]).replace("${item}", item)
    repro = ["repro", "-f", "--single-item", stage]
    return {
        "project": str(project),
        "lock_lines": len(lock.read_text().splitlines()),
        "lock_stages": len(yaml.safe_load(lock.read_text())["stages"]),
        "command": _seconds(shlex.split(command), project, repeats),
        "repro_c": _seconds(["dvc", *repro], project, repeats),
        "repro_python": _seconds([sys.executable, "-c", PURE_PYTHON_DVC, *repro], project, repeats),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--project", type=Path, action="append", required=True)
    ap.add_argument("--stage", default="train_jfssl@shapes")
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    print(f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, {platform.machine()}, {os.cpu_count()} CPUs, "
          f"load {' '.join(f'{x:.2f}' for x in os.getloadavg())}; stage {args.stage}, median of {args.repeats}\n")
    print("| project | dvc.lock lines (stages) | command s | repro s, C parser | bookkeeping s, C | "
          "repro s, Python parser | bookkeeping s, Python |")
    print("|---|---|---|---|---|---|---|")
    for project in args.project:
        r = measure(project.resolve(), args.stage, args.repeats)
        print(f"| {project} | {r['lock_lines']:,} ({r['lock_stages']}) | {r['command']:.1f} | {r['repro_c']:.1f} | "
              f"{r['repro_c'] - r['command']:.1f} | {r['repro_python']:.1f} | {r['repro_python'] - r['command']:.1f} |",
              flush=True)


if __name__ == "__main__":
    main()
