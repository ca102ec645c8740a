"""Settings sized for one dataset (`per_dataset.<ds>`, issue 23 item 2): shapes keeps its short loops,
every real dataset kind gets its recipe's values, and each dataset's settings file changes only with its
own entry."""
import copy
import re

import pytest
import yaml

from conftest import REPO
from pipeline.params import ParamError, validate
from pipeline.training.recipes import recipe_train, resolve_settings
from pipeline.training.schema import method_train_settings

SHIPPED = yaml.safe_load((REPO / "params.yaml").read_text())

# The entry a user writes for each real kind (README "Real datasets"): the kind alone; the readers'
# folders are checked by download/prepare, not by the params.
REAL_KINDS = ("coco2014", "flickr30k", "flickr8k", "mirflickr", "nuswide")


def _check_params(raw: dict, tmp_path):
    from stages.check_params import check_all

    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return check_all(path)


@pytest.mark.parametrize("kind", REAL_KINDS)
def test_every_real_kind_added_to_the_shipped_params_passes_check_params(kind, tmp_path):
    raw = copy.deepcopy(SHIPPED)
    raw["datasets"] = ["shapes", "real"]
    raw["data"]["real"] = {"kind": kind}
    p = _check_params(raw, tmp_path)
    shapes = method_train_settings(p, "scan_i2t", "shapes")  # shapes keeps its cap and early stopping
    assert (shapes["epochs"], shapes["patience"]) == (SHIPPED["per_dataset"]["shapes"]["train"]["epochs"], 2)
    real = method_train_settings(p, "scan_i2t", "real")
    assert real["patience"] == 0  # real kinds keep the official fixed schedules
    recipe_epochs = {"coco2014": 20, "flickr30k": 30, "flickr8k": 20}
    assert real["epochs"] == recipe_epochs.get(kind, SHIPPED["train"]["epochs"]), real
    assert method_train_settings(p, "ss", "real")["lr"] == SHIPPED["train"]["lr"] != \
        method_train_settings(p, "ss", "shapes")["lr"]


def test_the_shipped_coco_mini_entry_passes_check_params_with_the_coco_recipe(tmp_path):
    raw = copy.deepcopy(SHIPPED)
    raw["datasets"] = ["shapes", "coco_mini"]
    p = _check_params(raw, tmp_path)
    scan = method_train_settings(p, "scan_i2t", "coco_mini")
    assert (scan["epochs"], scan["lr_decay_epoch"], scan["batch_size"]) == (20, 10, 128)


def _run_on_coco_lines() -> list[tuple[str, list[str]]]:
    """Every "To run on COCO" sentence (README and docs/ pages), with its backquoted YAML snippets."""
    found = []
    for page in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]:
        for match in re.finditer(r"To run on COCO:\s*(.*?)then `make repro`", page.read_text(), re.S):
            found.append((page.name, re.findall(r"`([^`]+)`", match.group(1))))
    if not found:
        pytest.fail("no page says 'To run on COCO: ... then `make repro`'")
    return found


@pytest.mark.parametrize("page, snippets", _run_on_coco_lines())
def test_the_run_on_coco_lines_pass_check_params_literally(page, snippets, tmp_path):
    raw = copy.deepcopy(SHIPPED)
    assert snippets, page
    for snippet in snippets:
        key, _, value = snippet.partition(":")
        raw[key.strip()] = yaml.safe_load(value)
    p = _check_params(raw, tmp_path)
    assert p["datasets"] == ["coco"] and p["data"]["coco"]["kind"] == "coco2014"
    assert method_train_settings(p, "scan_i2t", "coco")["epochs"] == 20  # the official COCO schedule


def test_precedence_of_the_layers():
    """per_dataset method > method > recipe > per_dataset > train (pipeline/training/recipes.py)."""
    raw = {"datasets": ["f30k", "other"],
           "data": {"f30k": {"kind": "flickr30k"}, "other": {"kind": "flickr30k"}},
           "train": {"epochs": 40, "lr": 1e-4, "weight_decay": 0.5},
           "methods": {"scan_i2t": {"train": {"batch_size": 16}}},
           "per_dataset": {"f30k": {"train": {"epochs": 5, "batch_size": 8},
                                    "methods": {"scan_i2t": {"train": {"lr": 0.5}, "d_model": 32}}}}}
    p = validate(raw)
    f30k = recipe_train(p, "scan_i2t", "flickr30k", "f30k")
    assert f30k["lr"] == 0.5            # 1. per_dataset.f30k.methods.scan_i2t.train
    assert f30k["batch_size"] == 16     # 2. methods.scan_i2t.train over per_dataset.f30k.train (8)
    assert f30k["epochs"] == 30         # 3. the recipe's over per_dataset.f30k.train (5)
    assert f30k["weight_decay"] == 0.5  # 5. the shared train section
    assert recipe_train(p, "ss", "flickr30k", "f30k")["epochs"] == 5  # 4. per_dataset.f30k.train: no recipe size
    other = recipe_train(p, "scan_i2t", "flickr30k", "other")
    assert (other["epochs"], other["lr"], other["batch_size"]) == (30, 2e-4, 16)  # 4. the recipe, no layer
    assert resolve_settings(p, "scan_i2t", "flickr30k", "f30k")["d_model"] == 32
    assert resolve_settings(p, "scan_i2t", "flickr30k", "other")["d_model"] == 1024
    assert recipe_train(p, "ss", "flickr30k", "f30k")["batch_size"] == 8  # a method without its own


@pytest.mark.parametrize("layer, key", [
    ({"shapes": {"trian": {}}}, "per_dataset.shapes"),
    ({"shapes": {"train": {"device": "cpu"}}}, "per_dataset.shapes.train.device"),
    ({"shapes": {"train": {"epochs": "3"}}}, "per_dataset.shapes.train.epochs"),
    ({"shapes": {"methods": {"vsepp0": {}}}}, "unknown method 'vsepp0'"),
    ({"shapes": {"methods": {"ss": {"d_modle": 8}}}}, "per_dataset.shapes.methods.ss.d_modle"),
    ({"shapes": {"methods": {"ss": {"dropout": 1.5}}}}, "per_dataset.shapes.methods.ss.dropout"),
    ({"shapes": {"methods": {"ss": {"recipe": "offical"}}}}, "per_dataset.shapes.methods.ss.recipe"),
    ({"shapes": {"methods": {"scan_i2t": {"train": {"lr_decay_epoch": 9}}}}},
     "per_dataset.shapes.methods.scan_i2t.train.lr_decay_epoch"),
    ({"shapes": {"train": {"lr_decay_epoch": 9}}}, "per_dataset.shapes.train.lr_decay_epoch"),
])
def test_bad_per_dataset_input_names_the_key(layer, key):
    raw = {"datasets": ["shapes"], "train": {"epochs": 3}, "per_dataset": layer}
    with pytest.raises(ParamError, match=re.escape(key)):
        validate(raw, "p.yaml")


def test_a_datasets_settings_file_changes_only_with_its_own_entry(tmp_path):
    from typer.testing import CliRunner

    from stages.cli import app

    raw = copy.deepcopy(SHIPPED)
    raw["datasets"] = ["shapes", "other"]
    raw["data"]["other"] = {"kind": "coco2014"}  # a dataset without settings of its own

    def write(name: str) -> bytes:
        path = tmp_path / "params.yaml"
        path.write_text(yaml.safe_dump(raw, sort_keys=False))
        out = tmp_path / f"{name}.json"
        result = CliRunner().invoke(app, ["dataset-settings", name, "--params", str(path), "--out", str(out)])
        assert result.exit_code == 0, result.output
        return out.read_bytes()

    before = {name: write(name) for name in raw["datasets"]}
    assert b'"patience": 2' in before["shapes"] and b'"per_dataset": {}' in before["other"]
    raw["per_dataset"]["shapes"]["train"]["epochs"] = 2
    assert write("shapes") != before["shapes"]
    assert write("other") == before["other"]
