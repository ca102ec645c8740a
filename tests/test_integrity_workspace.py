"""Issue 28: what a hand-run stage or an edited `datasets` list leaves behind: `xmr tokenize` keeps the
git-tracked `.gitignore` of the text folder, and the report leaves out datasets no longer listed."""
from __future__ import annotations

import pytest
import yaml

from integrity_helpers import built, copy_project, project, working_dir, xmr  # noqa: F401 (fixtures)

pytestmark = pytest.mark.usefixtures("one_thread")



def test_tokenize_by_hand_keeps_the_tracked_gitignore(project):
    ignore = project / "data" / "tiny" / "text" / ".gitignore"
    ignore.write_text("/vocab.json\n/tokens.parquet\n/embeddings.npy\n")
    assert xmr("tokenize", "tiny").exit_code == 0
    assert ignore.read_text() == "/vocab.json\n/tokens.parquet\n/embeddings.npy\n"
    assert (project / "data" / "tiny" / "text" / "vocab.json").is_file()


def test_report_leaves_out_a_dataset_removed_from_the_list(project):
    stale = project / "reports" / "metrics" / "gone"
    stale.mkdir()
    (stale / "ss.json").write_text((project / "reports" / "metrics" / "tiny" / "ss.json").read_text())
    res = xmr("report")
    assert res.exit_code == 0, res.output
    assert "report: 1 metrics files" in res.output
    results = (project / "reports" / "results.md").read_text()
    assert "gone" not in results and "tiny" in results
    params = yaml.safe_load((project / "params.yaml").read_text())
    assert params["datasets"] == ["tiny"]
