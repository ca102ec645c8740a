"""Atomic outputs, stale temporary files, output locks and disk errors.

An interrupted stage must never leave an output that looks finished, so every stage writes through
`atomic_output` (a file or a directory) or `write_json`: the data goes to `.<name>.tmp-<pid>` beside
the target and is renamed when complete. A process killed mid-write leaves that name behind; the next
atomic write into the same folder removes every such name whose process is gone (`remove_stale_temps`),
so a rerun leaves no stray file inside a DVC output. Stages that users also run by hand take
`output_lock` on their output, so that two runs never write it at once.
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import re
import shutil
from pathlib import Path
from typing import Iterator

TEMP_NAME = re.compile(r"^\.(?P<target>.+)\.tmp-(?P<pid>\d+)$")  # the project's own temporary names
DISK_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EIO, errno.EROFS,
               errno.EFBIG, errno.EMFILE, errno.ENFILE}
ADVICE = {
    errno.ENOSPC: "free space on that file system (or point the stage at another one) and rerun",
    errno.EDQUOT: "free space within your disk quota and rerun",
    errno.EACCES: "give your user write access to it (or choose another directory) and rerun",
    errno.EPERM: "give your user write access to it (or choose another directory) and rerun",
    errno.EROFS: "the file system is read-only: choose a writable directory and rerun",
    errno.EIO: "the disk reported an I/O error: check the device (dmesg) before rerunning",
    errno.EFBIG: "the file system refuses files this large: choose another one and rerun",
    errno.EMFILE: "too many open files: raise `ulimit -n` and rerun",
    errno.ENFILE: "too many open files on the system: close some programs and rerun",
}


class OutputLocked(RuntimeError):
    """Another process is writing the same output."""


def temp_name(path: Path) -> Path:
    """The temporary sibling this process writes `path` under."""
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


def pid_alive(pid: int) -> bool:
    """Whether process `pid` exists on this machine."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user
        return True
    return True


def remove_path(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists() or path.is_symlink():
        path.unlink(missing_ok=True)


def remove_stale_temps(directory: str | Path) -> list[Path]:
    """Remove the temporary names of atomic writes in `directory` whose process is gone.

    Only names of the form `.<name>.tmp-<pid>` are touched (the project's own), and only when no
    process `<pid>` runs on this machine, so a concurrent writer's file is left alone.
    """
    directory = Path(directory)
    removed = []
    try:
        entries = list(os.scandir(directory))
    except (FileNotFoundError, NotADirectoryError):
        return removed
    for entry in entries:
        match = TEMP_NAME.match(entry.name)
        if match and not pid_alive(int(match["pid"])):
            remove_path(Path(entry.path))
            removed.append(Path(entry.path))
    return removed


def _file_system_full(path: Path) -> bool:
    try:
        return os.statvfs(path).f_bavail == 0
    except OSError:
        return False


def disk_error(exc: BaseException, path: Path) -> OSError | None:
    """`exc` as an OSError naming `path`, when it comes from the disk (full, read-only, I/O error,
    permission); None otherwise. Libraries that hide the OS error (torch raises RuntimeError on a
    full disk) are recognised by the file system having no space left."""
    code = getattr(exc, "errno", None)
    if isinstance(exc, OSError) and code in DISK_ERRNOS:
        return OSError(code, os.strerror(code), str(exc.filename or path))
    if not isinstance(exc, OSError) and isinstance(exc, Exception) and _file_system_full(path.parent):
        return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
    return None


@contextlib.contextmanager
def disk_errors_name(path: str | Path) -> Iterator[None]:
    """Re-raise a disk error of the block that names no file (zarr, numpy) as one naming `path`."""
    try:
        yield
    except OSError as exc:
        if exc.filename or exc.errno not in DISK_ERRNOS:
            raise
        raise OSError(exc.errno, os.strerror(exc.errno), str(path)) from exc


@contextlib.contextmanager
def atomic_output(path: str | Path) -> Iterator[Path]:
    """Yield a temporary sibling of `path`; on success it replaces `path`, on error it is removed.

    Stale temporary names of earlier, killed runs in the same folder are removed first. A disk error
    (full, read-only, permission, I/O) is raised as an OSError naming `path`.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise (disk_error(exc, path.parent) or exc) from exc
    remove_stale_temps(path.parent)
    tmp = temp_name(path)
    remove_path(tmp)
    try:
        yield tmp
    except BaseException as exc:
        converted = disk_error(exc, path)
        if converted is not None and str(converted.filename).startswith(str(tmp)):
            converted = OSError(converted.errno, converted.strerror, str(path))  # the output, not its temp name
        remove_path(tmp)
        if converted is not None:
            raise converted from exc
        raise
    try:
        if path.exists() or path.is_symlink():
            remove_path(path)
        os.replace(tmp, path)
    except OSError as exc:
        remove_path(tmp)
        raise (disk_error(exc, path) or exc) from exc


def write_json(path: str | Path, obj) -> None:
    """Write `obj` as indented JSON, atomically."""
    with atomic_output(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")


def lock_path(path: str | Path) -> Path:
    """The lock file of output `path`: a hidden sibling, so it is never inside a DVC output."""
    path = Path(path)
    return path.with_name(f".{path.name}.lock")


@contextlib.contextmanager
def output_lock(path: str | Path) -> Iterator[None]:
    """Hold an exclusive lock on output `path` for the duration of the block.

    A second run on the same output fails at once with OutputLocked naming the holder's PID. The lock
    is `flock` on a sibling file, released by the kernel when the holder exits, however it exits (so a
    killed run never leaves a lock that blocks the next one). Under torchrun only rank 0 locks (the
    ranks of one run share the output).
    """
    if int(os.environ.get("RANK", "0")) > 0:
        yield
        return
    lock = lock_path(path)
    lock.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            raise OutputLocked(f"{path}: another run (PID {holder}) is writing it; wait for it to finish "
                               f"or stop that process, then rerun") from None
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        except OSError as exc:
            raise (disk_error(exc, lock) or exc) from exc
        try:
            yield
        finally:
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
