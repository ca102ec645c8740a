"""Safe extraction of zip and tar archives.

Every member is checked before anything is written: absolute paths, `..` components, links whose
target leaves the extraction folder, and devices/FIFOs are rejected (zip-slip). While writing, each
file's byte count must equal the size its header declares (zip CRCs are checked by zipfile), and the
declared total must fit on the disk and under the caps `download.max_extract_gb` and
`download.max_extract_ratio` (extracted bytes per archive byte: a zip bomb is refused before it fills
the disk).

Names are not enough where links are: `a -> .` then `a/a/p -> ../../etc/passwd` passes every lexical
check. So each member's real path is resolved against what is already extracted (links included)
before it is written, no folder is created before its real path is known to be inside the target, a
hard link copies only a regular file whose real path is inside, and after the last member every link
is resolved once more (a later link can change where an earlier one leads).

`verify_archive` reads a whole archive once (zip CRCs, tar to its end): a download without a published
hash is checked with it before its hash is locked on first use.
"""
from __future__ import annotations

import gzip
import json
import os
import shutil
import stat
import tarfile
import zipfile
from zlib import error as zlib_error
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from tqdm import tqdm

from pipeline.io import write_json

COPY_CHUNK = 1 << 20
# The largest registry archive, train2014.zip (13.5 GB of JPEGs), extracts to about its own size; annotation
# and tag archives (JSON, text) to at most ~10x theirs. The caps leave room above both (params.yaml `download`).
MAX_EXTRACT_GB = 50.0
MAX_EXTRACT_RATIO = 100.0


class ArchiveError(ValueError):
    """An archive is unreadable, corrupt, or does not fit on the disk."""


class UnsafeArchiveError(ArchiveError):
    """An archive member would be written (or link) outside the extraction folder."""


@dataclass
class Member:
    name: str            # normalised relative POSIX path
    kind: str            # file | dir | symlink | hardlink
    size: int
    link: str | None     # symlink target (as stored) or hard-link source (normalised)
    ref: object          # ZipInfo or TarInfo


def _relative(name: str, archive: Path, what: str = "member") -> str:
    """The member name as a safe relative path, or an error naming the archive and member."""
    raw = name.replace("\\", "/")
    if raw.startswith("/") or (len(raw) > 1 and raw[1] == ":"):
        raise UnsafeArchiveError(f"{archive}: {what} '{name}' has an absolute path; refusing to extract")
    parts = [p for p in PurePosixPath(raw).parts if p not in ("", ".")]
    if ".." in parts:
        raise UnsafeArchiveError(f"{archive}: {what} '{name}' contains a '..' component; refusing to extract")
    return "/".join(parts)


def _inside(base: str, path: str) -> bool:
    return path == base or path.startswith(base.rstrip(os.sep) + os.sep)


def _check_symlink(member: Member, target: Path, archive: Path) -> None:
    link = member.link.replace("\\", "/")
    if link.startswith("/") or (len(link) > 1 and link[1] == ":"):
        raise UnsafeArchiveError(f"{archive}: link '{member.name}' points to the absolute path '{member.link}'")
    resolved = os.path.normpath(os.path.join(str(target), os.path.dirname(member.name), link))
    if not _inside(os.path.normpath(str(target)), resolved):
        raise UnsafeArchiveError(f"{archive}: link '{member.name}' -> '{member.link}' points outside the "
                                 f"extraction folder")


def _zip_members(zf: zipfile.ZipFile, archive: Path) -> list[Member]:
    members = []
    for info in zf.infolist():
        name = _relative(info.filename, archive)
        mode = info.external_attr >> 16
        if stat.S_ISLNK(mode):
            members.append(Member(name, "symlink", 0, zf.read(info).decode("utf-8", "replace"), info))
        elif info.is_dir():
            members.append(Member(name, "dir", 0, None, info))
        else:
            members.append(Member(name, "file", info.file_size, None, info))
    return members


def _tar_members(tf: tarfile.TarFile, archive: Path) -> list[Member]:
    members = []
    for info in tf.getmembers():
        name = _relative(info.name, archive)
        if info.isreg():
            members.append(Member(name, "file", info.size, None, info))
        elif info.isdir():
            members.append(Member(name, "dir", 0, None, info))
        elif info.issym():
            members.append(Member(name, "symlink", 0, info.linkname, info))
        elif info.islnk():
            members.append(Member(name, "hardlink", 0, _relative(info.linkname, archive, "hard-link target"), info))
        else:
            raise UnsafeArchiveError(f"{archive}: member '{info.name}' is a device or FIFO; refusing to extract")
    return members


def _open(archive: Path):
    if not archive.is_file():
        raise FileNotFoundError(f"{archive}: archive not found")
    if zipfile.is_zipfile(archive):
        return "zip", zipfile.ZipFile(archive)
    if tarfile.is_tarfile(archive):
        return "tar", tarfile.open(archive)
    raise ArchiveError(f"{archive}: not a zip or tar archive")


def list_members(archive: str | Path, target: str | Path) -> list[Member]:
    """The archive's members, each checked to stay inside `target`; raises UnsafeArchiveError."""
    archive, target = Path(archive), Path(target)
    kind, handle = _open(archive)
    with handle:
        members = _zip_members(handle, archive) if kind == "zip" else _tar_members(handle, archive)
    names = {m.name for m in members}
    for m in members:
        if not m.name:
            continue
        if m.kind == "symlink":
            _check_symlink(m, target, archive)
        if m.kind == "hardlink" and m.link not in names:
            raise UnsafeArchiveError(f"{archive}: hard link '{m.name}' refers to '{m.link}', which is not in the archive")
    return members


def _copy(src, dest: Path, expected: int, archive: Path, name: str) -> None:
    written = 0
    with open(dest, "wb") as out:
        while True:
            chunk = src.read(COPY_CHUNK)
            if not chunk:
                break
            written += len(chunk)
            if written > expected:
                raise ArchiveError(f"{archive}: member '{name}' holds more than the {expected} bytes its header declares")
            out.write(chunk)
    if written != expected:
        raise ArchiveError(f"{archive}: member '{name}' has {written} bytes, its header declares {expected}")


def _check_caps(archive: Path, need: int, max_gb: float, max_ratio: float) -> None:
    if need > max_gb * 1e9:
        raise ArchiveError(f"{archive}: its members declare {need / 1e9:.2f} GB, more than download.max_extract_gb "
                           f"({max_gb:g} GB); raise it if this archive is genuine")
    size = max(archive.stat().st_size, 1)
    if need > 1e6 and need / size > max_ratio:
        raise ArchiveError(f"{archive}: {size} bytes that declare {need} bytes of members ({need / size:.0f}x, more "
                           f"than download.max_extract_ratio {max_ratio:g}): refusing what looks like a zip bomb")


def _real_inside(real_target: str, path: Path | str) -> bool:
    return _inside(real_target, os.path.realpath(path))


def _make_dirs(real_target: str, target: Path, name: str, archive: Path) -> None:
    """Create target/name one component at a time, each checked (through links) to stay inside."""
    current = target
    for part in PurePosixPath(name).parts:
        current = current / part
        if not _real_inside(real_target, current):
            raise UnsafeArchiveError(f"{archive}: member path '{name}' would be written through a link outside "
                                     f"{target} ('{current.relative_to(target)}'); refusing to extract")
        if not current.is_dir():
            current.mkdir()


def _check_links_after(real_target: str, target: Path, links: list[Member], archive: Path) -> None:
    """Every extracted link must still resolve inside the target; the first that does not is removed, named."""
    for m in links:
        dest = target / m.name
        if dest.is_symlink() and not _real_inside(real_target, dest):
            dest.unlink()
            raise UnsafeArchiveError(f"{archive}: link '{m.name}' -> '{m.link}' leads outside {target} through "
                                     f"other links of the archive; removed it, refusing the archive")


def verify_archive(archive: str | Path) -> None:
    """Read every member of `archive` to its end (zip: CRCs); ArchiveError naming it when it is truncated or
    corrupt. Used before a first-use hash is locked: a cut download must not become the trusted file."""
    archive = Path(archive)
    try:
        kind, handle = _open(archive)
        with handle:
            if kind == "zip":
                bad = handle.testzip()
                if bad is not None:
                    raise ArchiveError(f"{archive}: member '{bad}' fails its CRC check; the archive is corrupt")
            else:
                for info in handle:
                    if info.isreg():
                        src = handle.extractfile(info)
                        while src.read(COPY_CHUNK):
                            pass
    except ArchiveError:
        raise
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError, zlib_error) as exc:
        raise ArchiveError(f"{archive}: does not open completely ({type(exc).__name__}: {exc}); the download is "
                           f"truncated or corrupt") from exc


def verify_gzip(path: str | Path) -> None:
    """Decompress `path` to its end: gzip's trailer (CRC-32 and length) catches a cut or spliced download."""
    path = Path(path)
    try:
        with gzip.open(path, "rb") as f:
            while f.read(COPY_CHUNK):
                pass
    except (OSError, EOFError, zlib_error) as exc:
        raise ArchiveError(f"{path}: does not decompress completely ({type(exc).__name__}: {exc}); the download is "
                           f"truncated or corrupt") from exc


def extract(archive: str | Path, target: str | Path, progress: bool = True, max_gb: float = MAX_EXTRACT_GB,
            max_ratio: float = MAX_EXTRACT_RATIO) -> dict:
    """Extract `archive` into `target` after checking every member; returns counts."""
    archive, target = Path(archive), Path(target)
    members = list_members(archive, target)
    need = sum(m.size for m in members)
    _check_caps(archive, need, max_gb, max_ratio)
    target.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(target).free
    if need > free:
        raise ArchiveError(f"{archive}: extracting needs {need / 1e9:.2f} GB but {target} has {free / 1e9:.2f} GB free")
    real_target = os.path.realpath(target)
    kind, handle = _open(archive)
    files = 0
    links: list[Member] = []
    with handle, tqdm(total=need, unit="B", unit_scale=True, desc=f"extract {archive.name}", leave=False,
                      disable=not progress) as bar:
        for m in members:
            if not m.name:
                continue
            dest = target / m.name
            if m.kind == "dir":
                _make_dirs(real_target, target, m.name, archive)
                continue
            parent = str(PurePosixPath(m.name).parent)
            if parent != ".":
                _make_dirs(real_target, target, parent, archive)
            if not _real_inside(real_target, dest.parent):
                raise UnsafeArchiveError(f"{archive}: member '{m.name}' would be written through a link outside {target}")
            if dest.is_symlink() or dest.exists():
                if dest.is_dir() and not dest.is_symlink():
                    raise ArchiveError(f"{archive}: member '{m.name}' is a file but {dest} is a folder")
                dest.unlink()
            if m.kind == "symlink":
                resolved = os.path.join(os.path.realpath(dest.parent), m.link)
                if not _real_inside(real_target, resolved):
                    raise UnsafeArchiveError(f"{archive}: link '{m.name}' -> '{m.link}' leads outside {target} through "
                                             f"the links extracted before it; refusing to extract")
                os.symlink(m.link, dest)
                links.append(m)
            elif m.kind == "hardlink":
                source = os.path.realpath(target / m.link)
                if not _inside(real_target, source) or not os.path.isfile(source):
                    raise UnsafeArchiveError(f"{archive}: hard link '{m.name}' -> '{m.link}' resolves to {source}, "
                                             f"not a file inside {target}; refusing to extract")
                shutil.copyfile(source, dest, follow_symlinks=False)
            else:
                src = handle.open(m.ref) if kind == "zip" else handle.extractfile(m.ref)
                try:
                    with src:
                        _copy(src, dest, m.size, archive, m.name)
                except zipfile.BadZipFile as exc:
                    raise ArchiveError(f"{archive}: member '{m.name}' is corrupt ({exc})") from exc
                files += 1
                bar.update(m.size)
    _check_links_after(real_target, target, links, archive)
    return {"files": files, "bytes": need}


def extract_once(archive: str | Path, target: str | Path, sha256: str, progress: bool = True,
                 max_gb: float = MAX_EXTRACT_GB, max_ratio: float = MAX_EXTRACT_RATIO) -> bool:
    """Extract unless a marker says this exact archive (by sha256) was fully extracted into `target`.

    Returns True when it extracted. An interrupted extraction leaves no marker and is redone.
    """
    archive, target = Path(archive), Path(target)
    marker = target / f".extracted-{archive.name}.json"
    if marker.is_file():
        try:
            if json.loads(marker.read_text()).get("sha256") == sha256:
                return False
        except json.JSONDecodeError:
            pass
    counts = extract(archive, target, progress, max_gb, max_ratio)
    write_json(marker, {"archive": archive.name, "sha256": sha256, **counts})
    return True
