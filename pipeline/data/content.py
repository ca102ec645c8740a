"""Check that a downloaded file is the kind of file it should be before anyone trusts it.

A dead link often still answers 200, with an HTML page (an interstitial, a login form, an error
page). Without a published hash, trust on first use would lock that page as the file's hash. So the
first bytes are checked against the file's expected content (registry field `content`, or inferred
from the name): zip and gzip by their magic numbers, torch files by zip or torch's legacy magic,
pickles by not being markup, and any binary file by not being text.
"""
from __future__ import annotations

from pathlib import Path

HEAD_BYTES = 4096
CONTENT_KINDS = ("zip", "gzip", "torch", "pickle", "binary")
_MAGIC = {
    "zip": (b"PK\x03\x04", b"PK\x05\x06"),  # local file header, or an empty archive
    "gzip": (b"\x1f\x8b",),
    "torch": (b"PK\x03\x04", b"\x80\x02\x8a\nl\xfc\x9cF\xf9 j\xa8P\x19"),  # zip format, legacy format
}
_DESCRIPTION = {"zip": "a zip archive", "gzip": "a gzip file", "torch": "a torch weights file",
                "pickle": "a pickle file", "binary": "a binary file"}
_MARKUP = (b"<!doctype", b"<html", b"<?xml", b"<head", b"<body", b"<!--", b"<meta", b"<script", b"<title")


class ContentError(ValueError):
    """A download is not the kind of file it should be (e.g. an HTML page instead of an archive)."""


def content_kind(name: str) -> str:
    """The expected content of a registry file from its name."""
    lower = name.lower()
    for suffix, kind in ((".zip", "zip"), (".gz", "gzip"), (".tgz", "gzip"), (".pth", "torch"), (".pt", "torch"),
                         (".pkl", "pickle")):
        if lower.endswith(suffix):
            return kind
    return "binary"


def describe(head: bytes) -> str:
    """What a body looks like: 'an HTML page', 'text' or 'binary data'."""
    stripped = head.lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if stripped.startswith(_MARKUP) or b"<html" in stripped[:1024]:
        return "an HTML page"
    if not head or b"\x00" in head:
        return "binary data" if head else "an empty body"
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(head) - 4:  # not just a multi-byte character cut at the end
            return "binary data"
    return "text"


def check_content(path: str | Path, kind: str, url: str) -> None:
    """Raise ContentError naming `url` unless `path` starts like a file of `kind`."""
    if kind not in CONTENT_KINDS:
        raise ValueError(f"content kind {kind!r}, expected one of {', '.join(CONTENT_KINDS)}")
    with Path(path).open("rb") as f:
        head = f.read(HEAD_BYTES)
    seen = describe(head)
    if kind in _MAGIC:
        ok = head.startswith(_MAGIC[kind])
    elif kind == "pickle":
        ok = seen != "an HTML page" and seen != "an empty body"
    else:
        ok = seen == "binary data"
    if not ok:
        preview = head[:60].decode("latin-1").replace("\n", " ").strip()
        raise ContentError(f"{url} served {seen} where {_DESCRIPTION[kind]} was expected "
                           f"(starts with {preview!r}); nothing was kept or locked. The link may be dead or behind "
                           f"a login page: use another URL (download.mirrors)")
