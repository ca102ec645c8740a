"""The `prepare` stage: a dataset's annotations -> `data/<dataset>/table.parquet` (+ stats)."""
from __future__ import annotations

from pathlib import Path

from pipeline.data import coco
from pipeline.data.table import SCHEMA, SPLITS, table_path, write_table
from pipeline.io import write_json
from pipeline.params import ParamError

SHAPES_SPLITS = {"train": "train", "val": "val", "test": "test"}


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
    root = Path(dparams["root"]) if dparams["root"] else raw_dir(data_dir, dataset)
    return root, dict(splits)


def prepare_dataset(dataset: str, dparams: dict, prepare_params: dict, data_dir: str | Path = "data") -> dict:
    """Read a COCO-layout dataset and write its prepared table; returns the stats written beside it."""
    root, splits = source(data_dir, dataset, dparams)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: dataset folder not found (run `xmr download {dataset}` first)")
    category_index, names = coco.read_categories(root, list(splits.values()))
    columns: dict[str, list] = {name: [] for name in SCHEMA.names}
    stats = {"dataset": dataset, "images": {}, "unlisted_images": 0, "images_without_labels": 0,
             "images_without_captions": 0, "images_without_labels_policy": prepare_params["images_without_labels"]}
    for split in SPLITS:
        if split not in splits:
            continue
        rows, unlisted = coco.read_split(root, splits[split], category_index, prepare_params["max_captions"])
        stats["unlisted_images"] += unlisted
        kept = 0
        for row in rows:
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

