import pytest
import yaml

from conftest import REPO
from pipeline.params import ParamError, dataset_params, load_params, validate

REPO_PARAMS = REPO / "params.yaml"


def test_repository_params_are_valid_and_complete():
    p = load_params(REPO_PARAMS)
    assert p["datasets"] == ["shapes", "coco_mini"]
    assert isinstance(p["lambda"], float)
    assert dataset_params(p, "shapes")["kind"] == "shapes"


def test_defaults_fill_missing_keys():
    p = validate({"data": {"shapes": {"kind": "shapes", "n_images": 50}}})
    assert p["data"]["shapes"]["n_images"] == 50
    assert p["data"]["shapes"]["n_val"] == 200
    assert p["prepare"]["images_without_labels"] == "keep"


@pytest.mark.parametrize("raw, needle", [
    ({"lamda": 0.1}, "unknown parameter 'lamda'"),
    ({"lambda": "high"}, "parameter 'lambda' must be a number"),
    ({"prepare": {"max_captions": 2.5}}, "parameter 'prepare.max_captions' must be an integer"),
    ({"prepare": {"images_without_labels": "ignore"}}, "'prepare.images_without_labels' must be 'keep' or 'drop'"),
    ({"data": {"shapes": {"kind": "shapes", "n_imgs": 3}}}, "unknown parameter 'data.shapes.n_imgs'"),
    ({"data": {"shapes": {"kind": "shapes", "n_images": True}}}, "'data.shapes.n_images' must be an integer"),
    ({"data": {"x": {"kind": "lmdb"}}}, "'data.x.kind' is 'lmdb'"),
    ({"data": {"x": [1]}}, "'data.x' must be a mapping with a 'kind'"),
    ({"datasets": ["nope"]}, "dataset 'nope' is listed in 'datasets' but has no entry"),
    ({"datasets": "shapes"}, "parameter 'datasets' must be a list"),
    ([1, 2], "expected a mapping at the top level"),
])
def test_bad_params_name_the_key(raw, needle):
    with pytest.raises(ParamError) as err:
        validate(raw, "p.yaml")
    assert needle in str(err.value)
    assert "p.yaml" in str(err.value)


def test_unreadable_params_files(tmp_path):
    with pytest.raises(ParamError, match="params file not found"):
        load_params(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("lambda: [unclosed\n")
    with pytest.raises(ParamError, match="bad.yaml: not valid YAML"):
        load_params(bad)


def test_unknown_dataset_lists_known_ones():
    p = validate({})
    with pytest.raises(ParamError, match="unknown dataset 'coco'"):
        dataset_params(p, "coco")


def test_extract_stage_tracks_every_extract_param_and_only_its_own_detector():
    """dvc.yaml lists the `extract` keys one by one (so that one dataset's detector choice re-runs that
    dataset only); a key added to the schema but not to the list would go untracked."""
    from pipeline.detection.schema import EXTRACT_SCHEMA

    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    tracked = {k for k in stages["extract"]["do"]["params"] if k.startswith("extract.")}
    assert tracked == {f"extract.{k}" for k in EXTRACT_SCHEMA} | {"extract.weights", "extract.detectors.${item}"}
    assert "extract.detectors.${item}" in stages["train_detector"]["do"]["params"]
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    assert set(params["datasets"]) <= set(params["extract"]["detectors"])  # DVC needs each dataset's key


@pytest.mark.parametrize("raw, key", [
    ({"metrics": {"t2i_discount": "bogus"}}, "metrics.t2i_discount"),
    ({"metrics": {"f1_threshold": 2}}, "metrics.f1_threshold"),
    ({"metrics": {"recall_ks": [0, 5]}}, "metrics.recall_ks"),
    ({"metrics": {"datasets": {"coco": {"protocols": ["coco2k"]}}}}, "metrics.datasets.coco.protocols"),
    ({"extract": {"dtype": "int8"}}, "extract.dtype"),
    ({"extract": {"num_boxes": 0}}, "extract.num_boxes"),
    ({"extract": {"nms": 0.95}}, "extract.nms"),
    ({"extract": {"detectors": {"shapes": "yolo"}}}, "extract.detectors.shapes"),
    ({"extract": {"weights": {"shapes_frcnn": 3}}}, "extract.weights.shapes_frcnn"),
    ({"detector": {"lr": 0.0}}, "detector.lr"),
    ({"text": {"max_len": 0}}, "text.max_len"),
    ({"datasets": ["c"], "data": {"c": {"kind": "coco2014", "restval": "keep"}}}, "data.c.restval"),
    ({"datasets": ["m"], "data": {"m": {"kind": "mirflickr", "tag_vocabulary": "some"}}}, "data.m.tag_vocabulary"),
    ({"download": {"retries": -1}}, "download.retries"),
    ({"report": {"lambda_methods": ["nope"]}}, "report.lambda_methods"),
    ({"methods": {"dual_path": {"ranking_negatives": "semi"}}}, "methods.dual_path.ranking_negatives"),
    ({"methods": {"scan_t2i": {"lambda2": 0.0}}}, "methods.scan_t2i.lambda2"),
])
def test_every_value_is_checked_when_params_are_loaded(tmp_path, raw, key):
    """issue 18 case 9: values that type-check but are out of range fail at load, naming the key, instead
    of after a training epoch (or never)."""
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ParamError) as err:
        load_params(path)
    assert f"parameter '{key}" in str(err.value)
    assert str(err.value).startswith(f"{path}: ")


def test_an_error_names_its_params_file_once(tmp_path):
    """issue 18 case 10: the message was "params.yaml: extract params.yaml: parameter ..."."""
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump({"extract": {"num_boxes": 0}}))
    with pytest.raises(ParamError) as err:
        load_params(path)
    assert str(err.value).count("params.yaml") == 1, str(err.value)
    assert str(err.value) == f"{path}: parameter 'extract.num_boxes' must be >= 1, got 0"


def test_loading_params_imports_no_torch():
    import subprocess
    import sys

    code = "import sys, pipeline.params; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], cwd=REPO).returncode == 0
