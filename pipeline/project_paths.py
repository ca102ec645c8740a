"""Paths that point outside the project, resolved the same way in the workspace and in DVC's experiments.

Params and tables hold paths relative to the project root, some of which leave it: `coco_mini`'s
`data.coco_mini.root` is `../shared/coco-mini`, and its table's image paths start the same way. DVC runs a
queued experiment (`dvc exp run --queue`, the seed and lambda sweeps) in a copy of the workspace under
`.dvc/tmp/exps/`, where `../shared` names nothing, and tells the stage where the project is in `DVC_ROOT`.
`project_path` sends such a path to the project's neighbour, the folder the user meant; paths inside the
project keep resolving against the working directory, the experiment's own copy.
"""
from __future__ import annotations

import os
from pathlib import Path

DVC_ROOT = "DVC_ROOT"  # set by DVC for every stage command: the project, also for a queued experiment


def project_path(path: str | Path) -> Path:
    """`path` to open from here: unchanged unless it is relative, leaves the project (`..` first) and this
    process runs in a copy of the project (DVC_ROOT names another folder); then DVC_ROOT joined with it."""
    path = Path(path)
    root = os.environ.get(DVC_ROOT)
    if path.is_absolute() or not root or path.parts[:1] != ("..",):
        return path
    if Path(root).resolve() == Path.cwd().resolve():
        return path
    return Path(os.path.normpath(Path(root) / path))
