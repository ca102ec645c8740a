"""Reading a COCO-layout dataset (annotations/captions_<split>.json, instances_<split>.json, images)
into the columns of the prepared table.

Policies (documented in docs/datasets.md, "`prepare`"):
- The annotation files are the source of truth: image files on disk that no annotation file lists
  are not part of the dataset (they are only counted, as `unlisted_images`).
- An image listed in the annotations whose file is absent is an error.
- Captions are kept in annotation-id order; `max_captions` keeps the first ones (0 keeps all).
- Labels are the categories of all the image's instances (crowd regions included); ground-truth
  boxes exclude crowd regions, which detectors do not train on.
- Images with no instance at all keep an empty label list (`images_without_labels: keep`) or are
  dropped (`drop`).
- Annotation files are untrusted: every field the reader uses is checked (ids unique, one record per
  image id, boxes of finite numbers with non-negative size, ...); a violation is an AnnotationError
  naming the file, the id and the field. Zero-size boxes (real COCO has a few) keep their label but
  are left out of the ground-truth boxes, counted as `degenerate_boxes`.
"""
from __future__ import annotations

import json
import math
import os
from collections import defaultdict
from pathlib import Path

from pipeline.data.locate import check_inside
from pipeline.param_checks import shown

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp"}


class AnnotationError(ValueError):
    """An annotation file is missing, malformed or inconsistent."""


def _load_json(path: Path, required: tuple[str, ...]) -> dict:
    if not path.is_file():
        raise AnnotationError(f"{path}: annotation file not found")
    try:
        doc = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise AnnotationError(f"{path}: not valid JSON ({exc})") from exc
    except RecursionError as exc:  # hostile nesting (100,000 levels) exhausts the parser's stack
        raise AnnotationError(f"{path}: JSON nested too deeply to read; not an annotation file") from exc
    if not isinstance(doc, dict):
        raise AnnotationError(f"{path}: expected a JSON object at the top level")
    for key in required:
        if not isinstance(doc.get(key), list):
            raise AnnotationError(f"{path}: field '{key}' missing or not a list")
    return doc


def unicode_problem(text: str) -> str | None:
    """Why `text` cannot be written as UTF-8 (JSON allows lone surrogates such as "\\ud800"), or None."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return f"holds a lone surrogate at character {exc.start}, not valid Unicode"
    return None


def _field(record: dict, key: str, types, path: Path, what: str):
    value = record.get(key) if isinstance(record, dict) else None
    if not isinstance(value, types) or isinstance(value, bool):
        raise AnnotationError(f"{path}: {what} has no valid '{key}' (got {shown(value)})")
    problem = unicode_problem(value) if isinstance(value, str) else None
    if problem:
        raise AnnotationError(f"{path}: {what} has field '{key}' that {problem}")
    return value


def _unique(ids: dict, value: int, path: Path, what: str) -> None:
    if value in ids:
        raise AnnotationError(f"{path}: {what} id {value} appears twice (field 'id'); ids must be unique")
    ids[value] = True


def read_categories(root: Path, suffixes: list[str]) -> tuple[dict[int, int], list[str]]:
    """Category id -> contiguous label id, and the label names; identical in every split file."""
    seen: dict[int, str] | None = None
    for suffix in suffixes:
        path = root / "annotations" / f"instances_{suffix}.json"
        doc = _load_json(path, ("images", "annotations", "categories"))
        cats: dict[int, str] = {}
        for c in doc["categories"]:
            cid = _field(c, "id", int, path, "a category")
            if cid in cats:
                raise AnnotationError(f"{path}: category id {cid} appears twice (field 'id'); ids must be unique")
            cats[cid] = _field(c, "name", str, path, f"category {cid}")
        if seen is None:
            seen = cats
        elif cats != seen:
            raise AnnotationError(f"{path}: categories differ from those of instances_{suffixes[0]}.json")
    if not seen:
        raise AnnotationError(f"{root / 'annotations'}: no categories in the instances files")
    ordered = sorted(seen)
    return {cid: i for i, cid in enumerate(ordered)}, [seen[cid] for cid in ordered]


def _image_record(record: dict, path: Path) -> dict:
    image_id = _field(record, "id", int, path, "an image")
    info = {"image_id": image_id, "file_name": _field(record, "file_name", str, path, f"image {image_id}"),
            "width": _field(record, "width", int, path, f"image {image_id}"),
            "height": _field(record, "height", int, path, f"image {image_id}")}
    name = Path(info["file_name"])
    if not info["file_name"] or name.is_absolute() or ".." in name.parts:
        raise AnnotationError(f"{path}: image {image_id} has field 'file_name' {info['file_name']!r}; expected a "
                              f"file name inside the split's image folder")
    for key in ("width", "height"):
        if info[key] <= 0:
            raise AnnotationError(f"{path}: image {image_id} has field '{key}' {info[key]}; expected a positive size")
    return info


def _read_images(files: list[tuple[Path, dict]]) -> dict[int, dict]:
    """Image records of the split's files: ids unique within a file, the same record wherever an id
    appears again, and one id per file name (two ids for one picture would split its annotations)."""
    images: dict[int, dict] = {}
    where: dict[int, Path] = {}
    by_name: dict[str, tuple[int, Path]] = {}
    for path, doc in files:
        in_file: dict[int, bool] = {}
        for record in doc["images"]:
            info = _image_record(record, path)
            image_id = info["image_id"]
            _unique(in_file, image_id, path, "image")
            if image_id in images and images[image_id] != info:
                field = next(k for k in info if info[k] != images[image_id][k])
                raise AnnotationError(f"{path}: image {image_id} has field '{field}' {info[field]!r}, but "
                                      f"{where[image_id]} lists it with {images[image_id][field]!r}")
            other = by_name.get(info["file_name"])
            if other is not None and other[0] != image_id:
                raise AnnotationError(f"{path}: images {other[0]} and {image_id} have the same field 'file_name' "
                                      f"{info['file_name']!r}; each picture must have one id")
            images[image_id] = info
            where.setdefault(image_id, path)
            by_name[info["file_name"]] = (image_id, path)
    return images


def _box(record: dict, path: Path, ann_id: int) -> list[float] | None:
    """`[x1, y1, x2, y2]` of a COCO `[x, y, w, h]`; None for a degenerate (zero-size) box. A negative
    size or a non-number is malformed."""
    bbox = record.get("bbox")
    if not (isinstance(bbox, list) and len(bbox) == 4
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in bbox)):
        raise AnnotationError(f"{path}: instance {ann_id} has no valid 'bbox' [x, y, w, h] of finite numbers "
                              f"(got {bbox!r})")
    x, y, w, h = bbox
    if w < 0 or h < 0:
        raise AnnotationError(f"{path}: instance {ann_id} has field 'bbox' {bbox!r} with a negative "
                              f"{'width' if w < 0 else 'height'}; expected [x, y, w, h] with w, h >= 0")
    if w == 0 or h == 0:
        return None
    return [float(x), float(y), float(x + w), float(y + h)]


def read_split(root: Path, suffix: str, category_index: dict[int, int],
               max_captions: int) -> tuple[list[dict], int, int]:
    """Rows of one split file pair, in image-id order, the count of unlisted image files and the
    count of degenerate (zero-width or zero-height) boxes left out of the ground truth."""
    cap_path = root / "annotations" / f"captions_{suffix}.json"
    ins_path = root / "annotations" / f"instances_{suffix}.json"
    captions_doc = _load_json(cap_path, ("images", "annotations"))
    instances_doc = _load_json(ins_path, ("images", "annotations", "categories"))
    image_dir = root / suffix
    images = _read_images([(cap_path, captions_doc), (ins_path, instances_doc)])

    captions: dict[int, list[tuple[int, str]]] = defaultdict(list)
    seen: dict[int, bool] = {}
    for record in captions_doc["annotations"]:
        ann_id = _field(record, "id", int, cap_path, "a caption")
        _unique(seen, ann_id, cap_path, "caption")
        image_id = _field(record, "image_id", int, cap_path, f"caption {ann_id}")
        if image_id not in images:
            raise AnnotationError(f"{cap_path}: caption {ann_id} points to unknown image_id {image_id}")
        captions[image_id].append((ann_id, _field(record, "caption", str, cap_path, f"caption {ann_id}").strip()))

    labels: dict[int, set[int]] = defaultdict(set)
    boxes: dict[int, list] = defaultdict(list)
    seen, degenerate = {}, 0
    for record in instances_doc["annotations"]:
        ann_id = _field(record, "id", int, ins_path, "an instance")
        _unique(seen, ann_id, ins_path, "instance")
        image_id = _field(record, "image_id", int, ins_path, f"instance {ann_id}")
        if image_id not in images:
            raise AnnotationError(f"{ins_path}: instance {ann_id} points to unknown image_id {image_id}")
        cat = _field(record, "category_id", int, ins_path, f"instance {ann_id}")
        if cat not in category_index:
            raise AnnotationError(f"{ins_path}: instance {ann_id} points to unknown category_id {cat}")
        crowd = record.get("iscrowd", 0)
        if crowd not in (0, 1):  # True/False compare equal to 1/0
            raise AnnotationError(f"{ins_path}: instance {ann_id} has field 'iscrowd' {crowd!r}; expected 0 or 1")
        labels[image_id].add(category_index[cat])
        if crowd:
            continue
        box = _box(record, ins_path, ann_id)
        if box is None:
            degenerate += 1
        else:
            boxes[image_id].append((box, category_index[cat]))

    rows = []
    for image_id in sorted(images):
        info = images[image_id]
        path = image_dir / info["file_name"]
        if not path.is_file():
            raise AnnotationError(f"{ins_path}: image {image_id} is listed but its file {path} does not exist")
        check_inside([path], image_dir, f"{ins_path}, image {image_id}")
        texts = [text for _, text in sorted(captions.get(image_id, []))]
        if max_captions:
            texts = texts[:max_captions]
        image_boxes = boxes.get(image_id, [])
        rows.append({
            "image_id": image_id,
            "file_path": str(path),
            "width": info["width"],
            "height": info["height"],
            "captions": texts,
            "labels": sorted(labels.get(image_id, ())),
            "boxes": [b for b, _ in image_boxes],
            "box_labels": [c for _, c in image_boxes],
        })
    listed = {images[i]["file_name"] for i in images}
    on_disk = {name for name in os.listdir(image_dir) if Path(name).suffix.lower() in IMAGE_SUFFIXES} if image_dir.is_dir() else set()
    return rows, len(on_disk - listed), degenerate
