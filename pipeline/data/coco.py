"""Reading a COCO-layout dataset (annotations/captions_<split>.json, instances_<split>.json, images)
into the columns of the prepared table.

Policies (documented in the README):
- The annotation files are the source of truth: image files on disk that no annotation file lists
  are not part of the dataset (they are only counted, as `unlisted_images`).
- An image listed in the annotations whose file is absent is an error.
- Captions are kept in annotation-id order; `max_captions` keeps the first ones (0 keeps all).
- Labels are the categories of all the image's instances (crowd regions included); ground-truth
  boxes exclude crowd regions, which detectors do not train on.
- Images with no instance at all keep an empty label list (`images_without_labels: keep`) or are
  dropped (`drop`).
"""
from __future__ import annotations

import json
import os
from collections import defaultdict
from pathlib import Path

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
    if not isinstance(doc, dict):
        raise AnnotationError(f"{path}: expected a JSON object at the top level")
    for key in required:
        if not isinstance(doc.get(key), list):
            raise AnnotationError(f"{path}: field '{key}' missing or not a list")
    return doc


def _field(record: dict, key: str, types, path: Path, what: str):
    value = record.get(key) if isinstance(record, dict) else None
    if not isinstance(value, types) or isinstance(value, bool):
        raise AnnotationError(f"{path}: {what} has no valid '{key}' (got {value!r})")
    return value


def read_categories(root: Path, suffixes: list[str]) -> tuple[dict[int, int], list[str]]:
    """Category id -> contiguous label id, and the label names; identical in every split file."""
    seen: dict[int, str] | None = None
    for suffix in suffixes:
        path = root / "annotations" / f"instances_{suffix}.json"
        doc = _load_json(path, ("images", "annotations", "categories"))
        cats = {_field(c, "id", int, path, "a category"): _field(c, "name", str, path, "a category")
                for c in doc["categories"]}
        if seen is None:
            seen = cats
        elif cats != seen:
            raise AnnotationError(f"{path}: categories differ from those of instances_{suffixes[0]}.json")
    if not seen:
        raise AnnotationError(f"{root / 'annotations'}: no categories in the instances files")
    ordered = sorted(seen)
    return {cid: i for i, cid in enumerate(ordered)}, [seen[cid] for cid in ordered]


def read_split(root: Path, suffix: str, category_index: dict[int, int], max_captions: int) -> tuple[list[dict], int]:
    """Rows of one split file pair, in image-id order, and the count of unlisted image files."""
    cap_path = root / "annotations" / f"captions_{suffix}.json"
    ins_path = root / "annotations" / f"instances_{suffix}.json"
    captions_doc = _load_json(cap_path, ("images", "annotations"))
    instances_doc = _load_json(ins_path, ("images", "annotations", "categories"))
    image_dir = root / suffix

    images: dict[int, dict] = {}
    for path, doc in ((cap_path, captions_doc), (ins_path, instances_doc)):
        for record in doc["images"]:
            image_id = _field(record, "id", int, path, "an image")
            images[image_id] = {
                "image_id": image_id,
                "file_name": _field(record, "file_name", str, path, f"image {image_id}"),
                "width": _field(record, "width", int, path, f"image {image_id}"),
                "height": _field(record, "height", int, path, f"image {image_id}"),
            }

    captions: dict[int, list[tuple[int, str]]] = defaultdict(list)
    for record in captions_doc["annotations"]:
        ann_id = _field(record, "id", int, cap_path, "a caption")
        image_id = _field(record, "image_id", int, cap_path, f"caption {ann_id}")
        if image_id not in images:
            raise AnnotationError(f"{cap_path}: caption {ann_id} points to unknown image_id {image_id}")
        captions[image_id].append((ann_id, _field(record, "caption", str, cap_path, f"caption {ann_id}").strip()))

    labels: dict[int, set[int]] = defaultdict(set)
    boxes: dict[int, list] = defaultdict(list)
    for record in instances_doc["annotations"]:
        ann_id = _field(record, "id", int, ins_path, "an instance")
        image_id = _field(record, "image_id", int, ins_path, f"instance {ann_id}")
        if image_id not in images:
            raise AnnotationError(f"{ins_path}: instance {ann_id} points to unknown image_id {image_id}")
        cat = _field(record, "category_id", int, ins_path, f"instance {ann_id}")
        if cat not in category_index:
            raise AnnotationError(f"{ins_path}: instance {ann_id} points to unknown category_id {cat}")
        labels[image_id].add(category_index[cat])
        if record.get("iscrowd", 0):
            continue
        bbox = record.get("bbox")
        if not (isinstance(bbox, list) and len(bbox) == 4 and all(isinstance(v, (int, float)) for v in bbox)):
            raise AnnotationError(f"{ins_path}: instance {ann_id} has no valid 'bbox' [x, y, w, h] (got {bbox!r})")
        x, y, w, h = bbox
        if w > 0 and h > 0:
            boxes[image_id].append(([float(x), float(y), float(x + w), float(y + h)], category_index[cat]))

    rows = []
    for image_id in sorted(images):
        info = images[image_id]
        path = image_dir / info["file_name"]
        if not path.is_file():
            raise AnnotationError(f"{ins_path}: image {image_id} is listed but its file {path} does not exist")
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
    return rows, len(on_disk - listed)
