"""MS-COCO 2014 + Karpathy split (miniature built from the real coco-mini, served locally), Flickr30k and
Flickr8k (Karpathy JSON + user images), and the Karpathy path run directly on the real coco-mini."""
import copy
import json
import shutil

import pytest

from datasets_helpers import coco2014_sources, download_params, publish, serving, write_registry
from pipeline.data import coco, splits
from pipeline.data.download import download_dataset
from pipeline.data.karpathy import KarpathyError
from pipeline.data.prepare import prepare_dataset
from pipeline.data.table import label_names, read_table
from pipeline.params import COCO2014_SCHEMA, DATASET_SCHEMAS

PREP = {"images_without_labels": "keep", "max_captions": 5}


@pytest.fixture(scope="module")
def served(tmp_path_factory, coco_mini_root):
    """Download coco (both sources) and flickr30k/flickr8k (Karpathy only) from a local server, once."""
    tmp = tmp_path_factory.mktemp("karpathy")
    sources, facts = coco2014_sources(coco_mini_root)
    for kind, f in facts["flickr"].items():
        for name, data in f["images"].items():
            (tmp / f"{kind}_images" / name).parent.mkdir(parents=True, exist_ok=True)
            (tmp / f"{kind}_images" / name).write_bytes(data)
    with serving() as server:
        registry = write_registry(tmp / "registry.yaml", sources)
        dl = download_params(tmp, registry, publish(server, sources))
        counts = download_dataset("coco", coco_params(tmp), tmp / "data", dl)
        assert counts == {"coco2014": 3, "karpathy": 1}
        for kind in ("flickr30k", "flickr8k"):
            assert download_dataset(kind, flickr_params(tmp, kind), tmp / "data", dl) == {"karpathy": 1}
        # The shared Karpathy archive was fetched once, then reused from the verified local copy.
        assert len(server.gets("karpathy/caption_datasets.zip")) == 1
    return tmp, facts


@pytest.fixture(scope="module")
def coco_mini_root():
    from conftest import COCO_MINI

    if not (COCO_MINI / "annotations").is_dir():
        pytest.skip(f"real-data fixture {COCO_MINI} is absent")
    return COCO_MINI


def coco_params(tmp, **kw):
    p = copy.deepcopy(COCO2014_SCHEMA)
    p.update(split_file=str(tmp / "splits" / "coco2014_karpathy.json"))
    p.update(kw)
    return p


def flickr_params(tmp, kind, **kw):
    p = copy.deepcopy(DATASET_SCHEMAS[kind])
    p.update(images_root=str(tmp / f"{kind}_images"), split_file=str(tmp / "splits" / f"{kind}.json"))
    p.update(kw)
    return p


def coco_truth(annotations: dict, suffix: str):
    caps = json.loads(annotations[f"annotations/captions_{suffix}.json"])
    inst = json.loads(annotations[f"annotations/instances_{suffix}.json"])
    cat_ids = sorted(c["id"] for c in inst["categories"])
    by_image = {}
    for im in caps["images"]:
        texts = sorted((a["id"], a["caption"].strip()) for a in caps["annotations"] if a["image_id"] == im["id"])
        labels = sorted({cat_ids.index(a["category_id"]) for a in inst["annotations"] if a["image_id"] == im["id"]})
        by_image[im["id"]] = ([t for _, t in texts][:5], labels)
    return by_image


def test_coco2014_download_and_prepare(served, tmp_path):
    tmp, facts = served
    params = coco_params(tmp_path)
    stats = prepare_dataset("coco", params, PREP, tmp / "data")
    table = read_table(tmp / "data" / "coco" / "table.parquet")
    assert len(label_names(table)) == 80 and label_names(table)[0] == "person"
    entries = facts["karpathy"]
    order = {s: [e["cocoid"] for e in entries if (e["split"] if e["split"] != "restval" else "train") == s]
             for s in ("train", "val", "test")}
    rows = table.to_pylist()
    assert [r["image_id"] for r in rows] == order["train"] + order["val"] + order["test"]  # Karpathy file order
    assert stats["images"] == {"train": 6, "val": 2, "test": 4}
    truth = {**coco_truth(facts["annotations"], "train2014"), **coco_truth(facts["annotations"], "val2014")}
    for r in rows:
        assert (r["captions"], r["labels"]) == truth[r["image_id"]]
        assert r["file_path"].endswith(f"_{r['image_id']:012d}.jpg") and len(r["captions"]) == 5
    frozen = splits.read_split(tmp_path / "splits" / "coco2014_karpathy.json", "coco2014")
    assert frozen == order
    # restval dropped (papers/000's 82,783-image training set), with its own split file.
    dropped = prepare_dataset("coco", coco_params(tmp_path, restval="drop", split_file=str(tmp_path / "s2.json")),
                              PREP, tmp / "data")
    assert dropped["images"] == {"train": 4, "val": 2, "test": 4} and dropped["source"]["restval_dropped"] == 2


def test_coco2014_karpathy_image_without_annotations(served, tmp_path):
    tmp, facts = served
    doc = {"images": copy.deepcopy(facts["karpathy"]), "dataset": "coco"}
    doc["images"][0]["cocoid"] = 999999999
    (tmp_path / "dataset_coco.json").write_text(json.dumps(doc))
    params = coco_params(tmp_path, karpathy_json=str(tmp_path / "dataset_coco.json"))
    with pytest.raises(KarpathyError, match="cocoid 999999999 .* is in no COCO annotation file of train2014, val2014"):
        prepare_dataset("coco", params, PREP, tmp / "data")
    doc["images"][1]["split"] = "holdout"
    (tmp_path / "dataset_coco.json").write_text(json.dumps(doc))
    with pytest.raises(KarpathyError, match=r"images\[1\] has split 'holdout'"):
        prepare_dataset("coco", params, PREP, tmp / "data")


@pytest.mark.parametrize("kind, counts", [("flickr30k", {"train": 3, "val": 2, "test": 2}),
                                          ("flickr8k", {"train": 3, "val": 1, "test": 1})])
def test_flickr_download_and_prepare(served, tmp_path, kind, counts):
    tmp, facts = served
    stats = prepare_dataset(kind, flickr_params(tmp, kind, split_file=str(tmp_path / "s.json")), PREP, tmp / "data")
    table = read_table(tmp / "data" / kind / "table.parquet")
    assert stats["images"] == counts and label_names(table) == [] and stats["labels"] == 0
    src = {im["imgid"]: im for im in facts["flickr"][kind]["json"]["images"]}
    for r in table.to_pylist():
        im = src[r["image_id"]]
        assert r["split"] == im["split"] and r["labels"] == [] and r["boxes"] == []
        assert r["captions"] == [s["raw"] for s in im["sentences"]]
        i = r["image_id"]
        assert (r["width"], r["height"]) == (20 + i, 14 + i)
    assert stats["images_without_labels_policy"] == "n/a (no labels)"


def test_flickr_missing_images(served, tmp_path):
    tmp, facts = served
    images = tmp_path / "imgs"
    shutil.copytree(tmp / "flickr8k_images", images)
    name = facts["flickr"]["flickr8k"]["json"]["images"][1]["filename"]
    (images / name).unlink()
    params = flickr_params(tmp, "flickr8k", images_root=str(images), split_file=str(tmp_path / "s.json"))
    with pytest.raises(FileNotFoundError, match=f"{name}: image listed in .*dataset_flickr8k.json not found"):
        prepare_dataset("flickr8k", params, PREP, tmp / "data")
    stats = prepare_dataset("flickr8k", dict(params, missing_images="drop"), PREP, tmp / "data")
    assert stats["source"]["missing_images"] == 1 and stats["images"]["test"] == 0


def test_karpathy_path_on_real_coco_mini(coco_mini_root, tmp_path):
    """The coco2014 reader on the real coco-mini (2017 file names): Karpathy-style JSON over its images."""
    sets = ["train2017", "val2017"]
    ids = []
    for s in sets:
        doc = json.loads((coco_mini_root / "annotations" / f"instances_{s}.json").read_text())
        ids += [(s, im["id"], im["file_name"]) for im in sorted(doc["images"], key=lambda im: im["id"])]
    names = ["test", "val", "restval", "train"]
    entries = [{"filepath": s, "filename": f, "cocoid": i, "imgid": k, "split": names[k % 4],
                "sentences": [{"raw": "unused", "tokens": []}]} for k, (s, i, f) in enumerate(ids)]
    (tmp_path / "dataset_coco.json").write_text(json.dumps({"images": entries, "dataset": "coco"}))
    params = coco_params(tmp_path, root=str(coco_mini_root), annotation_sets=sets,
                         karpathy_json=str(tmp_path / "dataset_coco.json"))
    stats = prepare_dataset("cm", params, PREP, tmp_path / "data")
    assert sum(stats["images"].values()) == len(ids) == 159
    assert stats["images"]["test"] == len(ids[0::4]) and stats["unlisted_images"] == 80
    rows = {r["image_id"]: r for r in read_table(tmp_path / "data" / "cm" / "table.parquet").to_pylist()}
    # Same captions, labels and boxes as the plain COCO reader gives for those images.
    index, _ = coco.read_categories(coco_mini_root, sets)
    for s in sets:
        for row in coco.read_split(coco_mini_root, s, index, 5)[0]:
            got = rows[row["image_id"]]
            assert (got["captions"], got["labels"], got["box_labels"]) == (row["captions"], row["labels"], row["box_labels"])


def test_user_provided_sources_are_not_downloaded(served, tmp_path):
    tmp, facts = served
    (tmp_path / "dataset_flickr8k.json").write_text(json.dumps(facts["flickr"]["flickr8k"]["json"]))
    params = flickr_params(tmp, "flickr8k", karpathy_json=str(tmp_path / "dataset_flickr8k.json"),
                           split_file=str(tmp_path / "s.json"))
    # The registry's only URL is a closed loopback port: a download attempt would fail.
    registry = write_registry(tmp_path / "registry.yaml", {"karpathy": {"used_by": ["flickr8k"], "files": [
        {"name": "caption_datasets.zip", "data": b"never served"}]}})
    assert download_dataset("f8", params, tmp_path / "data", download_params(tmp_path, registry, {})) == {}
    manifest = json.loads((tmp_path / "data" / "f8" / "raw" / "manifest.json").read_text())
    assert manifest["user_provided"] == ["karpathy"] and manifest["sources"] == {}
    stats = prepare_dataset("f8", params, PREP, tmp_path / "data")
    assert sum(stats["images"].values()) == 5
