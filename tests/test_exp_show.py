"""The `dvc exp show` invocation of docs/results.md ("The lambda sweep") shows a lambda sweep in 120 columns or
fewer, on metrics files as `xmr evaluate` writes them (measurements only) and the repository's params.yaml."""
import json
import re
import shutil
import subprocess

import numpy as np
import yaml

from conftest import REPO
from docs_pages import section
from pipeline.training.registry import METHODS, USES_LAMBDA
from tiny_project import BIN

# Stands in for `xmr evaluate`: the template is a real metrics file's keys (written once by the test), the
# values move with lambda and seed. Imports no torch, so each experiment takes a moment.
WRITER = """
import json, sys
from pathlib import Path
import yaml
p = yaml.safe_load(open("params.yaml"))
template = json.loads(Path("template.json").read_text())
shift = p["lambda"] + p["seed"] + len(sys.argv[1])
out = Path("reports/metrics/shapes") / f"{sys.argv[1]}.json"
out.parent.mkdir(parents=True, exist_ok=True)
out.write_text(json.dumps({k: round(v + shift, 4) if isinstance(v, (int, float)) else v for k, v in template.items()}))
"""


def template() -> dict:
    from pipeline.machine import machine_metrics
    from pipeline.metrics import evaluate_similarity
    from pipeline.training.scoring import metrics_file

    rng = np.random.default_rng(0)
    result = evaluate_similarity(rng.normal(size=(8, 16)), image_labels=rng.integers(0, 2, size=(8, 4)),
                                 caption_image=np.repeat(np.arange(8), 2), ndcg_k=5, map_k=5)
    machine = {"cpu": "CPU", "isa": "AVX2", "torch": "2", "numpy": "2", "threads": "2/2", "accelerator": "none"}
    return {**metrics_file(result), "selected_epoch": 3, **machine_metrics(machine, machine)}  # strings too


def documented_command() -> str:
    text = section("docs/results.md", "The lambda sweep")
    match = re.search(r"^(dvc exp show --md [^\n#]*?)\s*(#.*)?$", text, re.M)
    assert match, "docs/results.md \"The lambda sweep\" gives a `dvc exp show --md ...` invocation"
    return match.group(1)


def test_documented_exp_show_fits_in_120_columns(tmp_path):
    project = tmp_path / "p"
    project.mkdir()
    shutil.copy(REPO / "params.yaml", project / "params.yaml")
    (project / "write.py").write_text(WRITER)
    (project / "template.json").write_text(json.dumps(template()))
    params = yaml.safe_load((project / "params.yaml").read_text())
    stages = {
        "evaluate_lambda": {"foreach": sorted(USES_LAMBDA),
                            "do": {"cmd": "python write.py ${item}", "params": ["lambda", "seed", "metrics"],
                                   "metrics": [{"reports/metrics/shapes/${item}.json": {"cache": False}}]}},
        "evaluate": {"foreach": [m for m in METHODS if m not in USES_LAMBDA][:1],
                     "do": {"cmd": "python write.py ${item}", "params": ["seed", "metrics"],
                            "metrics": [{"reports/metrics/shapes/${item}.json": {"cache": False}}]}},
    }
    (project / "dvc.yaml").write_text(yaml.safe_dump({"stages": stages}))
    env = {"PATH": f"{BIN}:/usr/bin:/bin", "HOME": str(tmp_path), "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t", }

    def sh(cmd: str) -> str:
        proc = subprocess.run(cmd, shell=True, cwd=project, env=env, capture_output=True, text=True)
        assert proc.returncode == 0, f"{cmd}:\n{proc.stdout}\n{proc.stderr}"
        return proc.stdout

    sh("git init -q && dvc init -q && dvc repro -q && git add -A && git commit -qm base")
    for lam in (0.01, 1):
        sh(f"dvc exp run -q -S lambda={lam}")
    everything = sh("dvc exp show --md --no-pager").splitlines()[0]
    shown = [line for line in sh(documented_command() + " --no-pager").splitlines() if line.startswith("|")]
    assert max(len(line) for line in shown) <= 120, "\n".join(shown)
    assert everything.count("|") > shown[0].count("|")
    header = [c.strip() for c in shown[0].strip("|").split("|")]
    assert "lambda" in header and any(c.endswith(":ndcg_ave") for c in header), header
    lambdas = {row.strip("|").split("|")[header.index("lambda")].strip() for row in shown[2:]}
    assert {"0.01", "1", "0.1"} <= lambdas
    for row in shown[2:]:
        assert "-" not in row.strip("|").split("|")[header.index(next(c for c in header if c.endswith("ndcg_ave")))]
    # the machine-class strings beside the numbers: `dvc metrics show` lists them, the report's reader keeps them
    assert "machine_train" in sh("dvc metrics show")
    from pipeline.reporting.sweep import read_states
    states = read_states(json.loads(sh("dvc exp show --json")))
    assert any(values.get("machine_train") == "CPU; isa AVX2; torch 2; numpy 2; threads 2/2; accelerator none"
               for state in states for values in state.metrics.values())
