"""Frozen splits: one JSON file per dataset (under `splits/` by default) listing the image ids of train,
val and test, so every run and every user sees the same split.

Where a split can only be computed from the downloaded annotations, the rule is deterministic and
independent of library versions: eligible ids are ordered by sha256("<seed>:<id>"); the first n_test
are test, the next n_val val, the rest train. The first prepare writes the file; later prepares read
it, check its content hash (an edited file is an error) and check its ids against the data.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Callable, Iterable

from pipeline.data.table import SPLITS
from pipeline.io import write_json

FORMAT = 1


class SplitError(ValueError):
    """A split file is malformed, was edited, or does not match the dataset."""


def hashed_order(ids: Iterable[int], seed: int) -> list[int]:
    """`ids` sorted by sha256 of "<seed>:<id>": a seeded shuffle that no library version can change."""
    return sorted(ids, key=lambda i: hashlib.sha256(f"{seed}:{i}".encode()).digest())


def seeded_split(ids: Iterable[int], n_val: int, n_test: int, seed: int) -> dict[str, list[int]]:
    """Test = first n_test of the hashed order, val = next n_val, train = the rest (each sorted)."""
    order = hashed_order(ids, seed)
    if n_val < 0 or n_test < 0 or n_val + n_test >= len(order):
        raise SplitError(f"cannot take {n_test} test and {n_val} val images out of {len(order)} eligible images "
                         f"(parameters n_val / n_test)")
    return {"train": sorted(order[n_val + n_test:]), "val": sorted(order[n_test:n_test + n_val]),
            "test": sorted(order[:n_test])}


def content_hash(splits: dict[str, list[int]]) -> str:
    canonical = json.dumps({k: list(splits[k]) for k in SPLITS if k in splits}, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def write_split(path: str | Path, dataset: str, rule: str, splits: dict[str, list[int]], info: dict) -> None:
    write_json(path, {"format": FORMAT, "dataset": dataset, "rule": rule, "info": info,
                      "counts": {k: len(v) for k, v in splits.items()},
                      "sha256": content_hash(splits), "splits": splits})


def read_split(path: str | Path, dataset: str) -> dict[str, list[int]]:
    """Read a split file and verify its content hash."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise SplitError(f"{path}: split file is not valid JSON ({exc})") from exc
    if not isinstance(doc, dict) or doc.get("format") != FORMAT or not isinstance(doc.get("splits"), dict):
        raise SplitError(f"{path}: not a split file of format {FORMAT} (expected keys format, dataset, splits, sha256)")
    if doc.get("dataset") != dataset:
        raise SplitError(f"{path}: split file is for dataset kind '{doc.get('dataset')}', expected '{dataset}'")
    splits = doc["splits"]
    bad = sorted(set(splits) - set(SPLITS))
    if bad:
        raise SplitError(f"{path}: 'splits' holds the split {bad[0]!r}; expected only {', '.join(SPLITS)}")
    if not all(isinstance(v, list) and all(isinstance(i, int) for i in v) for v in splits.values()):
        raise SplitError(f"{path}: 'splits' must map {', '.join(SPLITS)} to lists of integer ids")
    if content_hash(splits) != doc.get("sha256"):
        raise SplitError(f"{path}: the split lists do not match the file's sha256 (the file was edited); restore it "
                         f"from git, or delete it to recompute the split from its rule")
    seen: dict[int, str] = {}
    for name, ids in splits.items():
        for i in ids:
            if i in seen:
                raise SplitError(f"{path}: image id {i} is in both '{seen[i]}' and '{name}'")
            seen[i] = name
    return splits


def frozen_split(path: str | Path, dataset: str, rule: str, compute: Callable[[], dict[str, list[int]]],
                 eligible: set[int], info: dict) -> tuple[dict[int, str], bool]:
    """Image id -> split from the frozen file at `path`, computing and writing it on first use.

    Every listed id must be eligible and every eligible id listed: a mismatch means the annotations
    differ from those the split was made from. Returns the mapping and whether the file was written.
    """
    path = Path(path)
    created = False
    if path.is_file():
        splits = read_split(path, dataset)
    else:
        splits = compute()
        write_split(path, dataset, rule, splits, info)
        created = True
    assignment = {i: name for name, ids in splits.items() for i in ids}
    unknown = sorted(set(assignment) - eligible)
    missing = sorted(eligible - set(assignment))
    if unknown or missing:
        raise SplitError(f"{path}: the frozen split does not match the data: {len(unknown)} listed ids are not eligible "
                         f"(e.g. {unknown[:3]}), {len(missing)} eligible ids are unlisted (e.g. {missing[:3]}); the "
                         f"annotations or the eligibility parameters differ from the ones the split was made with")
    return assignment, created


def file_sha256(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()
