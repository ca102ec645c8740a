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


class SourcePathError(ValueError):
    """An image path of a dataset that leads outside the dataset's image folder."""


def check_inside(paths: list[Path], folder: str | Path, listed_in: str) -> None:
    """Refuse the first image path that leads out of `folder`: by its name (absolute, `..`), or because
    the file is a symlink to a file outside its own folder (a same-size stand-in would be used silently).
    A linked *folder* (images on another disk) stays allowed: the check is on the file."""
    folder = Path(folder)
    for path in paths:
        path = Path(path)
        try:
            relative = path.relative_to(folder)
        except ValueError:
            relative = None
        if relative is None or ".." in relative.parts:
            raise SourcePathError(f"{path}: outside the image folder {folder} (listed in {listed_in}); an image "
                                  f"must be a file inside its dataset's folder")
        if path.is_symlink():
            real, home = os.path.realpath(path), os.path.realpath(path.parent)
            if not real.startswith(home.rstrip(os.sep) + os.sep):
                raise SourcePathError(f"{path}: a link to {real}, outside the image folder {folder} (listed in "
                                      f"{listed_in}); an image must be a file inside its dataset's folder")
