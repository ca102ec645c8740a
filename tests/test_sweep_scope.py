"""A sweep stays valid for what it swept (issue 25 item 3): the stale-sweep note counts only the params
that bear on the swept methods and datasets."""
import pytest

from pipeline.reporting.report import _sweep_notes
from pipeline.reporting.sweep import ExperimentState, Sweeps, bears_on, flatten_params

BASE = {"lambda": 0.1, "seed": 0, "train": {"lr": 0.001}, "datasets": ["shapes"],
        "run": {"methods": None, "exclude": []},
        "data": {"shapes": {"kind": "shapes"}, "coco_mini": {"kind": "coco"}},
        "per_dataset": {"shapes": {"train": {"epochs": 3}, "methods": {"scan_i2t": {"train": {"epochs": 1}}}}},
        "extract": {"detectors": {"shapes": "auto", "coco_mini": "auto"}, "num_boxes": 36},
        "methods": {"ss": {"d_model": 64}, "cca": {"n_components": 24}}}


def _sweeps() -> Sweeps:
    """A lambda sweep of ss on shapes, run from BASE."""
    baseline = ExperimentState("workspace", "workspace", flatten_params(BASE), {("shapes", "ss"): {"ndcg_ave": 50.0}})
    return Sweeps(baseline, {"lambda": [], "seed": []})


def _with(changes: dict) -> dict:
    import copy

    params = copy.deepcopy(BASE)
    for key, value in changes.items():
        *path, last = key.split(".")
        node = params
        for part in path:
            node = node.setdefault(part, {})
        node[last] = value
    return params


@pytest.mark.parametrize("changes", [
    {"methods.vsepp": {"embed_dim": 1024}},            # a new method
    {"methods.cca.n_components": 12},                  # another method's section
    {"run.exclude": ["vilbert"]},                       # what runs, not its numbers
    {"datasets": ["shapes", "coco_mini"]},
    {"data.coco_mini.root": "../elsewhere"},            # another dataset
    {"per_dataset.coco_mini": {"train": {"epochs": 2}}},
    {"per_dataset.shapes.methods.scan_i2t.train.epochs": 2},  # another method's settings on the swept dataset
    {"extract.detectors.coco_mini": "butd_r101_c4"},
    {"train.cache_features_gb": 2.0},                   # held in memory or streamed: the same numbers
    {"download.max_extract_gb": 5.0},                   # how files are fetched; their content is hash-checked
])
def test_a_change_that_bears_on_no_swept_result_leaves_the_sweep_valid(changes):
    assert _sweep_notes(_sweeps(), _with(changes), []) == []


def test_a_param_added_later_and_left_at_its_default_changes_nothing():
    """A key the sweep's params lack (the code added it since) is no change while it holds its default."""
    from pipeline.params import validate

    default = validate({})["detector"]["image_size"]
    assert _sweep_notes(_sweeps(), _with({"detector.image_size": default}), []) == []
    (note,) = _sweep_notes(_sweeps(), _with({"detector.image_size": default + 64}), [])
    assert "detector.image_size" in note


@pytest.mark.parametrize("changes, named", [
    ({"methods.ss.d_model": 32}, "methods.ss.d_model"),
    ({"train.lr": 0.01}, "train.lr"),
    ({"per_dataset.shapes.train.epochs": 5}, "train.epochs (3 there, 5 here)"),
    ({"per_dataset.shapes.methods.ss": {"d_model": 16}}, "methods.ss.d_model (64 there, 16 here)"),
    ({"extract.num_boxes": 10}, "extract.num_boxes"),
    ({"extract.detectors.shapes": "shapes_frcnn"}, "extract.detectors.shapes"),
])
def test_a_change_that_bears_on_a_swept_result_is_named(changes, named):
    (note,) = _sweep_notes(_sweeps(), _with(changes), [])
    assert "were run from other params" in note and named in note, note


def test_moving_a_value_between_layers_changes_nothing():
    """shapes' loop size written in `train` or in `per_dataset.shapes.train`: the same run."""
    moved = _with({"train.lr": 1e-4, "per_dataset.shapes.train.lr": 0.001})
    assert _sweep_notes(_sweeps(), moved, []) == []


def test_the_committed_sweeps_are_not_made_stale_by_the_layers_or_a_new_method():
    import json

    import yaml

    from conftest import REPO
    from pipeline.reporting.sweep import read_states, split_sweeps

    sweeps = split_sweeps(read_states(json.loads((REPO / "reports" / "experiments.json").read_text())))
    if sweeps is None:
        pytest.skip("reports/experiments.json holds no sweep")
    current = yaml.safe_load((REPO / "params.yaml").read_text())
    notes = _sweep_notes(sweeps, current, [])
    assert notes == [], notes  # the committed sweeps ran the committed params (rerun after issue 27's loops)
    current["methods"]["vsepp"] = {"embed_dim": 1024}  # a new method: no sweep ran it
    current["per_dataset"]["flickr30k"] = {"train": {"epochs": 2}}  # a dataset no sweep ran
    assert _sweep_notes(sweeps, current, []) == notes
    current["per_dataset"]["coco_mini"]["train"]["epochs"] = 2  # a dataset the sweeps ran: now stale
    assert any("train.epochs (20 there, 2 here)" in note for note in _sweep_notes(sweeps, current, []))


def test_bears_on_reads_the_keyed_sections():
    assert bears_on("methods.ss.d_model", {"shapes"}, {"ss"})
    assert not bears_on("methods.cca.reg", {"shapes"}, {"ss"})
    assert not bears_on("per_dataset.coco_mini.train.lr", {"shapes"}, {"ss"})
    assert bears_on("per_dataset.shapes.train.lr", {"shapes"}, {"ss"})
    assert bears_on("seed", set(), set())
