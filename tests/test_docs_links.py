"""Every relative link of the README and the docs pages points at a file that exists and, for a page, at one
of its headings; the README's test command is the one CI runs."""
import os
import re

import pytest

from conftest import REPO
from docs_pages import anchors, github_anchor, links, pages, section


@pytest.mark.parametrize("page", pages(), ids=lambda p: p.relative_to(REPO).as_posix())
def test_relative_links_resolve(page):
    broken = []
    for line, target in links(page.read_text()):
        if re.match(r"[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto: ...
            continue
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        if not dest.exists():
            broken.append(f"line {line}: {target} (no file {os.path.relpath(dest, REPO)})")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest.read_text()):
            broken.append(f"line {line}: {target} (no heading with anchor #{anchor} in {dest.name})")
    assert not broken, f"{page.relative_to(REPO)}:\n" + "\n".join(broken)


def test_every_docs_page_is_linked_from_the_readme():
    linked = {target.partition("#")[0] for _line, target in links((REPO / "README.md").read_text())}
    missing = [p.relative_to(REPO).as_posix() for p in pages()[1:] if p.relative_to(REPO).as_posix() not in linked]
    assert not missing, f"README.md links no page {missing}"


def test_github_anchor_follows_githubs_rule():
    assert github_anchor("`prepare`: the table every later stage reads") == "prepare-the-table-every-later-stage-reads"
    assert github_anchor("Semantic Sharing (`ss`) and its ablations (`ss_con`, `st`)") == \
        "semantic-sharing-ss-and-its-ablations-ss_con-st"
    assert github_anchor("Instance-level methods (papers/002, papers/003)") == \
        "instance-level-methods-papers002-papers003"
    assert anchors("# A\n\n## A\n\n```\n## not a heading\n```\n") == {"a", "a-1"}


def test_ci_runs_exactly_the_readmes_test_command():
    rows = [line for line in section("README.md", "Two commands").splitlines()
            if line.startswith("| run the test suite")]
    assert len(rows) == 1, "README.md 'Two commands' has one row 'run the test suite'"
    command = re.search(r"`([^`]+)`\s*\|\s*$", rows[0]).group(1)
    ci = [line for line in (REPO / ".ci" / "run").read_text().splitlines()
          if line and not line.startswith(("#", "set ", "cd "))]
    assert ci == [command], (ci, command)
