"""The files of `pipeline/` and `stages/` a piece of code imports, found by reading its imports (`ast`).

DVC reruns a stage when one of its `deps` changes. A method's train and evaluate stages depend on the
fingerprint of exactly the import closure of their command and of the method's module
(`pipeline/dvc_stages.py`), so editing one method's module reruns that method only, and no file a
method runs is left out. Every import is followed, including those inside functions (the lazy imports of
the stages), and importing a module counts its packages' `__init__.py`. Torch-free: it reads source files,
it imports nothing.
"""
from __future__ import annotations

import ast
from functools import lru_cache
from pathlib import Path

ROOTS = ("pipeline", "stages")


def module_file(module: str, root: Path) -> Path | None:
    """The source file of a project module (`pipeline.models.scan` -> pipeline/models/scan.py), or None
    for a module outside the project."""
    if module.split(".")[0] not in ROOTS:
        return None
    base = root / module.replace(".", "/")
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


@lru_cache(maxsize=None)
def _imports(path: Path) -> tuple[str, ...]:
    """Project modules named by the imports of one file (`from a import b` may name module a.b)."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append(node.module)
            out += [f"{node.module}.{alias.name}" for alias in node.names]
    return tuple(m for m in out if m.split(".")[0] in ROOTS)


def _with_packages(module: str) -> list[str]:
    parts = module.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts) + 1)]


def import_closure(modules: list[str], root: Path) -> set[Path]:
    """Every project file the given modules import, directly or not, with the modules' own files."""
    seen: set[Path] = set()
    todo = [m for name in modules for m in _with_packages(name)]
    while todo:
        path = module_file(todo.pop(), root)
        if path is None or path in seen:
            continue
        seen.add(path)
        for name in _imports(path):
            todo += _with_packages(name)
    return seen


def closure_paths(modules: list[str], root: Path) -> list[str]:
    """`import_closure` as sorted POSIX paths relative to `root` (the form dvc.yaml lists)."""
    return sorted(p.relative_to(root).as_posix() for p in import_closure(modules, root))


def as_deps(paths: list[str], root: Path) -> list[str]:
    """`paths` with each folder whose every file is among them written as the folder (shorter dvc.yaml;
    DVC hashes a folder dependency file by file). A folder with any other file stays listed file by file."""
    chosen = set(paths)
    out: set[str] = set()
    for path in sorted(chosen):
        parts = Path(path).parts
        for depth in range(2, len(parts)):
            files = _folder_files(root, Path(*parts[:depth]).as_posix())
            if files and all(f in chosen for f in files):
                folder = Path(*parts[:depth])
                out.add(folder.as_posix())
                break
        else:
            out.add(path)
    return sorted(out)


@lru_cache(maxsize=None)
def _folder_files(root: Path, folder: str) -> tuple[str, ...]:
    return tuple(f.relative_to(root).as_posix() for f in (root / folder).rglob("*")
                 if f.is_file() and "__pycache__" not in f.parts)
