"""The download registry (`registry.yaml`): which files each source needs, their URLs, sizes and hashes.

Where a source publishes no sha256, the first download's hash is recorded in a lock file (trust on
first use) and enforced on every later download, so a changed file on a mirror is caught instead of
silently changing the experiment.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import yaml

from pipeline.data.content import CONTENT_KINDS, content_kind
from pipeline.io import write_json

DEFAULT_REGISTRY = Path(__file__).with_name("registry.yaml")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_HEX = re.compile(r"^[0-9a-f]{1,64}$")


class RegistryError(ValueError):
    """The registry or the lock file is malformed, or names an unknown source or file."""


@dataclass(frozen=True)
class FileEntry:
    source: str
    name: str
    urls: tuple[str, ...]
    size: int | None
    sha256: str | None
    sha256_prefix: str | None
    extract: bool
    content: str = "binary"  # what the bytes must look like (pipeline.data.content) before they are trusted

    @property
    def key(self) -> str:
        """The file's key in the lock file."""
        return f"{self.source}/{self.name}"


@dataclass(frozen=True)
class Alternative:
    """A known other host of a source: its per-file URLs (registry file name -> URL) and what differs."""

    name: str
    note: str
    files: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Source:
    name: str
    description: str
    used_by: tuple[str, ...]
    files: tuple[FileEntry, ...]
    alternatives: tuple[Alternative, ...] = ()

    def file(self, name: str) -> FileEntry:
        for entry in self.files:
            if entry.name == name:
                return entry
        raise RegistryError(f"source '{self.name}' has no file '{name}' "
                            f"(files: {', '.join(f.name for f in self.files)})")


def _entry(source: str, raw: dict, where: str) -> FileEntry:
    if not isinstance(raw, dict):
        raise RegistryError(f"{where}: each file must be a mapping, got {raw!r}")
    name = raw.get("name")
    if not isinstance(name, str) or not name or "/" in name or "\\" in name or name in (".", ".."):
        raise RegistryError(f"{where}: 'name' must be a plain file name, got {name!r}")
    urls = raw.get("urls")
    if not isinstance(urls, list) or not urls or not all(isinstance(u, str) and "://" in u for u in urls):
        raise RegistryError(f"{where}: file '{name}' needs 'urls', a non-empty list of URLs")
    size = raw.get("size")
    if size is not None and (not isinstance(size, int) or isinstance(size, bool) or size <= 0):
        raise RegistryError(f"{where}: file '{name}' has 'size' {size!r}; expected a byte count or null")
    sha = raw.get("sha256")
    if sha is not None and (not isinstance(sha, str) or not _HEX64.match(sha)):
        raise RegistryError(f"{where}: file '{name}' has 'sha256' {sha!r}; expected 64 lowercase hex digits or null")
    prefix = raw.get("sha256_prefix")
    if prefix is not None and (not isinstance(prefix, str) or not _HEX.match(prefix)):
        raise RegistryError(f"{where}: file '{name}' has 'sha256_prefix' {prefix!r}; expected lowercase hex digits")
    if sha and prefix and not sha.startswith(prefix):
        raise RegistryError(f"{where}: file '{name}' has a sha256 that does not start with its sha256_prefix")
    extract = raw.get("extract", False)
    if not isinstance(extract, bool):
        raise RegistryError(f"{where}: file '{name}' has 'extract' {extract!r}; expected true or false")
    content = raw.get("content", content_kind(name))
    if content not in CONTENT_KINDS:
        raise RegistryError(f"{where}: file '{name}' has 'content' {content!r}; expected one of {', '.join(CONTENT_KINDS)}")
    return FileEntry(source, name, tuple(urls), size, sha, prefix, extract, content)


def _alternatives(raw, names: list[str], where: str) -> tuple[Alternative, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise RegistryError(f"{where}: 'alternatives' must be a list of mappings (name, note, files)")
    out = []
    for alt in raw:
        if not isinstance(alt, dict) or not isinstance(alt.get("name"), str) or not isinstance(alt.get("note", ""), str):
            raise RegistryError(f"{where}: each alternative needs a 'name' and a 'note', got {alt!r}")
        files = alt.get("files") or {}
        if not isinstance(files, dict) or not all(isinstance(u, str) and "://" in u for u in files.values()):
            raise RegistryError(f"{where}: alternative '{alt['name']}' has 'files' {files!r}; expected file name -> URL")
        unknown = sorted(set(files) - set(names))
        if unknown:
            raise RegistryError(f"{where}: alternative '{alt['name']}' names unknown file '{unknown[0]}' "
                                f"(files: {', '.join(names)})")
        out.append(Alternative(alt["name"], alt.get("note", ""), tuple(files.items())))
    return tuple(out)


def load_registry(path: str | Path = DEFAULT_REGISTRY) -> dict[str, Source]:
    """Parse and validate a registry file; returns source name -> Source."""
    path = Path(path)
    if not path.is_file():
        raise RegistryError(f"{path}: registry file not found (parameter download.registry)")
    try:
        doc = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise RegistryError(f"{path}: not valid YAML ({exc})") from exc
    if not isinstance(doc, dict) or not isinstance(doc.get("sources"), dict) or not doc["sources"]:
        raise RegistryError(f"{path}: expected a mapping with a non-empty 'sources' mapping")
    sources = {}
    for name, raw in doc["sources"].items():
        where = f"{path}: sources.{name}"
        if not isinstance(raw, dict) or not isinstance(raw.get("files"), list) or not raw["files"]:
            raise RegistryError(f"{where}: expected a mapping with a non-empty 'files' list")
        files = tuple(_entry(name, f, where) for f in raw["files"])
        names = [f.name for f in files]
        if len(set(names)) != len(names):
            raise RegistryError(f"{where}: file names repeat ({', '.join(names)})")
        used_by = raw.get("used_by", [])
        if not isinstance(used_by, list) or not all(isinstance(u, str) for u in used_by):
            raise RegistryError(f"{where}: 'used_by' must be a list of dataset kinds (or 'asset')")
        sources[name] = Source(name, str(raw.get("description", "")), tuple(used_by), files,
                               _alternatives(raw.get("alternatives"), names, where))
    return sources


def source(sources: dict[str, Source], name: str) -> Source:
    if name not in sources:
        raise RegistryError(f"unknown download source '{name}' (known: {', '.join(sorted(sources))})")
    return sources[name]


def sources_for_kind(sources: dict[str, Source], kind: str) -> list[Source]:
    """The sources a dataset kind downloads (registry `used_by`), in registry order."""
    return [s for s in sources.values() if kind in s.used_by]


def assets(sources: dict[str, Source]) -> list[str]:
    """Sources downloadable on their own (`xmr download <asset>`): word vectors, detector weights."""
    return [s.name for s in sources.values() if "asset" in s.used_by]


def source_dir(download_dir: str | Path, source_name: str) -> Path:
    """Where a source's files are downloaded."""
    return Path(download_dir) / source_name


def extracted_dir(download_dir: str | Path, source_name: str) -> Path:
    """Where a source's archives are extracted (all archives of one source share it)."""
    return source_dir(download_dir, source_name) / "extracted"


def local_path(download_dir: str | Path, entry: FileEntry) -> Path:
    return source_dir(download_dir, entry.source) / entry.name


def asset_path(source_name: str, file_name: str | None = None, download_dir: str | Path = "data/downloads",
               registry: str | Path = DEFAULT_REGISTRY) -> Path:
    """Local path of a downloaded asset file, e.g. `asset_path("word2vec")` or
    `asset_path("weights", "bua-caffe-frcn-r101-k36.pth")`; error if it has not been downloaded."""
    src = source(load_registry(registry), source_name)
    if file_name is None:
        if len(src.files) != 1:
            raise RegistryError(f"source '{source_name}' has several files; name one of: "
                                f"{', '.join(f.name for f in src.files)}")
        entry = src.files[0]
    else:
        entry = src.file(file_name)
    path = local_path(download_dir, entry)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not downloaded yet (run `xmr download {source_name}`)")
    return path


# --- trust-on-first-use lock -------------------------------------------------------------------

def read_lock(path: str | Path) -> dict[str, dict]:
    """`source/file` -> {"sha256", "size", "url"} recorded at first download."""
    path = Path(path)
    if not path.is_file():
        return {}
    try:
        doc = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise RegistryError(f"{path}: lock file is not valid JSON ({exc}); restore it from git or delete it "
                            f"to trust the next download") from exc
    files = doc.get("files") if isinstance(doc, dict) else None
    if not isinstance(files, dict):
        raise RegistryError(f"{path}: lock file has no 'files' mapping")
    for key, rec in files.items():
        if not isinstance(rec, dict) or not _HEX64.match(str(rec.get("sha256", ""))):
            raise RegistryError(f"{path}: lock entry '{key}' has no valid sha256")
    return files


def record_lock(path: str | Path, entry: FileEntry, sha256: str, size: int, url: str) -> None:
    """Record a first-use hash (atomically, keeping the other entries)."""
    files = read_lock(path)
    files[entry.key] = {"sha256": sha256, "size": size, "url": url}
    write_json(path, {"comment": "sha256 recorded at first download of files whose registry entry has no "
                                 "published hash (pipeline/data/registry.yaml); commit this file to pin them.",
                      "files": dict(sorted(files.items()))})


def expected_sha256(entry: FileEntry, lock: dict[str, dict]) -> tuple[str | None, str]:
    """The hash a download must match and where it comes from: registry, lock, or none (first use)."""
    if entry.sha256:
        return entry.sha256, "registry"
    if entry.key in lock:
        return lock[entry.key]["sha256"], "lock"
    return None, "first use"
