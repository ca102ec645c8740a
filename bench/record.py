"""The one way a benchmark reports: print its section, and append it to `reports/benchmarks.md` (or the
file `--record` names) so the numbers and the machine they were measured on stay together."""
from __future__ import annotations

from pathlib import Path


def emit(text: str, record: str | Path | None = None) -> None:
    print(text)
    if record:
        with open(record, "a") as f:
            f.write("\n" + text)
