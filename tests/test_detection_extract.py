"""Extraction into the store: layout and row alignment, resume, distributed chunks, bad images,
the stage command, and real COCO images through a randomly initialised bottom-up-attention model."""
from __future__ import annotations

import hashlib
import json

import numpy as np
import pyarrow as pa
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from conftest import REPO
from detection_helpers import RESIZED, params, shapes_table, tiny_detector
from pipeline.data.table import read_table
from pipeline.detection.butd import ButdConfig, build_butd, init_random_
from pipeline.detection.detectors import LoadedDetector, load_detector
from pipeline.detection.extract import extract_features
from pipeline.detection.images import ImageError
from pipeline.detection.positions import box_positions
from pipeline.detection.settings import extract_settings
from pipeline.detection.store import ARRAYS, FeatureStore, partial_path
from pipeline.io import write_json
from pipeline.machine import machine_record

N = 10


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    table = shapes_table(root, N)
    tiny_detector(root / "models")
    return root, read_table(table)


def run(root, table, out, **kw):
    p = params(**kw.pop("extract", {}))
    settings = extract_settings(p, "tiny")
    detector = load_detector(settings, "tiny", root / "models")
    return extract_features(table, out, detector, settings, progress=False, **kw)


def all_arrays(path) -> dict:
    store = FeatureStore(path)
    return store.read(np.arange(len(store)))


def test_store_layout_and_row_alignment(tiny, tmp_path):
    root, table = tiny
    out = tmp_path / "features.zarr"
    stats = run(root, table, out)
    assert stats["complete"] and stats["images"] == N and stats["valid_images"] == N
    store = FeatureStore(out)
    assert len(store) == N and store.dim == 32 and store.num_boxes == 36 and store.num_classes == 24
    assert store.attrs["detector"] == "shapes_frcnn" and len(store.attrs["weights_sha256"]) == 64
    assert store.attrs["machine"]["isa"] == machine_record()["isa"]  # the class that computed the features
    assert store.attrs["selection"]["num_boxes"] == 36 and store.attrs["selection"]["score_threshold"] == 0.5
    assert store.group["features"].dtype == np.float16
    a = all_arrays(out)
    shapes = {"features": (N, 36, 32), "boxes": (N, 36, 4), "positions": (N, 36, 5), "scores": (N, 36),
              "classes": (N, 36), "image_size": (N, 2), "valid": (N,)}
    assert {k: v.shape for k, v in a.items()} == shapes
    sizes = np.stack([table.column("width").to_numpy(), table.column("height").to_numpy()], 1)
    assert np.array_equal(a["image_size"], sizes)  # rows follow the table, resized images included
    assert {tuple(a["image_size"][r]) for r in RESIZED} == set(RESIZED.values())
    assert np.allclose(a["positions"], box_positions(a["boxes"], a["image_size"]))
    assert (a["boxes"][..., 0] >= 0).all() and (a["boxes"][..., 2] <= a["image_size"][:, None, 0] + 1e-3).all()
    assert a["classes"].min() >= 0 and a["classes"].max() < 24 and a["valid"].all()
    assert np.isfinite(a["features"]).all() and (np.diff(a["scores"], axis=1) <= 1e-6).all()
    # A row extracted on its own (another batch, another chunk) gives the same RoIs. (Rows whose
    # size differs from their batch's largest are zero-padded, which changes border features.)
    single = run(root, table.slice(5, 1), tmp_path / "one.zarr")
    assert single["images"] == 1
    b = all_arrays(tmp_path / "one.zarr")
    assert np.allclose(b["boxes"][0], a["boxes"][5], atol=1e-2)
    assert np.allclose(b["features"][0], a["features"][5], atol=2e-2, rtol=1e-2)


def test_resume_after_interruption_equals_uninterrupted_run(tiny, tmp_path):
    root, table = tiny
    reference = tmp_path / "ref.zarr"
    run(root, table, reference)
    out = tmp_path / "features.zarr"
    first = run(root, table, out, max_chunks=1)  # stopped after one chunk: nothing at the final path
    assert not first["complete"] and not out.exists() and partial_path(out).is_dir()
    marker_dir = partial_path(out) / "_progress"
    assert sorted(p.name for p in marker_dir.iterdir()) == ["00000000"]
    # A chunk written without its marker (killed mid-chunk) is redone.
    store_arrays = __import__("zarr").open_group(partial_path(out), mode="r+")
    store_arrays["features"][4:8] = np.full((4, 36, 32), 7.0, dtype=np.float16)
    second = run(root, table, out)
    assert second["complete"] and second["run"]["resumed"] and second["run"]["images"] == N - 4
    got, want = all_arrays(out), all_arrays(reference)
    for name in ARRAYS:
        assert np.array_equal(got[name], want[name]), name
    assert second["images"] == N  # stats gathered over both runs


def test_ranks_write_disjoint_chunks_of_one_store(tiny, tmp_path):
    root, table = tiny
    run(root, table, tmp_path / "ref.zarr")
    out = tmp_path / "features.zarr"
    r1 = run(root, table, out, rank=1, world=2, finalize=False)
    r0 = run(root, table, out, rank=0, world=2, finalize=False)
    assert r1["run"]["images"] == 4 and r0["run"]["images"] == 6  # chunks {1} and {0, 2}
    last = run(root, table, out)
    assert last["complete"] and last["run"]["images"] == 0
    got, want = all_arrays(out), all_arrays(tmp_path / "ref.zarr")
    assert all(np.array_equal(got[k], want[k]) for k in ARRAYS)


def test_bad_image_stops_or_is_skipped_and_masked(tiny, tmp_path):
    root, table = tiny
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    paths = table.column("file_path").to_pylist()
    paths[5] = str(bad)
    broken = table.set_column(table.schema.get_field_index("file_path"), "file_path", pa.array(paths))
    with pytest.raises(ImageError, match=r"broken\.png: not a readable image"):
        run(root, broken, tmp_path / "a.zarr")
    assert not (tmp_path / "a.zarr").exists()
    stats = run(root, broken, tmp_path / "b.zarr", extract={"on_bad_image": "skip", "workers": 2})
    assert stats["skipped_images"] == 1 and stats["skipped"][0]["row"] == 5 and stats["valid_images"] == N - 1
    store = FeatureStore(tmp_path / "b.zarr")
    assert store.valid.tolist() == [r != 5 for r in range(N)]
    row = store.read([5])
    assert not row["features"].any() and not row["image_size"].any()


def test_extract_and_train_detector_stage_commands(tmp_path, monkeypatch):
    from stages.cli import app

    monkeypatch.setattr(torch, "set_num_threads", lambda n: None)  # the stages' process-wide setting

    shapes_table(tmp_path, 8, dataset="mini")
    cfg = params("mini")
    params_file = tmp_path / "params.yaml"
    params_file.write_text(json.dumps({"datasets": ["mini"], "data": {"mini": {"kind": "shapes"}},
                                       "extract": {k: cfg["extract"][k] for k in ("workers", "chunk_size", "batch_size", "device")},
                                       "detector": cfg["detector"]}))
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    result = runner.invoke(app, ["extract", "mini", "--no-progress"])
    assert result.exit_code == 2 and "trained shapes detector not found" in result.output
    result = runner.invoke(app, ["train-detector", "mini", "--no-progress"])
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "reports" / "detector" / "mini.json").read_text())
    history = json.loads((tmp_path / "reports" / "detector" / "mini_history.json").read_text())
    assert history[-1]["iteration"] == 4 and 0.0 <= metrics["recall"] <= 1.0
    result = runner.invoke(app, ["extract", "mini", "--no-progress"])
    assert result.exit_code == 0, result.output
    stats = json.loads((tmp_path / "data" / "mini" / "extract_stats.json").read_text())
    assert stats["images"] == 8 and stats["detector"] == "shapes_frcnn"
    assert len(FeatureStore(tmp_path / "data" / "mini" / "features.zarr")) == 8
    assert "Output data/<dataset>/features.zarr" in runner.invoke(app, ["extract", "--help"]).output


def test_extract_params_choose_the_detector_and_are_checked():
    from pipeline.detection.settings import detector_name
    from pipeline.params import ParamError, validate

    p = validate({"datasets": ["s"], "data": {"s": {"kind": "shapes"}, "c": {"kind": "coco"}},
                  "extract": {"detectors": {"c": "frcnn_r50_fpn_v2_coco"}}})
    assert detector_name(p, "s") == "shapes_frcnn" and detector_name(p, "c") == "frcnn_r50_fpn_v2_coco"
    p["extract"]["detectors"] = {}
    assert detector_name(p, "c") == "butd_r101_c4"
    for key, value, message in [("detectors", {"s": "yolo"}, "extract.detectors.s' must be one of: .*, got 'yolo'"),
                                ("on_bad_image", "ignore", "extract.on_bad_image"),
                                ("dtype", "int8", "extract.dtype"), ("nms", 0.95, "nms"),
                                ("device", "tpu", "extract.device")]:
        with pytest.raises(ParamError, match=message):  # checked when params are loaded
            validate({"datasets": ["s"], "data": {"s": {"kind": "shapes"}}, "extract": {key: value}})
    with pytest.raises(ParamError, match="extract.unknown"):
        validate({"extract": {"unknown": 1}})


def test_autocast_runs_the_rpn_in_float32(tiny):
    root, _ = tiny
    from pipeline.detection.regions import candidate_regions

    detector = load_detector(extract_settings(params(), "tiny"), "tiny", root / "models")
    images = [torch.rand(3, 128, 128), torch.rand(3, 96, 120)]
    cand = candidate_regions(detector.model, images, min_candidates=36, amp_dtype=torch.bfloat16)
    assert cand.features.dtype == torch.bfloat16 and cand.boxes.dtype == torch.float32
    assert cand.probs.dtype == torch.float32 and torch.isfinite(cand.features.float()).all()


def test_coco_mini_images_through_random_butd(coco_mini, tmp_path):
    files = sorted((coco_mini / "val2017").glob("*.jpg"))[:2]
    sizes = [Image.open(f).size for f in files]
    table = pa.table({"file_path": [str(f) for f in files], "width": [s[0] for s in sizes],
                      "height": [s[1] for s in sizes]})
    config = ButdConfig(min_size=128, max_size=192, proposals=20)
    model = init_random_(build_butd(config))
    detector = LoadedDetector("butd_r101_c4", model, [f"vg_{i}" for i in range(1600)], 2048, "random", "0" * 64)
    settings = extract_settings(params(min_size=128, max_size=192, proposals=20, batch_size=2), "tiny")
    stats = extract_features(table, tmp_path / "coco.zarr", detector, settings, progress=False)
    assert stats["complete"] and stats["valid_images"] == 2
    a = all_arrays(tmp_path / "coco.zarr")
    assert a["features"].shape == (2, 36, 2048) and np.isfinite(a["features"]).all()
    assert a["image_size"].tolist() == [list(s) for s in sizes]
    assert (a["positions"][..., :4] >= -1e-6).all() and (a["positions"][..., :4] <= 1 + 1e-6).all()
    assert a["classes"].max() < 1600
    # 20 proposals < 36 RoIs: the whole-image box joins the candidates and the RoIs repeat.
    assert stats["images_with_repeated_rois"] == 2
    for i, (w, h) in enumerate(sizes):
        unique = np.unique(a["boxes"][i], axis=0)
        assert len(unique) <= 21 and any(np.allclose(b, [0, 0, w, h]) for b in unique)
    write_json(tmp_path / "stats.json", stats)  # stats are JSON-serialisable


def test_train_detector_records_a_downloaded_detector_instead_of_training(tmp_path, monkeypatch):
    """A real dataset extracts with downloaded weights: the stage checks and pins them, trains nothing."""
    from stages.cli import app

    weights = tmp_path / "my_frcnn.pth"
    params_file = tmp_path / "params.yaml"
    params_file.write_text(json.dumps({"datasets": ["real"], "data": {"real": {"kind": "coco"}},
                                       "extract": {"detectors": {"real": "frcnn_r50_fpn_v2_coco"},
                                                   "weights": {"frcnn_r50_fpn_v2_coco": str(weights)}},
                                       "download": {"registry": str(REPO / "pipeline/data/registry.yaml")}}))
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    result = runner.invoke(app, ["train-detector", "real"])
    assert result.exit_code == 2 and "my_frcnn.pth: weights file not found" in result.output
    weights.write_bytes(b"not really weights")
    result = runner.invoke(app, ["train-detector", "real"])
    assert result.exit_code == 0, result.output
    record = json.loads((tmp_path / "models" / "real" / "detector" / "pretrained.json").read_text())
    assert record == {"detector": "frcnn_r50_fpn_v2_coco", "trained": False, "weights_file": "my_frcnn.pth",
                      "weights_sha256": hashlib.sha256(b"not really weights").hexdigest()}
    # nothing was measured: empty metrics and history files (the record lives with the model)
    assert json.loads((tmp_path / "reports" / "detector" / "real.json").read_text()) == {}
    assert json.loads((tmp_path / "reports" / "detector" / "real_history.json").read_text()) == []
