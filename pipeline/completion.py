"""Completion records: a model directory is finished only when its record is written, last.

Training removes the record before it writes anything into the directory and writes it after the
last file, listing each finished file with its size and SHA-256. A directory without a record (a
killed or failed run), or whose files no longer match it, is unfinished: `evaluate`, `report` and a
resumed training refuse it with a message naming the directory, instead of scoring an epoch-1 model
left behind as if it were the result.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

from pipeline.io import write_json

RECORD_FILE = "complete.json"


class IncompleteOutput(ValueError):
    """A directory whose producing run did not finish."""


def _sha256(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def clear_complete(directory: str | Path) -> None:
    """Mark `directory` unfinished: call before the first write into it."""
    (Path(directory) / RECORD_FILE).unlink(missing_ok=True)


def mark_complete(directory: str | Path, files: list[str]) -> None:
    """Record `files` of `directory` (names) as the finished output: call after the last write."""
    directory = Path(directory)
    write_json(directory / RECORD_FILE, {"files": {name: {"bytes": (directory / name).stat().st_size,
                                                          "sha256": _sha256(directory / name)}
                                                   for name in files}})


def is_complete(directory: str | Path) -> bool:
    try:
        require_complete(directory)
    except IncompleteOutput:
        return False
    return True


def require_complete(directory: str | Path, rerun: str = "rerun the stage that writes it") -> None:
    """Raise IncompleteOutput naming `directory` unless its record exists and its files match it."""
    directory = Path(directory)
    record = directory / RECORD_FILE
    if not record.is_file():
        raise IncompleteOutput(f"{directory}: unfinished (no {RECORD_FILE}: the run that wrote it was "
                               f"interrupted or failed); {rerun}")
    try:
        files = json.loads(record.read_text())["files"]
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise IncompleteOutput(f"{record}: unreadable completion record; {rerun}") from exc
    for name, want in files.items():
        path = directory / name
        if not path.is_file() or path.stat().st_size != want["bytes"] or _sha256(path) != want["sha256"]:
            raise IncompleteOutput(f"{directory}: '{name}' is missing or differs from what the finished run "
                                   f"recorded in {RECORD_FILE}; {rerun}")
