"""The method declarations, the classes they name, params.yaml and the report's published rows agree;
the layers import downwards only; `xmr methods` and the fast errors of `train` / `evaluate`."""
import ast
import subprocess
import sys

import pytest
import yaml

from conftest import REPO
from pipeline.reporting.published import F1_ROW, RECALL_ROW, TABLE1_ROW
from pipeline.training.registry import INSTANCE_LEVEL, LABEL_WISE, METHODS, USES_LAMBDA, method_class, uses_lambda
from pipeline.training.schema import METHOD_SCHEMAS

PARAMS = yaml.safe_load((REPO / "params.yaml").read_text())


def test_declarations_params_and_published_rows_agree():
    """params.yaml's sections are optional overrides; `run` names declared methods; a published row is
    optional, and one that exists is for a method of its family."""
    names = set(METHODS)
    assert names == set(METHOD_SCHEMAS), "every declared method has a params section schema and vice versa"
    for name in PARAMS["methods"]:
        assert name in names, f"params.yaml has a section 'methods.{name}' for no declared method: remove it"
    run = PARAMS["run"]
    for name in (run["methods"] or []) + run["exclude"]:
        assert name in names, f"params.yaml's run lists name '{name}', which no module of pipeline/methods/ declares"
    for name in names:
        assert uses_lambda(name) == (name in USES_LAMBDA) == ("mask_prob" in METHOD_SCHEMAS[name]), name
    label_wise = {m for m, e in METHODS.items() if e.family == LABEL_WISE}
    instance = {m for m, e in METHODS.items() if e.family == INSTANCE_LEVEL}
    assert label_wise | instance == names, "each declaration's family is LABEL_WISE or INSTANCE_LEVEL"
    for rows, family, what in ((TABLE1_ROW, label_wise, "label-wise"), (F1_ROW, label_wise, "label-wise"),
                               (RECALL_ROW, instance, "instance-level")):
        for name in rows:
            assert name in family, (f"pipeline/reporting/published.py has a {what} row for '{name}', which is "
                                    f"not a declared {what} method: fix the row or the declaration's family")


@pytest.mark.parametrize("name", sorted(METHODS))
def test_catalogue_facts_match_the_method_class(name):
    entry, cls = METHODS[name], method_class(name)
    where = f"method '{name}' ({entry.builder}, declared in pipeline/methods/)"
    assert entry.needs_labels == cls.needs_labels, \
        f"{where}: the declaration says needs_labels={entry.needs_labels}, the class {cls.needs_labels}: make them " \
        "agree"
    assert entry.closed_form == getattr(cls, "closed_form", False), \
        f"{where}: the declaration's closed_form differs from the class attribute `closed_form`: make them agree"
    if entry.family == INSTANCE_LEVEL:
        assert getattr(cls, "select_metric", None) == "rsum", \
            f"{where} is instance-level: its class must set `select_metric = \"rsum\"` (R@K model selection)"
    else:
        assert getattr(cls, "select_metric", None) != "rsum", \
            f"{where} is label-wise: its class must not set `select_metric = \"rsum\"` (or declare it instance-level)"


def test_a_method_without_a_params_section_trains_on_its_declared_defaults():
    from pipeline.params import validate
    from pipeline.training.recipes import resolve_settings

    params = validate({"methods": {}})
    assert resolve_settings(params, "scan_t2i")["d_model"] == METHODS["scan_t2i"].schema["d_model"] == 1024
    out = _in_process(CLI.format(args=["methods", "--defaults"])).stdout
    assert "| scan_t2i |" in out and "45 epochs, lr 0.0001, batch 64" in out


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
    assert not {m for m in _imports("pipeline.methods") if m.startswith(("pipeline.training", "pipeline.params"))}
    for area in ("pipeline.training.schema", "pipeline.detection.schema", "pipeline.metrics.schema",
                 "pipeline.param_checks", "pipeline.methods"):
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
    assert ("| ss | papers/000 (Semantic Sharing) | label-wise | yes | yes | official | up to 30 epochs, patience 2, "
            "lr 0.001, batch 64, "
            "clips text only, selects on train loss |") in table
    assert ("| dscmr | Zhen et al., CVPR 2019 (DSCMR) | label-wise | yes | no | official | up to 30 epochs, "
            "patience 2, lr 0.001, "
            "batch 64, Adam betas (0.5, 0.999) |") in table
    assert "| cca | Hotelling 1936 (CCA) | label-wise | no | no | - | closed form, one fit |" in table
    assert ("| scan_i2t | papers/002 (SCAN) | instance-level | no | no | official | up to 30 epochs, patience 2, "
            "lr 0.001, batch 64, validates on 100 images |") in table


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
