"""Downloading registry files: pooch for hashing, temporary files and caching; our own downloader for
resuming interrupted transfers (HTTP Range), retries and a progress bar per file.

Life of one file: bytes stream into `<name>.part` next to the destination. A dropped connection keeps
the partial file and the next attempt (a retry, or the next `xmr download`) asks the server for the
rest with `Range: bytes=<size>-`; a server that ignores Range (200) restarts from zero. The complete
file's first bytes are checked against its expected content (an HTML page where a zip is expected is
an error naming the URL, and the next URL is tried); then pooch checks the sha256 and moves it into
place, or deletes it on mismatch. A first-use hash is locked only after the content check and, for an archive,
after it opened completely (`archives.verify_archive`).

Mirrors (`download.mirrors.<source>` in params.yaml): either a list of base URLs (`<base>/<file>`)
or a mapping from the registry's file name to its own URL (or list of URLs), for hosts whose file
names or paths differ; files a mapping leaves out keep the registry's URLs.
"""
from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

import pooch
import requests
from tqdm import tqdm

from pipeline.data import registry as reg
from pipeline.data.archives import MAX_EXTRACT_GB, MAX_EXTRACT_RATIO, ArchiveError, verify_archive, verify_gzip
from pipeline.data.content import ContentError, check_content

# Bytes received but not yet written when a connection drops are lost (at most one chunk).
CHUNK = 1 << 16
# pooch's own log advises pasting first-use hashes into code; here they go to the lock file instead.
pooch.get_logger().setLevel(logging.WARNING)


class DownloadError(ValueError):
    """A file could not be downloaded from any of its URLs."""


class RemoteNotFoundError(FileNotFoundError):
    """The server answered 404/410 for a URL."""


class ChecksumError(ValueError):
    """A downloaded file does not match its expected sha256, sha256 prefix or size."""


@dataclass(frozen=True)
class FetchSettings:
    """The `download` section of params.yaml, as the fetcher uses it."""

    download_dir: Path
    lock_file: Path
    mirrors: dict
    retries: int = 2
    retry_wait: float = 1.0
    timeout: float = 60.0
    progress: bool = True
    max_extract_gb: float = MAX_EXTRACT_GB
    max_extract_ratio: float = MAX_EXTRACT_RATIO

    @classmethod
    def from_params(cls, dparams: dict) -> "FetchSettings":
        return cls(Path(dparams["dir"]), Path(dparams["lock_file"]), dict(dparams["mirrors"]),
                   dparams["retries"], dparams["retry_wait"], dparams["timeout"], dparams["progress"],
                   dparams.get("max_extract_gb", MAX_EXTRACT_GB), dparams.get("max_extract_ratio", MAX_EXTRACT_RATIO))


def _url_list(value, key: str) -> list[str]:
    urls = [value] if isinstance(value, str) else value
    if not isinstance(urls, list) or not urls or not all(isinstance(u, str) and "://" in u for u in urls):
        raise DownloadError(f"params: {key} must be a URL or a list of URLs, got {value!r}")
    return urls


def check_mirrors(src: reg.Source, mirrors: dict) -> None:
    """A per-file mirror mapping may only name the source's registry files."""
    value = mirrors.get(src.name)
    if isinstance(value, dict):
        names = [f.name for f in src.files]
        unknown = sorted(set(value) - set(names))
        if unknown:
            raise DownloadError(f"params: download.mirrors.{src.name} maps unknown file '{unknown[0]}' "
                                f"(the registry's files of '{src.name}': {', '.join(names)})")


def candidate_urls(entry: reg.FileEntry, mirrors: dict) -> tuple[list[str], str]:
    """URLs to try in order, and where they come from (for error messages)."""
    key = f"download.mirrors.{entry.source}"
    value = mirrors.get(entry.source)
    if isinstance(value, dict):  # per file: registry file name -> URL(s)
        if entry.name in value:
            return _url_list(value[entry.name], f"{key}.{entry.name}"), f"params.yaml {key}.{entry.name}"
    elif value is not None:  # base URLs
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not value or not all(isinstance(b, str) and "://" in b for b in value):
            raise DownloadError(f"params: {key} must be a list of base URLs or a mapping from file name to "
                                f"URL, got {value!r}")
        return [b.rstrip("/") + "/" + entry.name for b in value], f"params.yaml {key}"
    return list(entry.urls), f"the registry (override with params.yaml {key})"


def alternatives_hint(alternatives) -> str:
    """The registry's known other hosts of a source, for an error message."""
    if not alternatives:
        return ""
    lines = [f"{a.name}: {a.note}" + "".join(f"\n      {name} -> {url}" for name, url in a.files) for a in alternatives]
    return "\nKnown alternatives (set download.mirrors.<source>: {<file>: <url>}):\n    " + "\n    ".join(lines)


class ResumableDownloader:
    """A pooch downloader that resumes from `<dest>.part` with HTTP Range and retries dropped transfers."""

    def __init__(self, part: Path, settings: FetchSettings, expected_size: int | None, label: str,
                 content: str = "binary"):
        self.part = part
        self.content = content
        self.settings = settings
        self.expected_size = expected_size
        self.label = label
        self.attempts = 0

    def __call__(self, url: str, output_file, pooch_instance=None, check_only: bool = False):
        for attempt in range(self.settings.retries + 1):
            self.attempts += 1
            try:
                self._transfer(url)
                break
            except (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError) as exc:
                if attempt == self.settings.retries:
                    raise
                logging.getLogger(__name__).warning("%s: transfer interrupted (%s); resuming", self.label, exc)
                time.sleep(self.settings.retry_wait * (attempt + 1))
        try:
            check_content(self.part, self.content, url)
        except ContentError:
            self.part.unlink()  # an error page: nothing to resume from
            raise
        os.replace(self.part, output_file)

    def _transfer(self, url: str) -> None:
        have = self.part.stat().st_size if self.part.exists() else 0
        if self.expected_size is not None and have > self.expected_size:
            self.part.unlink()
            have = 0
        headers = {"Range": f"bytes={have}-"} if have else {}
        with requests.get(url, headers=headers, stream=True, timeout=self.settings.timeout) as resp:
            if resp.status_code in (404, 410):
                raise RemoteNotFoundError(f"HTTP {resp.status_code} for {url}")
            if resp.status_code == 416 and have:
                # Nothing left to send: the partial file is complete (the hash check decides) or stale.
                if self.expected_size is None or have == self.expected_size:
                    return
                self.part.unlink()
                return self._transfer(url)
            resp.raise_for_status()
            if have and resp.status_code == 206 and _range_start(resp) == have:
                mode = "ab"
            else:
                mode, have = "wb", 0  # the server ignored Range: start over
            length = resp.headers.get("Content-Length")
            total = have + int(length) if length and length.isdigit() else self.expected_size
            with open(self.part, mode) as out, tqdm(total=total, initial=have, unit="B", unit_scale=True,
                                                    unit_divisor=1024, desc=self.label, leave=False,
                                                    disable=not self.settings.progress) as bar:
                for chunk in resp.iter_content(chunk_size=CHUNK):
                    out.write(chunk)
                    bar.update(len(chunk))


def _range_start(resp: requests.Response) -> int | None:
    value = resp.headers.get("Content-Range", "")  # "bytes 100-999/1000"
    try:
        return int(value.split()[1].split("-")[0])
    except (IndexError, ValueError):
        return None


def fetch_file(entry: reg.FileEntry, settings: FetchSettings, alternatives=()) -> dict:
    """Download one registry file (or reuse a verified local copy); returns {path, sha256, size, url}.
    `alternatives` (the source's known other hosts) are listed when no URL works."""
    dest = reg.local_path(settings.download_dir, entry)
    dest.parent.mkdir(parents=True, exist_ok=True)
    lock = reg.read_lock(settings.lock_file)
    expected, origin = reg.expected_sha256(entry, lock)
    urls, url_origin = candidate_urls(entry, settings.mirrors)
    part = dest.with_name(dest.name + ".part")
    failures = []
    used = None
    for url in urls:
        downloader = ResumableDownloader(part, settings, entry.size, entry.name, entry.content)
        try:
            pooch.retrieve(url, known_hash=f"sha256:{expected}" if expected else None, fname=entry.name,
                           path=dest.parent, downloader=downloader, progressbar=False)
            used = url if downloader.attempts else f"local copy {dest}"
            break
        except (RemoteNotFoundError, ContentError) as exc:
            failures.append(str(exc))
        except requests.RequestException as exc:
            failures.append(f"{url}: {type(exc).__name__}: {exc}"
                            + (f" (partial download kept in {part} for resuming)" if part.exists() else ""))
        except ValueError as exc:  # pooch: hash mismatch; the complete file was already deleted
            _remove(part)
            raise ChecksumError(f"{dest}: downloaded from {url}, but its sha256 does not match the {origin} "
                                f"value {expected}; the file was removed. The mirror may serve another version: "
                                f"check {url_origin}.") from exc
    if used is None:
        raise DownloadError(f"{entry.key}: could not be downloaded from any URL in {url_origin}:\n  "
                            + "\n  ".join(failures) + alternatives_hint(alternatives))
    sha = pooch.file_hash(str(dest), alg="sha256")
    size = dest.stat().st_size
    problem = None
    if entry.size is not None and size != entry.size:
        problem = f"has {size} bytes, the registry says {entry.size}"
    elif entry.sha256_prefix and not sha.startswith(entry.sha256_prefix):
        problem = f"has sha256 {sha}, which does not start with the published prefix {entry.sha256_prefix}"
    if problem:
        dest.unlink()
        raise ChecksumError(f"{dest}: downloaded from {used}, but it {problem}; the file was removed.")
    if expected is None:
        try:  # a local copy left by an earlier version was never content-checked
            check_content(dest, entry.content, used)
            if entry.extract:  # a cut or corrupt archive must not become the trusted file
                verify_archive(dest)
            elif entry.content == "gzip":
                verify_gzip(dest)
        except (ContentError, ArchiveError) as exc:
            dest.unlink()
            if isinstance(exc, ArchiveError):
                raise ArchiveError(f"{exc}; downloaded from {used}, removed and not locked: run the download "
                                   f"again") from exc
            raise
        reg.record_lock(settings.lock_file, entry, sha, size, used)
    return {"path": str(dest), "sha256": sha, "size": size, "url": used,
            "hash_checked_against": origin if expected else "recorded now (first use)"}


def _remove(path: Path) -> None:
    if path.exists():
        path.unlink()
