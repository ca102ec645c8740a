"""The `prepare` stage: a dataset's annotations -> `data/<dataset>/table.parquet` (+ stats).

`shapes` and `coco` are COCO-layout folders; the real datasets (mirflickr, nuswide, coco2014,
flickr30k, flickr8k) have their own readers, which also return each row's frozen split.
"""
from __future__ import annotations

import json
from pathlib import Path

from pipeline.data import coco
from pipeline.data.table import SCHEMA, SPLITS, table_path, write_table
from pipeline.io import write_json
from pipeline.params import ParamError
from pipeline.project_paths import project_path

SHAPES_SPLITS = {"train": "train", "val": "val", "test": "test"}
MANIFEST = "manifest.json"
REAL_KINDS = ("mirflickr", "nuswide", "coco2014", "flickr30k", "flickr8k")


def raw_dir(data_dir: str | Path, dataset: str) -> Path:
    """Where the download stage puts a dataset."""
    return Path(data_dir) / dataset / "raw"


def source(data_dir: str | Path, dataset: str, dparams: dict) -> tuple[Path, dict[str, str]]:
    """The COCO-layout root and split mapping (table split -> annotation-file suffix) of a dataset."""
    if dparams["kind"] == "shapes":
        return raw_dir(data_dir, dataset), SHAPES_SPLITS
    splits = dparams["splits"]
    bad = sorted(set(splits) - set(SPLITS))
    if bad or not splits or not all(isinstance(v, str) and v for v in splits.values()):
        raise ParamError(f"params: data.{dataset}.splits must map some of {', '.join(SPLITS)} to annotation-file "
                         f"suffixes (e.g. train: train2017), got {splits!r}")
    root = project_path(dparams["root"]) if dparams["root"] else raw_dir(data_dir, dataset)
    return root, dict(splits)


def read_manifest(data_dir: str | Path, dataset: str) -> dict:
    """The download stage's record of where a real dataset's sources were extracted."""
    path = raw_dir(data_dir, dataset) / MANIFEST
    if not path.is_file():
        raise FileNotFoundError(f"{path}: download manifest not found (run `xmr download {dataset}` first, or set "
                                f"data.{dataset}.root / karpathy_json to your own copy)")
    return json.loads(path.read_text())


def _downloaded(data_dir, dataset: str, source_name: str, param: str) -> Path:
    entry = read_manifest(data_dir, dataset)["sources"].get(source_name)
    if not entry or "extracted" not in entry:
        raise FileNotFoundError(f"{raw_dir(data_dir, dataset) / MANIFEST}: source '{source_name}' was not downloaded "
                                f"(data.{dataset}.{param} was set then?); rerun `xmr download {dataset}`")
    return Path(entry["extracted"])


def karpathy_json(data_dir, dataset: str, dparams: dict, name: str) -> Path:
    """The Karpathy split file: the user's (karpathy_json) or the one in the downloaded archive."""
    if dparams["karpathy_json"]:
        return project_path(dparams["karpathy_json"])
    from pipeline.data.locate import find_file

    return find_file(_downloaded(data_dir, dataset, "karpathy", "karpathy_json"), f"dataset_{name}.json",
                     "Karpathy split file, in caption_datasets.zip")


def read_real(dataset: str, dparams: dict, prepare_params: dict, data_dir) -> tuple[list[dict], list[str], dict]:
    """Rows (each with its split), label names and reader stats of a real dataset."""
    from pipeline.data import karpathy, mirflickr, nuswide

    kind = dparams["kind"]
    if kind in ("mirflickr", "nuswide"):
        root = project_path(dparams["root"]) if dparams["root"] else _downloaded(
            data_dir, dataset, "mirflickr25k" if kind == "mirflickr" else "nuswide", "root")
        reader = mirflickr.read if kind == "mirflickr" else nuswide.read
        return reader(root, dparams, dataset)
    if kind == "coco2014":
        root = project_path(dparams["root"]) if dparams["root"] else _downloaded(data_dir, dataset, "coco2014", "root")
        return karpathy.read_coco(root, karpathy_json(data_dir, dataset, dparams, "coco"), dparams, dataset,
                                  prepare_params["max_captions"])
    return karpathy.read_flickr(karpathy_json(data_dir, dataset, dparams, kind), dparams, dataset, kind,
                                prepare_params["max_captions"])


def _prepare_real(dataset: str, dparams: dict, prepare_params: dict, data_dir) -> dict:
    rows, names, reader_stats = read_real(dataset, dparams, prepare_params, data_dir)
    rows.sort(key=lambda r: SPLITS.index(r["split"]))  # stable: the reader's order within a split
    policy = prepare_params["images_without_labels"]
    columns: dict[str, list] = {name: [] for name in SCHEMA.names}
    stats = {"dataset": dataset, "kind": dparams["kind"], "images": {s: 0 for s in SPLITS},
             "images_without_labels": 0, "images_without_captions": 0,
             "images_without_labels_policy": policy if names else "n/a (no labels)",
             "unlisted_images": reader_stats.pop("unlisted_images", 0), "source": reader_stats}
    for row in rows:
        if names and not row["labels"]:
            stats["images_without_labels"] += 1
            if policy == "drop":
                continue
        stats["images_without_captions"] += not row["captions"]
        for key in SCHEMA.names:
            columns[key].append(row[key])
        stats["images"][row["split"]] += 1
    if not columns["image_id"]:
        raise coco.AnnotationError(f"data.{dataset}: the dataset is empty after its rules were applied")
    stats["labels"] = len(names)
    out = table_path(data_dir, dataset)
    write_table(columns, names, dataset, out)
    write_json(out.with_name("prepare_stats.json"), stats)
    return stats


def _hold_out(rows: list[dict], n_val: int, seed: int, dataset: str) -> tuple[list[dict], list[dict]]:
    """`(train, val)`: val = the first `n_val` train images in the hashed order of their ids (a seeded
    shuffle no library version changes, `splits.seeded_split`); both keep the image-id order."""
    from pipeline.data.splits import seeded_split

    try:
        ids = seeded_split([r["image_id"] for r in rows], n_val, 0, seed)
    except ValueError as exc:
        raise ParamError(f"params: data.{dataset}.n_val: {exc}") from exc
    val = set(ids["val"])
    return [r for r in rows if r["image_id"] not in val], [r for r in rows if r["image_id"] in val]


def check_local_coco(data_dir: str | Path, dataset: str, root: Path, splits: dict[str, str]) -> None:
    """A folder read in place must still hold the annotation files `xmr download` recorded (when it did)."""
    path = raw_dir(data_dir, dataset) / MANIFEST
    if not path.is_file():
        return  # prepare run by hand on a folder: nothing recorded to compare with
    from pipeline.data.download import local_coco_hashes

    recorded = json.loads(path.read_text()).get("annotations", {})
    for name, digest in local_coco_hashes(root, splits).items():
        if recorded.get(name) != digest:
            raise coco.AnnotationError(f"{root / 'annotations' / name}: differs from the file `xmr download {dataset}` "
                                       f"recorded in {path}; rerun `xmr download {dataset}` (dvc repro -f "
                                       f"download@{dataset}) to take the new annotations")


def prepare_dataset(dataset: str, dparams: dict, prepare_params: dict, data_dir: str | Path = "data") -> dict:
    """Read a dataset and write its prepared table; returns the stats written beside it."""
    if dparams["kind"] in REAL_KINDS:
        return _prepare_real(dataset, dparams, prepare_params, data_dir)
    root, splits = source(data_dir, dataset, dparams)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: dataset folder not found (run `xmr download {dataset}` first)")
    if dparams["kind"] == "coco":
        check_local_coco(data_dir, dataset, root, splits)
    category_index, names = coco.read_categories(root, list(splits.values()))
    columns: dict[str, list] = {name: [] for name in SCHEMA.names}
    stats = {"dataset": dataset, "images": {}, "unlisted_images": 0, "degenerate_boxes": 0, "images_without_labels": 0,
             "images_without_captions": 0, "images_without_labels_policy": prepare_params["images_without_labels"]}
    by_split: dict[str, list[dict]] = {}
    for split in SPLITS:
        if split not in splits:
            continue
        rows, unlisted, degenerate = coco.read_split(root, splits[split], category_index, prepare_params["max_captions"])
        stats["unlisted_images"] += unlisted
        stats["degenerate_boxes"] += degenerate
        by_split[split] = rows
    if dparams["kind"] == "coco" and dparams.get("n_val"):
        by_split["train"], by_split["val"] = _hold_out(by_split["train"], dparams["n_val"], dparams["split_seed"], dataset)
        stats["val_from_train"] = {"n_val": dparams["n_val"], "split_seed": dparams["split_seed"]}
    for split in SPLITS:
        if split not in by_split:
            continue
        kept = 0
        for row in by_split[split]:
            if not row["labels"]:
                stats["images_without_labels"] += 1
                if prepare_params["images_without_labels"] == "drop":
                    continue
            stats["images_without_captions"] += not row["captions"]
            for key, value in row.items():
                columns[key].append(value)
            columns["split"].append(split)
            kept += 1
        stats["images"][split] = kept
    if not columns["image_id"]:
        raise coco.AnnotationError(f"{root}: the dataset is empty (no image in {', '.join(splits.values())})")
    stats["labels"] = len(names)
    out = table_path(data_dir, dataset)
    write_table(columns, names, dataset, out)
    write_json(out.with_name("prepare_stats.json"), stats)
    return stats

