"""Finding a dataset's files inside an extracted folder.

Archives differ in whether they wrap their files in a top folder (and users unpack them by hand in
different ways), so readers look files up by name a few levels deep instead of by a fixed path, and
fail with a message naming the folder when a file is absent or ambiguous.
"""
from __future__ import annotations

import os
from pathlib import Path

MAX_DEPTH = 4


class MissingSourceFileError(FileNotFoundError):
    """An expected dataset file is absent (or present more than once) under a folder."""


def _walk(root: Path, max_depth: int):
    root_depth = len(root.parts)
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        if len(here.parts) - root_depth >= max_depth:
            dirnames[:] = []
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        # Image folders hold tens of thousands of files; no metadata file lives next to them.
        yield here, dirnames, filenames


def find_file(root: str | Path, name: str, what: str, max_depth: int = MAX_DEPTH) -> Path:
    """The single file called `name` under `root` (case-sensitive)."""
    root = Path(root)
    if not root.is_dir():
        raise MissingSourceFileError(f"{root}: folder not found (looking for {name}, {what})")
    hits = [here / name for here, _, files in _walk(root, max_depth) if name in files]
    if not hits:
        raise MissingSourceFileError(f"{root}: no file {name} ({what}) within {max_depth} folder levels")
    if len(hits) > 1:
        raise MissingSourceFileError(f"{root}: {name} ({what}) found {len(hits)} times: "
                                     f"{', '.join(str(h) for h in hits[:3])}; point the parameter at one copy")
    return hits[0]


def find_dir(root: str | Path, name: str, what: str, max_depth: int = MAX_DEPTH) -> Path:
    """The single folder called `name` under `root` (or `root` itself if it has that name)."""
    root = Path(root)
    if root.name == name and root.is_dir():
        return root
    if not root.is_dir():
        raise MissingSourceFileError(f"{root}: folder not found (looking for {name}/, {what})")
    hits = [here / name for here, dirs, _ in _walk(root, max_depth) if name in dirs]
    if not hits:
        raise MissingSourceFileError(f"{root}: no folder {name}/ ({what}) within {max_depth} folder levels")
    if len(hits) > 1:
        raise MissingSourceFileError(f"{root}: folder {name}/ ({what}) found {len(hits)} times: "
                                     f"{', '.join(str(h) for h in hits[:3])}")
    return hits[0]
