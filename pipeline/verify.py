"""`xmr verify`: hash what DVC brought into the workspace against `dvc.lock`, and check a remote.

A teammate's `dvc pull` trusts the remote. DVC's `verify = true` (on the remote) re-hashes each
downloaded file, but not a directory's `.dir` listing: a listing rewritten on the remote lands, and
with it any valid object under another file's name. Here every output of `dvc.lock` present in the
workspace is hashed as DVC hashes it (md5 of a file; for a folder, the md5 of its sorted JSON listing
of relpath and md5), so a tampered object or listing is an error naming the output and the file; a
`.dir` object in the local cache must also hash to its own name.

`verify_remote` checks that every object `dvc.lock` names exists on a remote and that its `.dir`
listings hash to their names. It is the workaround for a DVC bug (treeverse/dvc#10977): after a
killed `dvc push`, a folder's `.dir` object can be on the remote without all its files, and every
later `dvc push` or `dvc status -c` trusts the `.dir` and reports "in sync". With `repair`, the
`.dir` objects of incomplete folders are deleted from the remote, so that the next `dvc push`
uploads the missing files (and the `.dir` again).
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import yaml

LOCK_FILE = "dvc.lock"


class VerifyError(ValueError):
    """The workspace or a remote holds content that `dvc.lock` does not vouch for."""


@dataclass(frozen=True)
class LockedOutput:
    stage: str
    path: str
    md5: str  # ends with `.dir` for a folder

    @property
    def is_dir(self) -> bool:
        return self.md5.endswith(".dir")


@dataclass
class Checked:
    outputs: int = 0
    files: int = 0
    absent: list[str] = field(default_factory=list)


def locked_outputs(root: str | Path = ".") -> list[LockedOutput]:
    """Every cached output recorded in `<root>/dvc.lock` (stage outs with an md5)."""
    path = Path(root) / LOCK_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not found (run `dvc repro` or `git pull` first)")
    try:
        lock = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise VerifyError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from exc
    outs = []
    for stage, entry in ((lock or {}).get("stages") or {}).items():
        for out in entry.get("outs") or []:
            if isinstance(out, dict) and out.get("md5"):
                outs.append(LockedOutput(stage, str(out["path"]), str(out["md5"])))
    return outs


def md5_file(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "md5").hexdigest()


def listing_bytes(entries: dict[str, str]) -> bytes:
    """A folder's `.dir` object as DVC writes it: relpath -> md5, sorted by relpath, as JSON."""
    return json.dumps([{"md5": md5, "relpath": rel} for rel, md5 in sorted(entries.items())],
                      sort_keys=True).encode("utf-8")


def read_listing(data: bytes, where: str) -> dict[str, str]:
    try:
        return {str(e["relpath"]): str(e["md5"]) for e in json.loads(data)}
    except (ValueError, KeyError, TypeError) as exc:
        raise VerifyError(f"{where}: not a DVC .dir listing ({exc})") from exc


def _cache_object(root: Path, md5: str) -> Path:
    return root / ".dvc" / "cache" / "files" / "md5" / md5[:2] / md5[2:]


def verify_workspace(root: str | Path = ".") -> Checked:
    """Hash every `dvc.lock` output present under `root`; VerifyError naming the first that differs."""
    root = Path(root)
    checked = Checked()
    problems: list[str] = []
    for out in locked_outputs(root):
        path = root / out.path
        if not path.exists():
            checked.absent.append(out.path)
            continue
        checked.outputs += 1
        if not out.is_dir:
            checked.files += 1
            got = md5_file(path) if path.is_file() else "a folder"
            if got != out.md5:
                problems.append(f"{out.path} (stage {out.stage}): md5 {got}, dvc.lock records {out.md5}")
            continue
        entries = {p.relative_to(path).as_posix(): md5_file(p) for p in sorted(path.rglob("*")) if p.is_file()}
        checked.files += len(entries)
        cached = _cache_object(root, out.md5)
        if cached.is_file() and hashlib.md5(cached.read_bytes()).hexdigest() + ".dir" != out.md5:
            problems.append(f"{cached}: the cached listing of {out.path} does not hash to its name {out.md5} "
                            f"(rewritten); remove it and `dvc pull` from a trusted remote")
            expected = None
        else:
            expected = read_listing(cached.read_bytes(), str(cached)) if cached.is_file() else None
        if hashlib.md5(listing_bytes(entries)).hexdigest() + ".dir" == out.md5:
            continue
        detail = "its files differ from what dvc.lock records"
        if expected is not None:
            wrong = sorted(set(entries) ^ set(expected)) or [r for r in sorted(entries) if entries[r] != expected[r]]
            if wrong:
                detail = f"'{wrong[0]}' differs ({len(wrong)} file(s) in all)"
        problems.append(f"{out.path} (stage {out.stage}): {detail}")
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise VerifyError(f"{root / LOCK_FILE}: {problems[0]}{more}; the data does not match dvc.lock: "
                          f"`dvc checkout --force` (or `dvc pull --force`) restores it from the cache or remote")
    return checked


@dataclass
class RemoteCheck:
    objects: int = 0
    missing: dict[str, list[str]] = field(default_factory=dict)  # output path -> missing oids
    repaired: list[str] = field(default_factory=list)            # .dir oids deleted from the remote


def verify_remote(root: str | Path = ".", remote: str | None = None, repair: bool = False) -> RemoteCheck:
    """Check that every object of `dvc.lock` exists on `remote` (default: the project's default remote) and
    that each `.dir` listing there hashes to its name; `repair` deletes the `.dir` objects of incomplete
    folders so that `dvc push` uploads what is missing."""
    from dvc.repo import Repo

    root = Path(root)
    result = RemoteCheck()
    with Repo(str(root)) as repo:
        odb = repo.cloud.get_remote_odb(remote, "verify")
        for out in locked_outputs(root):
            oids = [out.md5]
            if out.is_dir:
                if not odb.exists(out.md5):
                    result.missing.setdefault(out.path, []).append(out.md5)
                    continue
                with odb.fs.open(odb.oid_to_path(out.md5), "rb") as f:
                    data = f.read()
                if hashlib.md5(data).hexdigest() + ".dir" != out.md5:
                    raise VerifyError(f"remote {remote or 'default'}: the listing {out.md5} of {out.path} does not "
                                      f"hash to its name (rewritten on the remote); remove it there and push again "
                                      f"from a trusted copy")
                oids = sorted(set(read_listing(data, out.md5).values()))
            present = set(odb.oids_exist(oids))
            result.objects += len(oids)
            lost = [oid for oid in oids if oid not in present]
            if lost:
                result.missing.setdefault(out.path, []).extend(lost)
                if repair and out.is_dir:
                    odb.delete(out.md5)
                    result.repaired.append(out.md5)
    return result
