"""MIRFlickr-25K (v3b images and tags, annotations v080) -> rows of the prepared table.

Layout read (found by name under `root`, see locate.py):
  mirflickr/im<N>.jpg                 25,000 images, N = 1..25000
  mirflickr/meta/tags/tags<N>.txt     the image's cleaned Flickr tags, one per line (may be empty)
  mirflickr/doc/common_tags.txt       "<tag> <count>" per line: the 1,386 tags used by 20+ images
  <annotations>/<label>.txt           image numbers (1-based) carrying the label, one per line
  <annotations>/<label>_r1.txt        the subset where the label is clearly relevant: NOT a separate
                                      label (v080 ships 24 labels + 14 *_r1 files + README.txt)

Rules (docs/datasets.md "Real datasets"): labels = the 24 potential labels; text = the image's kept tags joined
by spaces (tag_vocabulary: common = only common_tags.txt tags, all = every tag), as one caption.
A pair without any label or without any kept tag is dropped (require_label / require_tag), which
gives the DCMH-style set. The split is seeded over the eligible pairs (splits.py), frozen on first
prepare. Images never enter the rule, so every user with the same archives gets the same split.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np

from pipeline.data import locate, splits
from pipeline.data.image_size import image_sizes
from pipeline.params import ParamError

LABELS = ("animals", "baby", "bird", "car", "clouds", "dog", "female", "flower", "food", "indoor", "lake", "male",
          "night", "people", "plant_life", "portrait", "river", "sea", "sky", "structures", "sunset", "transport",
          "tree", "water")
IMAGE_NAME = re.compile(r"^im(\d+)\.jpg$")


class MirflickrError(ValueError):
    """The MIRFlickr files are missing, malformed or inconsistent."""


def _int_lines(path: Path, n_images: int) -> np.ndarray:
    """Image numbers listed in an annotation file, checked to be 1..n_images."""
    tokens = path.read_text().split()
    try:
        ids = np.array(tokens, dtype=np.int64)
    except ValueError as exc:
        raise MirflickrError(f"{path}: expected one image number per line ({exc})") from exc
    bad = ids[(ids < 1) | (ids > n_images)]
    if bad.size:
        raise MirflickrError(f"{path}: image number {int(bad[0])} is outside 1..{n_images}")
    return ids


def read_labels(ann_dir: Path, n_images: int) -> np.ndarray:
    """`[n_images, 24]` bool matrix from the 24 potential-label files (row i = image i+1)."""
    names = {p.stem for p in ann_dir.glob("*.txt") if p.name != "README.txt" and not p.stem.endswith("_r1")}
    if names != set(LABELS):
        raise MirflickrError(f"{ann_dir}: expected the 24 label files of annotations v080 "
                             f"({', '.join(LABELS)}); missing: {sorted(set(LABELS) - names) or 'none'}, "
                             f"unexpected: {sorted(names - set(LABELS)) or 'none'}")
    out = np.zeros((n_images, len(LABELS)), dtype=bool)
    for j, name in enumerate(LABELS):
        out[_int_lines(ann_dir / f"{name}.txt", n_images) - 1, j] = True
    return out


def read_tags(tags_dir: Path, ids: np.ndarray, vocabulary: set[str] | None) -> list[list[str]]:
    """Each image's tags in file order, de-duplicated, restricted to `vocabulary` when given."""
    out = []
    for i in ids:
        path = tags_dir / f"tags{i}.txt"
        if not path.is_file():
            raise MirflickrError(f"{path}: tag file of image im{i}.jpg not found")
        seen: dict[str, None] = {}
        for tag in path.read_text(encoding="utf-8", errors="replace").split():
            if vocabulary is None or tag in vocabulary:
                seen.setdefault(tag, None)
        out.append(list(seen))
    return out


def read(root: Path, dparams: dict, dataset: str, progress: bool = True) -> tuple[list[dict], list[str], dict]:
    """Rows (with their split), label names and stats of a MIRFlickr-25K folder."""
    if dparams["tag_vocabulary"] not in ("common", "all"):
        raise ParamError(f"params: data.{dataset}.tag_vocabulary must be 'common' or 'all', got {dparams['tag_vocabulary']!r}")
    common = locate.find_file(root, "common_tags.txt", "MIRFlickr tag list, in mirflickr25k.zip")
    image_dir = common.parent.parent
    tags_dir = image_dir / "meta" / "tags"
    ann_dir = locate.find_file(root, "animals.txt", "MIRFlickr annotations v080").parent

    ids = np.array(sorted(int(m.group(1)) for name in _listdir(image_dir) if (m := IMAGE_NAME.match(name))),
                   dtype=np.int64)
    if ids.size == 0 or not np.array_equal(ids, np.arange(1, ids.size + 1)):
        raise MirflickrError(f"{image_dir}: expected images im1.jpg .. im<N>.jpg without gaps, found {ids.size} "
                             f"images" + (f" (first gap after im{int(np.argmax(np.diff(ids) != 1)) + 1}.jpg)" if ids.size > 1 else ""))
    n = int(ids.size)
    labels = read_labels(ann_dir, n)
    vocabulary = None
    if dparams["tag_vocabulary"] == "common":
        vocabulary = {line.split()[0] for line in common.read_text(encoding="utf-8").splitlines() if line.strip()}
    tags = read_tags(tags_dir, ids, vocabulary)

    has_label = labels.any(axis=1)
    has_tag = np.array([bool(t) for t in tags])
    keep = (has_label | (not dparams["require_label"])) & (has_tag | (not dparams["require_tag"]))
    eligible = ids[keep]
    if dparams["expected_pairs"] and eligible.size != dparams["expected_pairs"]:
        raise MirflickrError(f"{root}: the pair rule keeps {eligible.size} pairs, data.{dataset}.expected_pairs says "
                             f"{dparams['expected_pairs']} (different archives or rule parameters; set it to 0 to accept)")
    rule = (f"eligible = images with {'>=1 of the 24 labels' if dparams['require_label'] else 'any labels'} and "
            f"{'>=1' if dparams['require_tag'] else 'any number of'} {dparams['tag_vocabulary']} tags; ordered by "
            f"sha256('<seed>:<image number>'); test = first n_test, val = next n_val, train = rest")
    assignment, created = splits.frozen_split(
        dparams["split_file"], "mirflickr", rule,
        lambda: splits.seeded_split(eligible.tolist(), dparams["n_val"], dparams["n_test"], dparams["split_seed"]),
        set(eligible.tolist()),
        {"seed": dparams["split_seed"], "n_val": dparams["n_val"], "n_test": dparams["n_test"],
         "tag_vocabulary": dparams["tag_vocabulary"], "require_label": dparams["require_label"],
         "require_tag": dparams["require_tag"], "eligible": int(eligible.size)})

    paths = [image_dir / f"im{i}.jpg" for i in eligible]
    locate.check_inside(paths, image_dir, "the MIRFlickr image folder")
    sizes = image_sizes(paths, progress)
    rows = []
    for k, i in enumerate(eligible):
        text = " ".join(tags[i - 1])
        rows.append({"image_id": int(i), "file_path": str(paths[k]), "width": int(sizes[k, 0]),
                     "height": int(sizes[k, 1]), "captions": [text] if text else [],
                     "labels": np.flatnonzero(labels[i - 1]).tolist(), "boxes": [], "box_labels": [],
                     "split": assignment[int(i)]})
    stats = {"source_images": n, "without_label": int((~has_label).sum()), "without_tag": int((~has_tag).sum()),
             "without_label_and_tag": int((~has_label & ~has_tag).sum()), "eligible_pairs": int(eligible.size),
             "split_file": str(dparams["split_file"]), "split_file_created": created,
             "split_file_sha256": splits.file_sha256(dparams["split_file"])}
    return rows, list(LABELS), stats


def _listdir(path: Path) -> list[str]:
    if not path.is_dir():
        raise MirflickrError(f"{path}: image folder not found")
    return os.listdir(path)
