"""Outputs of any method are git-ignored by pattern (issue 25 item 4): a method run by hand before
dvc.yaml knows it leaves `git status` clean, and DVC, finding its outs ignored, writes no per-folder
entries that would fight the pattern."""
import shutil
import subprocess

from conftest import REPO
from tiny_project import BIN, run

OUTPUTS = ["models/{ds}/{m}/model.pt", "reports/per_query/{ds}/{m}.npz", "reports/rankings/{ds}/{m}.npz"]
STAGE = """stages:
  evaluate:
    cmd: >-
      mkdir -p models/real/newm reports/rankings/real && echo 1 > models/real/newm/model.pt
      && echo 2 > reports/rankings/real/newm.npz
    outs:
      - models/real/newm
      - reports/rankings/real/newm.npz
"""


def _git_project(tmp_path):
    shutil.copy(REPO / ".gitignore", tmp_path / ".gitignore")
    run(["git", "init", "-q"], tmp_path)
    return tmp_path


def test_a_new_methods_outputs_on_any_dataset_are_ignored(tmp_path):
    project = _git_project(tmp_path)
    paths = [p.format(ds=ds, m=m) for p in OUTPUTS for ds in ("shapes", "coco_mini") for m in ("vsepp", "ss")]
    for path in paths:
        (project / path).parent.mkdir(parents=True, exist_ok=True)
        (project / path).write_text("x")
    assert run(["git", "status", "--porcelain", "--untracked-files=all"], project).stdout.strip() == "?? .gitignore"
    kept = project / "reports/training/shapes/vsepp.json"  # histories and metrics are committed
    kept.parent.mkdir(parents=True)
    kept.write_text("[]")
    assert subprocess.run(["git", "check-ignore", "-q", str(kept)], cwd=project).returncode == 1


def test_dvc_adds_no_gitignore_entries_for_method_outputs(tmp_path):
    project = _git_project(tmp_path)
    (project / "dvc.yaml").write_text(STAGE)
    run([BIN / "dvc", "init", "-q"], project)
    run([BIN / "dvc", "repro", "-q"], project)
    assert not list(project.glob("models/**/.gitignore")) and not list(project.glob("reports/**/.gitignore"))
    status = run(["git", "status", "--porcelain", "--untracked-files=all"], project).stdout.split("\n")
    assert not any("models/" in line or "reports/" in line for line in status), status
