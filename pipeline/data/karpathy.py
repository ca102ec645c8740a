"""MS-COCO 2014, Flickr30k and Flickr8k with the Karpathy & Fei-Fei splits -> rows of the table.

`dataset_<name>.json` (in caption_datasets.zip) holds {"images": [{"filename", "imgid", "split",
"sentences": [{"raw", "tokens", ...}], ...}], "dataset": name}; COCO entries also carry "filepath"
(train2014 | val2014) and "cocoid". Splits: train, val, test, and for COCO "restval" (the 30,504 val2014
images outside val/test).

- coco2014: captions, labels (80 categories from instances) and boxes come from the official COCO
  annotation files through the COCO reader (coco.py); the Karpathy file only assigns the split.
  restval -> train gives 113,287 / 5,000 / 5,000; `restval: drop` gives 82,783 train.
- flickr30k / flickr8k: images from the user's folder, captions from the Karpathy file, no labels
  (29,000 / 1,014 / 1,000 and 6,000 / 1,000 / 1,000).
Row order within a split is the Karpathy file's order, so COCO's 1K test folds are the usual ones.
The split is frozen into a split file on first prepare.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from pipeline.data import coco, locate, splits
from pipeline.data.image_size import image_sizes
from pipeline.params import ParamError
from pipeline.project_paths import project_path

KARPATHY_SPLITS = ("train", "restval", "val", "test")


class KarpathyError(ValueError):
    """A Karpathy split file is missing, malformed or inconsistent with the images."""


def load(path: Path, expected_dataset: str) -> list[dict]:
    """The validated image entries of a Karpathy `dataset_*.json`."""
    if not path.is_file():
        raise KarpathyError(f"{path}: Karpathy split file not found")
    try:
        doc = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise KarpathyError(f"{path}: not valid JSON ({exc})") from exc
    except RecursionError as exc:  # hostile nesting exhausts the parser's stack
        raise KarpathyError(f"{path}: JSON nested too deeply to read; not a Karpathy split file") from exc
    if not isinstance(doc, dict) or not isinstance(doc.get("images"), list):
        raise KarpathyError(f"{path}: expected an object with an 'images' list")
    if doc.get("dataset") not in (None, expected_dataset):
        raise KarpathyError(f"{path}: is the Karpathy file of '{doc.get('dataset')}', expected '{expected_dataset}'")
    key = "cocoid" if expected_dataset == "coco" else "imgid"
    seen = set()
    for n, img in enumerate(doc["images"]):
        where = f"{path}: images[{n}]"
        if not isinstance(img, dict):
            raise KarpathyError(f"{where} is not an object")
        if not isinstance(img.get(key), int) or isinstance(img.get(key), bool):
            raise KarpathyError(f"{where} has no integer '{key}'")
        if img[key] in seen:
            raise KarpathyError(f"{where}: {key} {img[key]} appears twice")
        seen.add(img[key])
        if img.get("split") not in KARPATHY_SPLITS:
            raise KarpathyError(f"{where} has split {img.get('split')!r}; expected one of {', '.join(KARPATHY_SPLITS)}")
        if not isinstance(img.get("filename"), str) or not img["filename"]:
            raise KarpathyError(f"{where} has no 'filename'")
        sents = img.get("sentences")
        if not isinstance(sents, list) or not all(isinstance(s, dict) and isinstance(s.get("raw"), str) for s in sents):
            raise KarpathyError(f"{where} ({img['filename']}) has no 'sentences' list with 'raw' captions")
        for k, sentence in enumerate(sents):
            problem = coco.unicode_problem(sentence["raw"])
            if problem:
                raise KarpathyError(f"{where} ({img['filename']}): sentence {k} field 'raw' {problem}")
    return doc["images"]


def _split_of(img: dict, restval: str) -> str | None:
    if img["split"] == "restval":
        return "train" if restval == "train" else None
    return img["split"]


def _freeze(dparams: dict, kind: str, ordered: dict[str, list[int]], json_path: Path, rule: str) -> tuple[dict[int, str], bool]:
    eligible = {i for ids in ordered.values() for i in ids}
    return splits.frozen_split(dparams["split_file"], kind, rule, lambda: ordered, eligible,
                               {"karpathy_json": json_path.name, "karpathy_json_sha256": splits.file_sha256(json_path)})


def read_coco(root: Path, json_path: Path, dparams: dict, dataset: str, max_captions: int,
              progress: bool = True) -> tuple[list[dict], list[str], dict]:
    """COCO rows from the official annotation files, split and ordered by the Karpathy file."""
    if dparams["restval"] not in ("train", "drop"):
        raise ParamError(f"params: data.{dataset}.restval must be 'train' or 'drop', got {dparams['restval']!r}")
    sets = dparams["annotation_sets"]
    if not sets:
        raise ParamError(f"params: data.{dataset}.annotation_sets must list annotation-file suffixes (e.g. train2014)")
    entries = load(json_path, "coco")
    category_index, names = coco.read_categories(root, sets)
    by_id: dict[int, dict] = {}
    unlisted = degenerate = 0
    for suffix in sets:
        rows, n_unlisted, n_degenerate = coco.read_split(root, suffix, category_index, max_captions)
        unlisted, degenerate = unlisted + n_unlisted, degenerate + n_degenerate
        for r in rows:
            if r["image_id"] in by_id:
                raise KarpathyError(f"{root / 'annotations'}: image id {r['image_id']} (field 'id') is listed in "
                                    f"two annotation sets of {', '.join(sets)}")
            by_id[r["image_id"]] = r
    ordered: dict[str, list[int]] = {"train": [], "val": [], "test": []}
    dropped = 0
    for img in entries:
        split = _split_of(img, dparams["restval"])
        if split is None:
            dropped += 1
            continue
        if img["cocoid"] not in by_id:
            raise KarpathyError(f"{json_path}: image cocoid {img['cocoid']} ({img['filename']}) is in no COCO "
                                f"annotation file of {', '.join(sets)} under {root / 'annotations'}")
        ordered[split].append(img["cocoid"])
    rule = f"Karpathy split of {json_path.name}; restval -> {dparams['restval']}; file order kept"
    assignment, created = _freeze(dparams, "coco2014", ordered, json_path, rule)
    out = []
    for split in ordered:
        for i in [i for i, s in assignment.items() if s == split]:
            out.append(dict(by_id[i], split=split))
    stats = {"karpathy_images": len(entries), "restval_dropped": dropped, "unlisted_images": unlisted,
             "degenerate_boxes": degenerate,
             "annotated_images_outside_split": len(set(by_id) - set(assignment)),
             "split_file": str(dparams["split_file"]), "split_file_created": created,
             "split_file_sha256": splits.file_sha256(dparams["split_file"])}
    return out, names, stats


def read_flickr(json_path: Path, dparams: dict, dataset: str, kind: str, max_captions: int,
                progress: bool = True) -> tuple[list[dict], list[str], dict]:
    """Flickr30k / Flickr8k rows: the user's images, Karpathy captions and split, no labels."""
    if dparams["missing_images"] not in ("drop", "error"):
        raise ParamError(f"params: data.{dataset}.missing_images must be 'drop' or 'error', got {dparams['missing_images']!r}")
    if not dparams["images_root"]:
        raise ParamError(f"params: data.{dataset}.images_root is empty; set it to your folder of {kind} images "
                         f"(the JPEG files named as in dataset_{kind}.json)")
    images_root = project_path(dparams["images_root"])
    if not images_root.is_dir():
        raise FileNotFoundError(f"{images_root}: {kind} image folder not found (data.{dataset}.images_root)")
    entries = load(json_path, kind)
    ordered: dict[str, list[int]] = {"train": [], "val": [], "test": []}
    by_id = {}
    for img in entries:
        split = _split_of(img, "train")
        ordered[split].append(img["imgid"])
        by_id[img["imgid"]] = img
    assignment, created = _freeze(dparams, kind, ordered, json_path, f"Karpathy split of {json_path.name}; file order kept")
    ids = [i for split in ordered for i in assignment if assignment[i] == split]
    paths = [images_root / by_id[i]["filename"] for i in ids]
    locate.check_inside(paths, images_root, str(json_path))
    sizes = image_sizes(paths, progress)
    present = sizes[:, 0] >= 0
    if not present.all() and dparams["missing_images"] == "error":
        first = int(np.argmin(present))
        raise FileNotFoundError(f"{paths[first]}: image listed in {json_path} not found ({int((~present).sum())} of "
                                f"{len(ids)} missing from data.{dataset}.images_root; set data.{dataset}.missing_images: "
                                f"drop to skip them)")
    rows = []
    for k, i in enumerate(ids):
        if not present[k]:
            continue
        caps = [s["raw"].strip() for s in by_id[i]["sentences"]]
        rows.append({"image_id": int(i), "file_path": str(paths[k]), "width": int(sizes[k, 0]),
                     "height": int(sizes[k, 1]), "captions": caps[:max_captions] if max_captions else caps,
                     "labels": [], "boxes": [], "box_labels": [], "split": assignment[i]})
    stats = {"karpathy_images": len(entries), "missing_images": int((~present).sum()),
             "split_file": str(dparams["split_file"]), "split_file_created": created,
             "split_file_sha256": splits.file_sha256(dparams["split_file"])}
    return rows, [], stats
