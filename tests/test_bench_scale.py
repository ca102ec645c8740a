"""bench/scale.py at a tiny size: the dataset it builds opens in the pipeline, agrees with itself and
carries its labels; the measurements return what the table reads (structure only, never timings)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from bench import scale
from pipeline.training.data import RetrievalData


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("scale")
    spec = scale.spec_of("coco", 1.0, images=300, dim=96)
    return scale.build(root, spec, log=lambda m: None), spec


def test_dataset_opens_in_the_pipeline_and_agrees(built):
    dataset, spec = built
    data = RetrievalData.open(dataset.parent, scale.DATASET)
    assert data.table.num_rows == len(data.store) == spec["images"] == 300
    assert len(data.text) == 300 * spec["captions_per_image"]
    assert np.array_equal(np.bincount(data.caption_rows, minlength=300), np.full(300, 5))
    assert data.info.feature_dim == 96 and data.info.num_regions == scale.BOXES
    assert data.info.num_labels == spec["labels"] == 80
    assert [len(data.split_items(s).image_rows) for s in ("val", "test")] == [spec["val"], spec["test"]]
    assert data.store.inner_chunk_rows > 0 and data.store.attrs["complete"]


def test_labels_are_recoverable_from_the_label_dims(built):
    dataset, spec = built
    data = RetrievalData.open(dataset.parent, scale.DATASET)
    features = data.store.read(np.arange(300))["features"]
    recovered = features[:, :, :spec["labels"]].mean(1) > 1.0
    assert np.array_equal(recovered, data.labels.astype(bool))
    assert data.labels.sum(1).min() >= 1
    # the captions' first two words name labels of their image
    first = np.array([ids[0] for ids in data.text.ids]) - len(scale.RESERVED)
    assert data.labels[data.caption_rows, first].all()


def test_a_complete_dataset_is_reused_and_a_different_size_rebuilt(built, tmp_path):
    dataset, spec = built
    stamp = (dataset / "features.zarr" / "zarr.json").stat().st_mtime_ns
    assert scale.build(dataset.parent, spec, log=lambda m: None) == dataset
    assert (dataset / "features.zarr" / "zarr.json").stat().st_mtime_ns == stamp
    small = scale.spec_of("nuswide", 1.0, images=40, dim=96)
    out = scale.build(tmp_path, small, log=lambda m: None)
    assert json.loads((out / scale.SPEC_FILE).read_text()) == small
    assert RetrievalData.open(tmp_path, scale.DATASET).table.num_rows == 40


def test_measurements_have_the_table_structure(built):
    dataset, spec = built
    res = scale.measure(dataset, ref_gb=0.01, batches=2, steps=1, eval_images=10, log=lambda m: None)
    ref = res["ref"]
    assert min(ref[k] for k in ("disk_cold", "disk_cached", "memory", "first_touch", "disk_bytes")) > 0
    assert min(ref[k] for k in ("decode", "decode_earlier", "zarr_slice", "store_read")) > 0
    assert ref["evicted"] in (True, False, None)
    for name in ("uniform", "earlier", "per_batch"):
        assert res["stream"][name]["batches"] == 2 and res["stream"][name]["bytes_per_s"] > 0
    shipped = res["stream"]["shipped"]                                  # whole windows: here the split
    assert shipped["batches"] == (300 - spec["val"] - spec["test"]) * 5 // 64 and shipped["store_bytes_per_s"] > 0
    assert shipped["window_images"] == 300 - spec["val"] - spec["test"]
    assert res["stream"]["shipped"]["block_rows"] == RetrievalData.open(dataset.parent, scale.DATASET).store.inner_chunk_rows
    assert res["stream"]["uniform"]["block_rows"] is None
    assert res["fill_earlier"]["feature_bytes"] == res["fill"]["feature_bytes"]
    fill = res["fill"]
    assert fill["feature_bytes"] == (300 - spec["val"] - spec["test"]) * scale.BOXES * 96 * 2
    assert fill["cache_bytes"] >= fill["feature_bytes"] and fill["transient_bytes"] >= 0 and "held in memory" in fill["note"]
    assert res["cached"]["batches_per_s"] > 0 and res["cached"]["batches_per_s_float32"] > 0
    assert res["ss_streamed"] > 0 and res["ss_cached"] > 0
    assert res["eval_scan"]["images"] == 10 and res["eval_scan"]["captions"] == 50
    assert res["eval_ss"]["images"] == spec["test"] and res["eval_ss"]["coco5k_seconds"] > 0
    text = scale.table(res, spec, "python bench/scale.py --images 300", 1.0, scale.du(dataset))
    assert text.count("\n|") == 2 + 23 and "300 images" in text and "(lz4hc)" in text
