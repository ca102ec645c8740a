"""Every plot that dvc.yaml declares renders under `dvc plots show`, with `epoch` on x for the training curves."""
import json
import shutil
import subprocess

import yaml

from conftest import REPO
from pipeline.dvc_stages import run_methods
from pipeline.params import load_params
from tiny_project import BIN



def history(method: str) -> list[dict]:
    """Histories as the training loop writes them (`pipeline.training.loop._aligned`): one key set per file."""
    from pipeline.training.loop import _aligned

    if method in ("cca", "lcfs", "jfssl"):
        return [{"epoch": 1, "loss": 0.2, "fit_pairs": 100, "val_ndcg_ave": 60.0, "val_rsum": 90.0, "seconds": 0.1}]
    epochs = []
    for e in (1, 2, 3):
        parts = {"instance_visual": 1.0 / e, "instance_textual": 1.1 / e}
        if method != "dual_path" or e > 1:  # dual-path's stage I has no ranking loss
            parts["ranking"] = 0.5 / e
        epochs.append({"epoch": e, "loss": 2.0 / e, **parts, "val_ndcg_ave": 50.0 + e, "val_rsum": 100.0 + e,
                       "seconds": 1.0})
    return _aligned(epochs)


def plots_show(project) -> dict:
    proc = subprocess.run([str(BIN / "dvc"), "plots", "show", "--json"], cwd=project, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_every_declared_plot_renders_including_dual_path(tmp_path):
    project = tmp_path / "p"
    project.mkdir()
    for name in ("dvc.yaml", "params.yaml"):
        shutil.copy(REPO / name, project / name)
    subprocess.run(["git", "init", "-q"], cwd=project, check=True)
    subprocess.run([str(BIN / "dvc"), "init", "-q"], cwd=project, check=True)
    params = yaml.safe_load((project / "params.yaml").read_text())
    methods = run_methods(load_params(project / "params.yaml"))
    assert "dual_path" in methods
    for dataset in params["datasets"]:
        for method in methods:
            path = project / "reports" / "training" / dataset / f"{method}.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(history(method)))
        detector = project / "reports" / "detector" / f"{dataset}_history.json"
        detector.parent.mkdir(parents=True, exist_ok=True)
        detector.write_text(json.dumps([{"iteration": 10 * i, "loss": 3.0 / i, "loss_classifier": 2.0 / i}
                                        for i in (1, 2, 3)]))
    (project / "reports" / "plots").mkdir()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = plt.figure()
    fig.savefig(project / "reports" / "plots" / "training_shapes.png")
    plt.close(fig)
    (project / "reports" / "lambda_sensitivity.json").write_text(json.dumps(
        [{"dataset": "shapes", "method": "ss", "lambda": lam, "ndcg_ave": 70.0 + lam} for lam in (0.01, 0.1)]))

    shown = plots_show(project)
    assert not shown.get("errors"), shown.get("errors")
    data = shown["data"]
    for dataset in params["datasets"]:
        for method in methods:
            name = f"reports/training/{dataset}/{method}.json"
            (plot,) = data[name]
            encoding = plot["content"]["encoding"]
            assert encoding["x"]["field"] == "epoch", name
            values = plot["content"]["data"]["values"]
            assert [v["epoch"] for v in values] == [e["epoch"] for e in history(method)], name
            assert all(v.get("field", "loss") == "loss" for v in values), name
    assert data["reports/plots/training_shapes.png"][0]["type"] == "image"
    for dataset in params["datasets"]:
        (plot,) = data[f"reports/detector/{dataset}_history.json"]
        assert plot["content"]["encoding"]["x"]["field"] == "iteration"
    assert data["reports/lambda_sensitivity.json"][0]["content"]["encoding"]["x"]["field"] == "lambda"
