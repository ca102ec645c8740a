"""The main job from a fresh clone, timed stage by stage: what issue 23 item 5 and issue 27 measure.

    python bench/main_job.py --dest ../xmr-fresh [--source .] [--log repro.log]

Clones `--source` (the committed state: commit first) into `--dest`, a sibling of this checkout so that
`../shared` resolves the same way, and runs `make repro` there (the install, then `pipeline/run_plan.py`),
stamping every output line with the seconds since the start. Then it prints, as Markdown: the total, the
install (until the first stage starts), and every stage's seconds (from its "Running stage" line to the
next line of its task that starts a stage or ends the task: DVC's bookkeeping included), summed per
dataset and kind, then one row per stage. `--from-log` re-reads a log written before.
"""
from __future__ import annotations

import argparse
import os
import platform
import re
import subprocess
import sys
import time
from collections import defaultdict
from datetime import datetime, timezone
from pathlib import Path

STAGE = re.compile(r"^(?P<t>[\d.]+) (?:\[(?P<task>[^\]]+)\] )?Running stage '(?P<stage>[^']+)'")
LINE = re.compile(r"^(?P<t>[\d.]+) (?:\[(?P<task>[^\]]+)\] )?")


def run(source: Path, dest: Path, log: Path) -> int:
    subprocess.run(["git", "clone", "-q", str(source), str(dest)], check=True)
    start = time.monotonic()
    with log.open("w") as out:
        proc = subprocess.Popen(["make", "repro"], cwd=dest, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, bufsize=1)
        for line in proc.stdout:
            out.write(f"{time.monotonic() - start:.1f} {line}")
            out.flush()
        code = proc.wait()
        out.write(f"{time.monotonic() - start:.1f} [make] exit {code}\n")
    return code


def stage_seconds(lines: list[str]) -> tuple[float, float, list[tuple[str, float]]]:
    """(total, install, [(stage, seconds)]) from a stamped log."""
    last_of_task: dict[str | None, float] = {}
    started: dict[str | None, tuple[str, float]] = {}
    rows: list[tuple[str, float]] = []
    first_stage = None
    total = 0.0
    for line in lines:
        m = LINE.match(line)
        if not m:
            continue
        t, task = float(m["t"]), m["task"]
        total = max(total, t)
        s = STAGE.match(line)
        if s:
            first_stage = t if first_stage is None else first_stage
            if task in started:
                name, since = started[task]
                rows.append((name, t - since))
            started[task] = (s["stage"], t)
        last_of_task[task] = t
    for task, (name, since) in started.items():
        rows.append((name, last_of_task[task] - since))
    return total, first_stage or 0.0, rows


def kind(stage: str) -> tuple[str, str]:
    name, _, dataset = stage.partition("@")
    part = "train" if name.startswith("train_") and name != "train_detector" else (
        "evaluate" if name.startswith("evaluate_") else name)
    return dataset or "-", part


def table(total: float, install: float, rows: list[tuple[str, float]]) -> str:
    minutes, secs = divmod(round(total), 60)  # whole minutes: 936 s is 15 min 36 s, not "16 min 36 s"
    out = [f"Total {minutes} min {secs} s; install (until the first stage) {install:.0f} s.", "",
           "| dataset | part | stages | seconds (in its task, bookkeeping included) |", "|---|---|---|---|"]
    parts: dict[tuple[str, str], list[float]] = defaultdict(list)
    for stage, seconds in rows:
        parts[kind(stage)].append(seconds)
    out += [f"| {ds} | {part} | {len(v)} | {sum(v):.0f} |" for (ds, part), v in sorted(parts.items())]
    out += ["", "| stage | seconds |", "|---|---|"] + [f"| `{s}` | {v:.0f} |" for s, v in rows]
    return "\n".join(out)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--source", type=Path, default=Path(__file__).resolve().parents[1])
    ap.add_argument("--dest", type=Path)
    ap.add_argument("--log", type=Path, default=None, help="default: <dest>.log")
    ap.add_argument("--from-log", type=Path, help="only tabulate this stamped log")
    args = ap.parse_args()
    code = 0
    log = args.from_log
    if log is None:
        if args.dest is None or args.dest.exists():
            ap.error("--dest: a folder that does not exist yet (the clone goes there)")
        log = args.log or args.dest.with_suffix(".log")
        print(f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, {platform.machine()}, {os.cpu_count()} CPUs, "
              f"load {' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)
        code = run(args.source.resolve(), args.dest.resolve(), log)
        print(f"make repro: exit {code}; load after {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(table(*stage_seconds(log.read_text().splitlines())))
    return code


if __name__ == "__main__":
    sys.exit(main())
