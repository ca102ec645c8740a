"""Reading the Markdown pages (README.md, docs/*.md) as tests need them: a section by its heading, the
headings' GitHub anchors, the relative links. Tests that check a documented command read it from the page
that holds it, so moving text between pages moves the test's input with it."""
from __future__ import annotations

import re
from pathlib import Path

from conftest import REPO

FENCE = re.compile(r"^(```|~~~)")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
LINK = re.compile(r"(?<!!)\[([^\]]*)\]\(([^)\s]+)\)")
INLINE_CODE = re.compile(r"`[^`\n]*`")


def pages() -> list[Path]:
    """The user documentation: the README and every docs page."""
    return [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


def prose_lines(text: str) -> list[tuple[int, str]]:
    """(line number, line) outside fenced code blocks: headings and links inside code are not Markdown."""
    return [(n, line) for n, (code, line) in enumerate(_fence_flags(text), 1) if not code]


def headings(text: str) -> list[tuple[int, int, str]]:
    """(line number, level, heading text) of every heading outside code blocks."""
    return [(n, len(m.group(1)), m.group(2)) for n, line in prose_lines(text) if (m := HEADING.match(line))]


def github_anchor(heading: str) -> str:
    """The anchor GitHub gives a heading: rendered text (code marks and link targets dropped), lower case,
    every character other than a letter, digit, '_', '-' or space removed, spaces as '-'."""
    text = LINK.sub(r"\1", heading).replace("`", "").lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(text: str) -> set[str]:
    """Every heading anchor of a page, with GitHub's '-1', '-2' suffixes for repeated headings."""
    seen: dict[str, int] = {}
    out = set()
    for _n, _level, heading in headings(text):
        base = github_anchor(heading)
        count = seen.get(base, 0)
        out.add(base if count == 0 else f"{base}-{count}")
        seen[base] = count + 1
    return out


def section(page: str, heading: str) -> str:
    """The text under the heading whose text is `heading` in REPO/page, up to the next heading of the same
    or a higher level; its subsections included. A missing page or heading fails, naming both."""
    path = REPO / page
    assert path.is_file(), f"{page} does not exist"
    lines = path.read_text().splitlines()
    found = [(n, level) for n, level, text in headings(path.read_text()) if text == heading]
    assert found, f"{page} has no heading {heading!r}"
    start, level = found[0]
    end = next((n for n, lv, _t in headings(path.read_text()) if n > start and lv <= level), len(lines) + 1)
    return "\n".join(lines[start:end - 1])


def links(text: str) -> list[tuple[int, str]]:
    """(line number, target) of every Markdown link outside code blocks and inline code."""
    body = "\n".join("" if code else INLINE_CODE.sub("", line) for code, line in _fence_flags(text))
    return [(body.count("\n", 0, m.start()) + 1, m.group(2)) for m in LINK.finditer(body)]


def _fence_flags(text: str) -> list[tuple[bool, str]]:
    """(in code, line) for every line; a fence line counts as code."""
    out, fenced = [], False
    for line in text.splitlines():
        fence = bool(FENCE.match(line.lstrip()))
        fenced ^= fence
        out.append((fenced or fence, line))
    return out
