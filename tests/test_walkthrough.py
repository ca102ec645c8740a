"""docs/architecture.md "Adding a method" is a walkthrough that runs (issue 25 item 5): its code blocks,
written into a copy of the project, give a method that the registry checks accept, that `xmr dvc-yaml`
gives its own stages, and that trains one tiny epoch and evaluates."""
import json
import os
import re
import shutil
import subprocess
import sys

import pytest
import yaml

from conftest import REPO

GUIDE = REPO / "docs" / "architecture.md"
BLOCK = re.compile(r"```python\n# file: (\S+)\n(.*?)```", re.S)

TRAIN_AND_EVALUATE = """
from typer.testing import CliRunner
from pipeline.training.data import RetrievalData
from retrieval_fixtures import make_dataset
from stages.cli import app

RetrievalData.open = staticmethod(lambda data_dir, dataset, **kw: RetrievalData(*make_dataset(), **kw))
for command in ("train", "evaluate"):
    result = CliRunner().invoke(app, [command, "synth", "vsepp", "--params", "synth.yaml", "--no-progress"])
    print(result.output)
    assert result.exit_code == 0, (command, result.output, result.exception)
"""


def _blocks() -> dict[str, str]:
    blocks = dict(BLOCK.findall(GUIDE.read_text()))
    if not blocks:
        pytest.fail(f"{GUIDE}: no ```python block starting with '# file: <path>'")
    return blocks


@pytest.fixture(scope="module")
def copy(tmp_path_factory):
    """The project (code, tests' helpers, params, dvc.yaml) with the guide's files written into it."""
    root = tmp_path_factory.mktemp("walkthrough") / "p"
    root.mkdir()
    for name in ("pipeline", "stages", "tests"):
        shutil.copytree(REPO / name, root / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("params.yaml", "dvc.yaml", "pyproject.toml"):
        shutil.copy(REPO / name, root / name)
    blocks = _blocks()
    assert set(blocks) == {"pipeline/models/vsepp.py", "pipeline/methods/vsepp.py"}, sorted(blocks)
    for path, code in blocks.items():
        assert not (root / path).exists(), f"the guide's {path} would overwrite a file of the project"
        (root / path).write_text(code)
    return root


def _run(root, *args, check=True):
    env = dict(os.environ, PYTHONPATH=f"{root}{os.pathsep}{root / 'tests'}")
    proc = subprocess.run([sys.executable, *args], cwd=root, env=env, capture_output=True, text=True)
    if check:
        assert proc.returncode == 0, f"{args}:\n{proc.stdout}\n{proc.stderr}"
    return proc


XMR = ["-c", "import sys; from stages.cli import app; sys.argv[0] = 'xmr'; app()"]


def test_the_guides_method_gets_its_stages_and_passes_the_registry_checks(copy):
    stale = _run(copy, *XMR, "check-params", "--out", "checked.txt", check=False)
    assert stale.returncode == 2 and "xmr dvc-yaml" in stale.stderr + stale.stdout  # step 3 not done yet
    _run(copy, *XMR, "dvc-yaml")
    stages = yaml.safe_load((copy / "dvc.yaml").read_text())["stages"]
    assert "data/code/train_vsepp.txt" in stages["train_vsepp"]["do"]["deps"]
    _run(copy, *XMR, "code-fingerprints")
    deps = [line.split()[1] for line in (copy / "data/code/train_vsepp.txt").read_text().splitlines()[1:]]
    assert "pipeline/models/vsepp.py" in deps and "pipeline/methods/vsepp.py" in deps
    assert not any(d.startswith(("pipeline/models/scan", "pipeline/methods/scan")) for d in deps)
    _run(copy, *XMR, "check-params", "--out", "checked.txt")
    shown = _run(copy, *XMR, "methods").stdout
    assert "| vsepp | Faghri et al., BMVC 2018 (VSE++) | instance-level | no | no | - |" in shown
    _run(copy, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_method_registry.py", "-k",
         "vsepp or declarations_params or layers")


def test_the_guides_method_trains_one_tiny_epoch_and_evaluates(copy):
    (copy / "synth.yaml").write_text(yaml.safe_dump({
        "datasets": ["synth"], "data": {"synth": {"kind": "shapes"}},
        "train": {"batch_size": 16, "lr": 3e-3, "epochs": 1, "device": "cpu", "threads": 1},
        "methods": {"vsepp": {"embed_dim": 32}}}))
    _run(copy, "-c", TRAIN_AND_EVALUATE)
    history = json.loads((copy / "reports" / "training" / "synth" / "vsepp.json").read_text())
    assert [h["epoch"] for h in history] == [1] and history[0]["loss"] > 0
    metrics = json.loads((copy / "reports" / "metrics" / "synth" / "vsepp.json").read_text())
    assert 0 <= metrics["r1_i2t"] <= 100 and metrics["rsum"] > 0
    config = json.loads((copy / "models" / "synth" / "vsepp" / "config.json").read_text())
    assert config["settings"]["embed_dim"] == 32 and config["settings"]["margin"] == 0.2  # override + default
