"""Benchmark: the install step of `make repro` / `make test` with each installer, in one run.

For each installer (`make venv INSTALLER=pip`, then `INSTALLER=uv`) it builds a new virtual environment in a
temporary folder from this checkout's `pyproject.toml`, with the installers' caches empty (a fresh
machine: `PIP_NO_CACHE_DIR=1`, `UV_CACHE_DIR` a new folder), and reports the wall time, the CPU time of
the install's processes, the environment's size and its count of byte-compiled files (both installers
must leave every module compiled: without them every stage would compile torch again on import when
`PYTHONDONTWRITEBYTECODE` is set). The physical floor is writing the environment's bytes to disk once.
Prints a Markdown section; `--record FILE` appends it.

    python bench/install.py [--installers pip uv] [--record reports/benchmarks.md]
"""
from __future__ import annotations

import argparse
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from pipeline.machine import cpu_model  # noqa: E402
from record import emit  # noqa: E402  bench/record.py: print and append to reports/benchmarks.md


def child_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def tree_size(root: Path) -> tuple[int, int]:
    """(bytes, .pyc files) under `root`, links not followed."""
    size = pycs = 0
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink():
            size += path.stat().st_size
            pycs += path.suffix == ".pyc"
    return size, pycs


def install(installer: str, work: Path) -> dict:
    venv, cache = work / f"venv-{installer}", work / f"cache-{installer}"
    env = {**os.environ, "PIP_NO_CACHE_DIR": "1", "UV_CACHE_DIR": str(cache)}
    cpu, start = child_cpu_seconds(), time.monotonic()
    subprocess.run(["make", "--no-print-directory", "venv", f"VENV={venv}", f"INSTALLER={installer}"],
                   check=True, env=env, stdout=subprocess.DEVNULL)
    wall, cpu = time.monotonic() - start, child_cpu_seconds() - cpu
    size, pycs = tree_size(venv)
    shutil.rmtree(venv)
    shutil.rmtree(cache, ignore_errors=True)
    return {"installer": installer, "wall": wall, "cpu": cpu, "size": size, "pycs": pycs}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--installers", nargs="+", default=["pip", "uv"], choices=["pip", "uv"])
    parser.add_argument("--record", help="append the section to this file (reports/benchmarks.md)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="xmr-install-") as work:
        rows = [install(name, Path(work)) for name in args.installers]
    first = rows[0]["wall"]
    lines = [f"## Install step, pip against uv ({datetime.now(timezone.utc):%Y-%m-%d})", "",
             f"`python bench/install.py`: {cpu_model()}, {os.cpu_count()} CPUs, Python {platform.python_version()}; "
             "`make venv` into a new environment, empty caches, one after the other in one run.", "",
             "| installer | wall s | CPU s (all processes) | CPU / wall | environment GB | .pyc files | "
             f"wall / {rows[0]['installer']} |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['installer']} | {r['wall']:.1f} | {r['cpu']:.1f} | {r['cpu'] / r['wall']:.2f} | "
                     f"{r['size'] / 1e9:.2f} | {r['pycs']:,} | {r['wall'] / first:.2f} |")
    emit("\n".join(lines) + "\n", args.record)


if __name__ == "__main__":
    main()
