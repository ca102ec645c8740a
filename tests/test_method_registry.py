"""The method registry, the params schemas, params.yaml's run lists and the report's published rows agree;
the layers import downwards only; `xmr methods` and the fast errors of `train` / `evaluate`."""
import ast
import subprocess
import sys

import pytest
import yaml

from conftest import REPO
from pipeline.reporting.published import F1_ROW, RECALL_ROW, TABLE1_ROW
from pipeline.training.registry import INSTANCE_LEVEL, LABEL_WISE, METHODS, method_class, uses_lambda
from pipeline.training.schema import METHOD_SCHEMAS, USES_LAMBDA

PARAMS = yaml.safe_load((REPO / "params.yaml").read_text())


def test_registry_schemas_run_lists_and_published_rows_agree():
    names = set(METHODS)
    assert names == set(METHOD_SCHEMAS), "every registered method has a params schema and vice versa"
    assert names == set(PARAMS["methods"]), "params.yaml has one section per registered method"
    run = PARAMS["run"]
    assert not set(run["lambda_methods"]) & set(run["methods"])
    assert set(run["lambda_methods"]) | set(run["methods"]) == names, "dvc.yaml's run lists cover every method"
    assert set(run["lambda_methods"]) == set(USES_LAMBDA) == {m for m in names if uses_lambda(m)}
    label_wise = {m for m, e in METHODS.items() if e.family == LABEL_WISE}
    instance = {m for m, e in METHODS.items() if e.family == INSTANCE_LEVEL}
    assert label_wise | instance == names
    assert set(TABLE1_ROW) == label_wise, "each label-wise method has its papers/000 Table 1 row"
    assert set(RECALL_ROW) == instance, "each instance-level method has its published Recall@K row"
    assert set(F1_ROW) <= label_wise


@pytest.mark.parametrize("name", sorted(METHODS))
def test_catalogue_facts_match_the_method_class(name):
    entry, cls = METHODS[name], method_class(name)
    assert entry.needs_labels == cls.needs_labels
    assert entry.closed_form == getattr(cls, "closed_form", False)
    assert (entry.family == INSTANCE_LEVEL) == (getattr(cls, "select_metric", None) == "rsum")


def _imports(package: str) -> set[str]:
    out = set()
    for path in (REPO / package.replace(".", "/")).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                out.add(node.module)
            elif isinstance(node, ast.Import):
                out.update(alias.name for alias in node.names)
    return out


def test_layers_import_downwards_only():
    assert not {m for m in _imports("pipeline.models") if m.startswith("pipeline.training")}
    assert not {m for m in _imports("pipeline.contract") if m.startswith(("pipeline.training", "pipeline.models"))}
    for area in ("pipeline.training.schema", "pipeline.detection.schema", "pipeline.metrics.schema",
                 "pipeline.param_checks"):
        assert "pipeline.params" not in _imports(area), f"{area} must not import the loader (no import circle)"


def _in_process(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)


CLI = ("import sys; from typer.testing import CliRunner; from stages.cli import app; "
       "r = CliRunner().invoke(app, {args!r}); print(r.exit_code); print('torch' in sys.modules); print(r.output)")


def test_xmr_methods_lists_every_method_without_torch():
    out = _in_process(CLI.format(args=["methods"])).stdout.splitlines()
    assert out[:2] == ["0", "False"], out
    table = "\n".join(out[2:])
    for name, entry in METHODS.items():
        row = next(line for line in table.splitlines() if line.startswith(f"| {name} |"))
        assert entry.paper in row and entry.family in row and entry.description in row
    assert ("| ss | papers/000 (Semantic Sharing) | label-wise | yes | yes | official | 3 epochs, lr 0.001, batch 64, "
            "clips text only, selects on train loss |") in table
    assert ("| dscmr | Zhen et al., CVPR 2019 (DSCMR) | label-wise | yes | no | official | 3 epochs, lr 0.001, "
            "batch 64, Adam betas (0.5, 0.999) |") in table
    assert "| cca | Hotelling 1936 (CCA) | label-wise | no | no | - | closed form, one fit |" in table
    assert "| scan_i2t | papers/002 (SCAN) | instance-level | no | no | official | 1 epochs, lr 0.001, batch 64 |" in table


@pytest.mark.parametrize("command", ["train", "evaluate"])
def test_train_and_evaluate_help_point_to_the_catalogue(command):
    out = _in_process(CLI.format(args=[command, "--help"])).stdout
    assert "xmr methods" in out


@pytest.mark.parametrize("args, message", [
    (["train", "shapes", "nope"], "unknown method 'nope'"),
    (["evaluate", "shapes", "nope"], "unknown method 'nope'"),
    (["train", "nowhere", "ss"], "unknown dataset 'nowhere'"),
    (["evaluate", "shapes", "ss", "--models-dir", "/nonexistent/models"], "run `xmr train shapes ss` first"),
])
def test_name_and_model_errors_come_before_torch_is_imported(args, message):
    out = _in_process(CLI.format(args=args)).stdout.splitlines()
    assert out[:2] == ["2", "False"], out
    assert message in "\n".join(out[2:])


def test_dual_path_stage1_reads_dual_paths_section():
    """One source of truth: params.yaml writes `dual_path_stage1` as a YAML merge of `dual_path`'s section."""
    from pipeline.params import load_params

    params = load_params(REPO / "params.yaml")["methods"]
    assert params["dual_path_stage1"] == params["dual_path"]
    assert "<<: *dual_path" in (REPO / "params.yaml").read_text()
