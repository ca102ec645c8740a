import json
import shutil

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from pipeline.data.coco import AnnotationError
from pipeline.data.labels import multi_hot
from pipeline.data.prepare import prepare_dataset
from pipeline.data.table import TableError, label_names, read_table
from pipeline.params import ParamError, validate

PREP = {"images_without_labels": "keep", "max_captions": 5}


def coco_params(root, splits=None):
    return {"kind": "coco", "root": str(root), "splits": splits or {"train": "train2017", "val": "val2017"}}


def test_shapes_table(shapes_raw):
    stats = prepare_dataset("shapes", validate({})["data"]["shapes"], PREP, shapes_raw)
    table = read_table(shapes_raw / "shapes" / "table.parquet")
    assert stats["images"] == {"train": 24, "val": 8, "test": 8}
    assert table.num_rows == 40
    assert len(label_names(table)) == 24
    rows = table.to_pylist()
    assert [r["split"] for r in rows] == ["train"] * 24 + ["val"] * 8 + ["test"] * 8
    for r in rows:
        assert len(r["captions"]) == 5
        assert sorted(set(r["box_labels"])) == r["labels"]
        assert len(r["boxes"]) == len(r["box_labels"])
        with Image.open(r["file_path"]) as im:
            assert im.size == (r["width"], r["height"])
    y = multi_hot(table)
    assert y.shape == (40, 24) and y.sum() == sum(len(r["labels"]) for r in rows)
    assert not list((shapes_raw / "shapes").glob(".*tmp*"))


def test_coco_mini(coco_mini, tmp_path):
    stats = prepare_dataset("coco_mini", coco_params(coco_mini), PREP, tmp_path)
    table = read_table(tmp_path / "coco_mini" / "table.parquet")
    assert stats["images"] == {"train": 80, "val": 79}
    # 80 val image files are in the folder but in no annotation file: ignored and counted.
    assert stats["unlisted_images"] == 80
    names = label_names(table)
    assert len(names) == 80 and names[0] == "person"
    rows = {r["image_id"]: r for r in table.to_pylist()}
    raw = json.loads((coco_mini / "annotations" / "instances_val2017.json").read_text())
    cat_ids = sorted(c["id"] for c in raw["categories"])
    one = raw["annotations"][0]
    row = rows[one["image_id"]]
    assert cat_ids.index(one["category_id"]) in row["labels"]
    if not one["iscrowd"]:
        x, y, w, h = one["bbox"]
        assert any(np.allclose(b, [x, y, x + w, y + h], atol=1e-3) for b in row["boxes"])
    caps = json.loads((coco_mini / "annotations" / "captions_val2017.json").read_text())
    expected = sorted((a["id"], a["caption"].strip()) for a in caps["annotations"] if a["image_id"] == one["image_id"])
    assert row["captions"] == [c for _, c in expected][:5]
    assert all(r["width"] > 0 and r["height"] > 0 for r in rows.values())


def test_coco_mini_unlabelled_policy(coco_mini, tmp_path):
    """Images listed with captions but no instance: kept with no label, or dropped, by param."""
    root = tmp_path / "coco"
    shutil.copytree(coco_mini / "annotations", root / "annotations")
    (root / "val2017").symlink_to(coco_mini / "val2017")
    (root / "train2017").symlink_to(coco_mini / "train2017")
    path = root / "annotations" / "instances_val2017.json"
    doc = json.loads(path.read_text())
    victims = {doc["images"][0]["id"], doc["images"][1]["id"]}
    doc["annotations"] = [a for a in doc["annotations"] if a["image_id"] not in victims]
    path.write_text(json.dumps(doc))
    kept = prepare_dataset("c", coco_params(root), PREP, tmp_path / "out")
    rows = {r["image_id"]: r for r in read_table(tmp_path / "out" / "c" / "table.parquet").to_pylist()}
    assert kept["images_without_labels"] == 2 and kept["images"]["val"] == 79
    assert all(rows[v]["labels"] == [] and len(rows[v]["captions"]) == 5 for v in victims)
    dropped = prepare_dataset("c", coco_params(root), dict(PREP, images_without_labels="drop"), tmp_path / "out")
    rows = {r["image_id"] for r in read_table(tmp_path / "out" / "c" / "table.parquet").to_pylist()}
    assert dropped["images"]["val"] == 77 and not victims & rows


# --- bad input on a miniature COCO folder built here -------------------------------------------

def build_mini(root):
    (root / "annotations").mkdir(parents=True)
    (root / "val").mkdir()
    images = []
    for i in (1, 2):
        Image.new("RGB", (20, 10), (i * 50, 0, 0)).save(root / "val" / f"{i}.jpg")
        images.append({"id": i, "file_name": f"{i}.jpg", "width": 20, "height": 10})
    caps = {"images": images, "annotations": [{"id": 20 - i, "image_id": i % 2 + 1, "caption": f" cap {i} "} for i in range(4)]}
    inst = {"images": images, "categories": [{"id": 7, "name": "cat"}, {"id": 3, "name": "dog"}],
            "annotations": [{"id": 1, "image_id": 1, "category_id": 7, "bbox": [1, 1, 5, 5], "iscrowd": 0},
                            {"id": 2, "image_id": 2, "category_id": 3, "bbox": [0, 0, 4, 4], "iscrowd": 1}]}
    (root / "annotations" / "captions_val.json").write_text(json.dumps(caps))
    (root / "annotations" / "instances_val.json").write_text(json.dumps(inst))
    return coco_params(root, {"test": "val"})


def edit(root, name, fn):
    path = root / "annotations" / name
    doc = json.loads(path.read_text())
    fn(doc)
    path.write_text(json.dumps(doc))


def test_mini_reads_correctly(tmp_path):
    params = build_mini(tmp_path / "src")
    prepare_dataset("m", params, PREP, tmp_path)
    rows = read_table(tmp_path / "m" / "table.parquet").to_pylist()
    assert [r["image_id"] for r in rows] == [1, 2]
    assert rows[0]["captions"] == ["cap 2", "cap 0"]  # annotation-id order, stripped
    assert rows[0]["labels"] == [1] and rows[1]["labels"] == [0]  # ids sorted by category id: dog=0, cat=1
    assert rows[0]["boxes"] == [[1.0, 1.0, 6.0, 6.0]] and rows[1]["boxes"] == []  # crowd: label, no box


@pytest.mark.parametrize("breaker, needle", [
    (lambda r: (r / "annotations" / "captions_val.json").unlink(), "captions_val.json: annotation file not found"),
    (lambda r: (r / "annotations" / "instances_val.json").write_text("{oops"), "instances_val.json: not valid JSON"),
    (lambda r: edit(r, "captions_val.json", lambda d: d.pop("annotations")), "captions_val.json: field 'annotations' missing"),
    (lambda r: (r / "val" / "2.jpg").unlink(), "image 2 is listed but its file"),
    (lambda r: edit(r, "instances_val.json", lambda d: d["annotations"][0].update(image_id=99)), "instance 1 points to unknown image_id 99"),
    (lambda r: edit(r, "captions_val.json", lambda d: d["annotations"][0].update(image_id=42)), "caption 20 points to unknown image_id 42"),
    (lambda r: edit(r, "instances_val.json", lambda d: d["annotations"][0].update(category_id=5)), "instance 1 points to unknown category_id 5"),
    (lambda r: edit(r, "instances_val.json", lambda d: d["annotations"][0].update(bbox=[1, 2])), "instance 1 has no valid 'bbox'"),
    (lambda r: edit(r, "instances_val.json", lambda d: d["images"][0].pop("width")), "image 1 has no valid 'width'"),
    (lambda r: edit(r, "captions_val.json", lambda d: d["annotations"][0].update(caption=None)), "caption 20 has no valid 'caption'"),
    (lambda r: [edit(r, n, lambda d: d.update(images=[], annotations=[])) for n in ("captions_val.json", "instances_val.json")], "the dataset is empty"),
    (lambda r: shutil.rmtree(r), "dataset folder not found"),
])
def test_bad_input_names_the_problem(tmp_path, breaker, needle):
    params = build_mini(tmp_path / "src")
    prepare_dataset("m", params, PREP, tmp_path)  # a good table from an earlier run ...
    before = (tmp_path / "m" / "table.parquet").read_bytes()
    breaker(tmp_path / "src")
    with pytest.raises((AnnotationError, FileNotFoundError)) as err:
        prepare_dataset("m", params, PREP, tmp_path)
    assert needle in str(err.value)
    # ... is left untouched by the failed run, and no temporary file is left behind.
    assert (tmp_path / "m" / "table.parquet").read_bytes() == before
    assert not list((tmp_path / "m").glob(".*tmp*"))


def test_bad_split_mapping(tmp_path):
    params = build_mini(tmp_path / "src")
    with pytest.raises(ParamError, match="data.m.splits must map"):
        prepare_dataset("m", dict(params, splits={"training": "val"}), PREP, tmp_path)


def test_interrupted_write_leaves_no_table(tmp_path, monkeypatch):
    params = build_mini(tmp_path / "src")

    def boom(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(pq, "write_table", boom)
    with pytest.raises(KeyboardInterrupt):
        prepare_dataset("m", params, PREP, tmp_path)
    assert not (tmp_path / "m" / "table.parquet").exists()
    assert not list((tmp_path / "m").glob(".*"))
    with pytest.raises(TableError, match="prepared table not found"):
        read_table(tmp_path / "m" / "table.parquet")
