"""A miniature of every real format, end to end through the `xmr` CLI.

Each miniature keeps its format's real file names, archive members and encodings (the builders in
datasets_helpers.py) and holds real photographs and captions from ../shared/coco-mini: MS-COCO 2014 +
Karpathy (coco2014), Flickr30k and Flickr8k (Karpathy JSON + the user's image folder), MIRFlickr-25K,
NUS-WIDE (annotation archives + the user's image folder). One project runs `xmr check-params`, then per
dataset `xmr download` from a local HTTP server on 127.0.0.1 (archives included, sha256 pinned by a test
registry), `prepare`, `extract` (one random tiny shapes_frcnn detector for all: the fastest extraction
path on a CPU), `tokenize`, `train` + `evaluate` of one label-wise method (lcfs where the dataset has
labels, cca otherwise) and one instance-level method (scan_i2t), then one `xmr report` over all of them.
docs/datasets.md, "Miniatures of each real format (tests)".
"""
from __future__ import annotations

import contextlib
import json
import math

import pytest
import yaml
from typer.testing import CliRunner

from datasets_helpers import (coco2014_sources, coco_mini_pictures, mirflickr_sources, nuswide_sources, publish,
                              serving, sha256, write_registry)
from pipeline.data.table import label_names, read_table

pytestmark = pytest.mark.miniatures

LABEL_WISE = {"coco2014": "lcfs", "mirflickr": "lcfs", "nuswide": "lcfs", "flickr30k": "cca", "flickr8k": "cca"}
INSTANCE = "scan_i2t"
DATASETS = tuple(LABEL_WISE)
MIR_IMAGES, NUS_IMAGES, NUS_TOP = 20, 30, 3


def miniature_params(root, registry, mirrors, detector) -> dict:
    """The project's params.yaml: every miniature, tiny loops, the shared detector. Kept in one place so
    that a change of the params layout needs one edit here."""
    users = root / "user_images"
    data = {
        "coco2014": {"kind": "coco2014", "split_file": "splits/coco2014_karpathy.json"},
        "flickr30k": {"kind": "flickr30k", "images_root": str(users / "flickr30k"),
                      "split_file": "splits/flickr30k_karpathy.json"},
        "flickr8k": {"kind": "flickr8k", "images_root": str(users / "flickr8k"),
                     "split_file": "splits/flickr8k_karpathy.json"},
        "mirflickr": {"kind": "mirflickr", "n_val": 3, "n_test": 4, "split_file": "splits/mirflickr25k.json"},
        "nuswide": {"kind": "nuswide", "images_root": str(users / "nuswide"), "top_concepts": NUS_TOP,
                    "expected_pairs": 0, "n_val": 3, "n_test": 5, "split_file": "splits/nuswide.json"},
    }
    return {
        "datasets": list(DATASETS),
        "run": {"methods": sorted({*LABEL_WISE.values(), INSTANCE})},
        "data": data,
        "download": {"dir": str(root / "downloads"), "registry": str(registry), "lock_file": "registry.lock.json",
                     "mirrors": mirrors, "retries": 0, "retry_wait": 0.0, "timeout": 20.0, "progress": False},
        "extract": {"detectors": {name: "shapes_frcnn" for name in DATASETS}, "weights": {"shapes_frcnn": str(detector)},
                    "num_boxes": 8, "proposals": 50, "batch_size": 8, "workers": 0, "device": "cpu", "threads": 1},
        "text": {"w2v_epochs": 1, "embedding_dim": 16},
        "train": {"epochs": 1, "batch_size": 8, "device": "cpu", "threads": 1, "amp": False},
        "methods": {
            # The official SCAN recipe's COCO / Flickr schedules (20-30 epochs, decay at 10-15) do not fit
            # one epoch: the run says so here rather than relying on a dataset layer.
            INSTANCE: {"recipe": "official", "d_model": 16, "train": {"epochs": 1, "lr_decay_epoch": 0, "batch_size": 8}},
            "lcfs": {"iterations": 3},
            "cca": {"n_components": 4},
        },
        "metrics": {"ndcg_k": 50, "map_k": 50, "datasets": {"mirflickr": {"dedup_texts": True},
                                                            "nuswide": {"dedup_texts": True}}},
        "report": {"seeds": [], "lambda_methods": [], "reference_method": INSTANCE, "bootstrap_resamples": 50,
                   "qualitative_queries": 2, "thumbnail_px": 32},
    }


@pytest.fixture(scope="module")
def project(tmp_path_factory, coco_mini_module):
    """Build every miniature, serve it, and run the whole CLI on it once: the project folder, each
    command's output, the served paths, the miniatures' facts and the sha256 of every served file."""
    from detection_helpers import tiny_detector
    from stages.cli import app

    root = tmp_path_factory.mktemp("miniatures")
    pictures = coco_mini_pictures(coco_mini_module, NUS_IMAGES)
    coco_sources, coco_facts = coco2014_sources(coco_mini_module, flickr_pictures=pictures[:12])
    mir_sources, mir_facts = mirflickr_sources(MIR_IMAGES, pictures[:MIR_IMAGES])
    nus_sources, nus_facts = nuswide_sources(NUS_IMAGES, pictures)
    sources = {**coco_sources, **mir_sources, **nus_sources}
    for kind, f in coco_facts["flickr"].items():  # the user's own image folders (not downloadable)
        for name, data in f["images"].items():
            (root / "user_images" / kind / name).parent.mkdir(parents=True, exist_ok=True)
            (root / "user_images" / kind / name).write_bytes(data)
    for rel, data in nus_facts["images"].items():
        (root / "user_images" / "nuswide" / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / "user_images" / "nuswide" / rel).write_bytes(data)
    detector = tiny_detector(root / "detector")
    registry = write_registry(root / "registry.yaml", sources)  # the miniatures' own sha256, enforced
    proj = root / "project"
    proj.mkdir()
    outputs: dict[tuple, str] = {}
    runner = CliRunner()

    def xmr(*args):
        result = runner.invoke(app, [str(a) for a in args])
        assert result.exit_code == 0, f"xmr {' '.join(map(str, args))} failed ({result.exit_code}):\n{result.output}"
        outputs[args] = result.output
        return result.output

    import torch

    with serving() as server, contextlib.chdir(proj), pytest.MonkeyPatch.context() as mp:
        mp.setattr(torch, "set_num_threads", lambda n: None)  # the stages' process-wide setting
        (proj / "params.yaml").write_text(yaml.safe_dump(miniature_params(root, registry, publish(server, sources),
                                                                          detector)))
        xmr("check-params")  # the first stage of the DVC pipeline
        for ds in DATASETS:
            xmr("download", ds)
            xmr("prepare", ds)
            xmr("extract", ds, "--no-progress")
            xmr("tokenize", ds)
            for method in (LABEL_WISE[ds], INSTANCE):
                xmr("train", ds, method, "--no-progress")
                xmr("evaluate", ds, method, "--no-progress")
        xmr("report")
        served = [p for method, p, _, status in server.requests if method == "GET" and status in (200, 206)]
    return {"project": proj, "outputs": outputs, "served": served,
            "facts": {"coco2014": coco_facts, "mirflickr": mir_facts, "nuswide": nus_facts, **coco_facts["flickr"]},
            "sha256": {name: {f["name"]: sha256(f["data"]) for f in src["files"]} for name, src in sources.items()}}


@pytest.fixture(scope="module")
def coco_mini_module():
    from conftest import COCO_MINI

    if not (COCO_MINI / "annotations").is_dir():
        pytest.skip(f"real-data fixture {COCO_MINI} is absent (it ships in shared/ beside the checkout)")
    return COCO_MINI


def expected_rows(ds: str, facts: dict) -> dict[int, dict]:
    """image_id -> {split (or None: seeded), captions, labels (names), size} as the miniature holds them."""
    if ds == "coco2014":
        anns = facts["coco2014"]["annotations"]
        cats = {c["id"]: c["name"] for c in json.loads(anns["annotations/instances_train2014.json"])["categories"]}
        out = {}
        for year in ("train2014", "val2014"):
            caps = json.loads(anns[f"annotations/captions_{year}.json"])
            inst = json.loads(anns[f"annotations/instances_{year}.json"])
            for im in caps["images"]:
                texts = [a["caption"].strip() for a in sorted(caps["annotations"], key=lambda a: a["id"])
                         if a["image_id"] == im["id"]]
                labels = {cats[a["category_id"]] for a in inst["annotations"] if a["image_id"] == im["id"]}
                out[im["id"]] = {"captions": texts[:5], "labels": labels, "size": (im["width"], im["height"])}
        for e in facts["coco2014"]["karpathy"]:
            out[e["cocoid"]]["split"] = "train" if e["split"] == "restval" else e["split"]
        return out
    if ds in ("flickr30k", "flickr8k"):
        f = facts[ds]
        return {im["imgid"]: {"split": im["split"], "captions": [s["raw"] for s in im["sentences"]], "labels": set(),
                              "size": f["sizes"][im["filename"]]} for im in f["json"]["images"]}
    if ds == "mirflickr":
        f = facts["mirflickr"]
        return {i: {"split": None, "captions": [" ".join(t for t in dict.fromkeys(f["tags"][i]) if t in f["common"])],
                    "labels": {n for n, members in f["labels"].items() if i in members}, "size": f["sizes"][i]}
                for i in range(1, f["n"] + 1) if i not in f["dropped"]}
    f = facts["nuswide"]
    counts = {c: sum(v) for c, v in f["labels"].items()}
    order = list(f["labels"])
    top = sorted(sorted(order, key=lambda c: -counts[c])[:NUS_TOP], key=order.index)  # ties: concept-list order
    out = {}
    for i in range(f["n"]):
        labels = {c for c in top if f["labels"][c][i]}
        if labels:
            text = " ".join(t for t, v in zip(f["tag_names"], f["tags"][i]) if v)
            out[i] = {"split": None, "captions": [text] if text else [], "labels": labels, "size": f["sizes"][i]}
    return out


SOURCES = {"coco2014": {"coco2014", "karpathy"}, "flickr30k": {"karpathy"}, "flickr8k": {"karpathy"},
           "mirflickr": {"mirflickr25k"}, "nuswide": {"nuswide"}}
# A member of each source's archives, at its real path inside the extracted folder.
MEMBERS = {"coco2014": "annotations/instances_val2014.json", "karpathy": "dataset_flickr8k.json",
           "mirflickr25k": "mirflickr/meta/tags/tags1.txt", "nuswide": "NUS_WID_Tags/AllTags1k.txt"}


def test_miniatures_serve_the_registry_files(project):
    """The miniatures hold every file the production registry names for their sources, under its name."""
    from pipeline.data.registry import DEFAULT_REGISTRY, load_registry

    registry = load_registry(DEFAULT_REGISTRY)
    assert {name: set(files) for name, files in project["sha256"].items()} == \
        {name: {f.name for f in registry[name].files} for name in project["sha256"]}
    for ds in DATASETS:
        assert {s.name for s in registry.values() if ds in s.used_by} == SOURCES[ds]


@pytest.mark.parametrize("ds", DATASETS)
def test_miniature_download_and_prepare(project, ds):
    run = project
    manifest = json.loads((run["project"] / "data" / ds / "raw" / "manifest.json").read_text())
    assert manifest["kind"] == ds and set(manifest["sources"]) == SOURCES[ds]
    for name, src in manifest["sources"].items():
        assert set(src["files"]) == set(run["sha256"][name])
        for file_name, info in src["files"].items():  # the served bytes, checked against the pinned hash
            assert info["sha256"] == run["sha256"][name][file_name]
            assert f"/{name}/{file_name}" in run["served"]
        assert (run["project"] / src["extracted"] / MEMBERS[name]).is_file()
    assert run["served"].count("/karpathy/caption_datasets.zip") == 1  # shared by three datasets, fetched once

    want = expected_rows(ds, run["facts"])
    table = read_table(run["project"] / "data" / ds / "table.parquet")
    names = label_names(table)
    rows = {r["image_id"]: r for r in table.to_pylist()}
    assert set(rows) == set(want)
    for image_id, r in rows.items():
        w = want[image_id]
        assert r["captions"] == w["captions"], image_id
        assert {names[k] for k in r["labels"]} == w["labels"], image_id
        assert (r["width"], r["height"]) == tuple(w["size"]), image_id
        if w["split"] is not None:
            assert r["split"] == w["split"], image_id
    per_split = {s: sum(r["split"] == s for r in rows.values()) for s in ("train", "val", "test")}
    stats = json.loads((run["project"] / "data" / ds / "prepare_stats.json").read_text())
    assert stats["images"] == per_split
    assert stats["images_without_captions"] == sum(not w["captions"] for w in want.values())
    seeded = {"mirflickr": (3, 4), "nuswide": (3, 5)}
    if ds in seeded:  # n_val / n_test of the seeded split
        assert (per_split["val"], per_split["test"]) == seeded[ds]
    if ds == "coco2014":  # Karpathy split with restval -> train; the 80 real categories
        assert per_split == {"train": 6, "val": 2, "test": 4} and len(names) == 80
    if ds == "nuswide":
        assert names == ["clouds", "person", "sky"] and stats["images_without_captions"] > 0


RETRIEVAL = {f"{m}_{d}" for d in ("i2t", "t2i") for m in ("r1", "r5", "r10", "medr", "meanr")} | {"rsum"}
LABEL_WISE_KEYS = {f"{m}_{d}" for d in ("i2t", "t2i", "ave") for m in ("ndcg", "map")}


@pytest.mark.parametrize("ds", DATASETS)
def test_miniature_features_text_and_metrics(project, ds):
    run = project
    table = read_table(run["project"] / "data" / ds / "table.parquet")
    extract = json.loads((run["project"] / "data" / ds / "extract_stats.json").read_text())
    assert extract["images"] == extract["valid_images"] == table.num_rows and extract["detector"] == "shapes_frcnn"
    text = json.loads((run["project"] / "data" / ds / "text" / "stats.json").read_text())
    captions = table.column("captions").to_pylist()
    assert text["captions"] == sum(map(len, captions))
    labelled = bool(label_names(table))
    test_rows = [c for c, s in zip(captions, table.column("split").to_pylist()) if s == "test"]
    for method in (LABEL_WISE[ds], INSTANCE):
        metrics = json.loads((run["project"] / "reports" / "metrics" / ds / f"{method}.json").read_text())
        assert RETRIEVAL <= set(metrics), sorted(metrics)
        assert (LABEL_WISE_KEYS <= set(metrics)) == labelled, sorted(metrics)
        assert isinstance(metrics.pop("evaluation_id"), str)  # ties the metrics to their per-query and rankings files
        assert all(isinstance(metrics.pop(k), str) for k in ("machine_train", "machine_eval"))  # machine classes
        numbers = [v for v in metrics.values() if isinstance(v, (int, float))]
        assert len(numbers) == len(metrics) and all(math.isfinite(v) for v in numbers), metrics
        said = run["outputs"][("evaluate", ds, method, "--no-progress")]
        left_out = sum(not c for c in test_rows)
        assert (f"{left_out} test images without any caption were left out" in said) == (left_out > 0), said


def test_miniature_report_has_every_dataset(project):
    from pipeline.reporting.published import DATASET_COLUMNS

    results = (project["project"] / "reports" / "results.md").read_text()
    recall = results.split("## Instance-level retrieval: Recall@K", 1)[1]
    for ds in DATASETS:
        section = recall.split(f"#### {DATASET_COLUMNS.get(ds, ds)}\n", 1)[1].split("####", 1)[0]
        for method in (LABEL_WISE[ds], INSTANCE):
            row = next(line for line in section.splitlines() if line.startswith(f"| `{method}`"))
            assert "| –" not in row, row  # every cell of ours is a number
        assert (project["project"] / "reports" / "qualitative" / ds / f"{INSTANCE}.html").is_file()
    assert "No seed sweep" in results
