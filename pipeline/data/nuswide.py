"""NUS-WIDE (official annotation archives + the user's own copy of the images) -> rows of the table.

Layout read (found by name under `root`, see locate.py):
  ConceptsList/Concepts81.txt             the 81 concept names, one per line
  Groundtruth/AllLabels/Labels_<c>.txt    269,648 lines of 0/1, row-aligned with Imagelist.txt
  NUS_WID_Tags/TagList1k.txt              the 1,000 tag names
  NUS_WID_Tags/AllTags1k.txt              269,648 rows of 1,000 space/tab-separated 0/1
  ImageList/Imagelist.txt                 one image path per row, e.g. actor\\0001_2124494179.jpg
Images: `images_root/<concept>/<file>.jpg` (backslashes and any "...\\Flickr\\" prefix of the list are
normalised away).

Rules (papers/000, DCMH): labels = the `top_concepts` (21) concepts most frequent over all images,
ties broken by the concept list order, kept in concept-list order; a pair is eligible when it has at
least one of them (195,834 pairs, checked by `expected_pairs`); text = the image's 1k tags joined
in TagList1k order. The split is seeded over eligible rows (image_id = 0-based row of
Imagelist.txt), frozen on first prepare: 189,834 / 5,000 / 1,000. Eligible pairs whose image the
user lacks are dropped and counted (or an error), without changing the split.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from pipeline.data import locate, splits
from pipeline.data.image_size import image_sizes
from pipeline.params import ParamError
from pipeline.project_paths import project_path

_ALLOWED = np.zeros(256, dtype=bool)
_ALLOWED[[ord(c) for c in "01 \t\r\n"]] = True
_PREFIX = re.compile(r"^.*?/flickr/", re.IGNORECASE)


class NuswideError(ValueError):
    """The NUS-WIDE files are missing, malformed or inconsistent."""


def binary_matrix(path: Path, n_rows: int, n_cols: int) -> np.ndarray:
    """Parse a whitespace-separated 0/1 text matrix without a per-value Python loop.

    Fast path: when every line has the same byte layout (the official files do), the digits sit in
    the same columns of every line and are gathered from a 2-D view; otherwise (the general path)
    every 0/1 byte is selected from the flat buffer.
    """
    data = np.fromfile(path, dtype=np.uint8)
    bad = np.flatnonzero(~_ALLOWED[data])
    if bad.size:
        line = int(np.count_nonzero(data[:bad[0]] == ord("\n"))) + 1
        raise NuswideError(f"{path}: line {line} has the character {chr(data[bad[0]])!r}; expected only 0/1 values")
    is_digit = (data == ord("0")) | (data == ord("1"))
    n_digits = int(np.count_nonzero(is_digit))
    if n_digits != n_rows * n_cols:
        raise NuswideError(f"{path}: {n_digits} values, expected {n_rows} rows x {n_cols} = {n_rows * n_cols}")
    newlines = np.flatnonzero(data == ord("\n"))
    width = int(newlines[0]) + 1 if newlines.size else 0
    if (newlines.size == n_rows and data.size == n_rows * width
            and np.array_equal(newlines, np.arange(n_rows) * width + width - 1)):
        view = data.reshape(n_rows, width)
        cols = np.flatnonzero(is_digit[:width])
        if cols.size == n_cols:  # n_digits equals rows x cols, so no other column holds a digit
            digits = view[:, cols]
            if np.all((digits == ord("0")) | (digits == ord("1"))):
                return digits == ord("1")
    return (data[is_digit] == ord("1")).reshape(n_rows, n_cols)


def _lines(path: Path) -> list[str]:
    return [line.strip() for line in path.read_text(encoding="utf-8", errors="replace").splitlines() if line.strip()]


def image_relpath(entry: str) -> str:
    """`C:\\ImageData\\Flickr\\actor\\0001_2.jpg` or `actor\\0001_2.jpg` -> `actor/0001_2.jpg`."""
    path = entry.replace("\\", "/")
    return _PREFIX.sub("", path).lstrip("/")


def read(root: Path, dparams: dict, dataset: str, progress: bool = True) -> tuple[list[dict], list[str], dict]:
    """Rows (with their split), label names and stats of NUS-WIDE."""
    if dparams["missing_images"] not in ("drop", "error"):
        raise ParamError(f"params: data.{dataset}.missing_images must be 'drop' or 'error', got {dparams['missing_images']!r}")
    if not dparams["images_root"]:
        raise ParamError(f"params: data.{dataset}.images_root is empty; NUS-WIDE images are not downloadable from the "
                         f"official host: set it to your copy of the images (<concept>/<file>.jpg)")
    images_root = project_path(dparams["images_root"])
    if not images_root.is_dir():
        raise FileNotFoundError(f"{images_root}: NUS-WIDE image folder not found (data.{dataset}.images_root)")

    image_list = _lines(locate.find_file(root, "Imagelist.txt", "NUS-WIDE image list, in ImageList.zip"))
    n = len(image_list)
    concepts = _lines(locate.find_file(root, "Concepts81.txt", "NUS-WIDE concept list, in ConceptsList.zip"))
    label_dir = locate.find_dir(root, "AllLabels", "NUS-WIDE ground truth, in Groundtruth.zip")
    k = dparams["top_concepts"]
    if not 1 <= k <= len(concepts):
        raise ParamError(f"params: data.{dataset}.top_concepts must be in 1..{len(concepts)}, got {k}")
    labels = np.zeros((n, len(concepts)), dtype=bool)
    for j, concept in enumerate(concepts):
        path = label_dir / f"Labels_{concept}.txt"
        if not path.is_file():
            raise NuswideError(f"{path}: ground-truth file of concept '{concept}' not found")
        labels[:, j] = binary_matrix(path, n, 1)[:, 0]
    counts = labels.sum(axis=0)
    top = np.sort(np.argsort(-counts, kind="stable")[:k])
    tag_names = _lines(locate.find_file(root, "TagList1k.txt", "NUS-WIDE 1k tag list, in NUS_WID_Tags.zip"))
    tags = binary_matrix(locate.find_file(root, "AllTags1k.txt", "NUS-WIDE 1k tag matrix, in NUS_WID_Tags.zip"),
                         n, len(tag_names))

    kept_labels = labels[:, top]
    keep = kept_labels.any(axis=1)
    if dparams["require_tags"]:
        keep &= tags.any(axis=1)
    eligible = np.flatnonzero(keep)
    if dparams["expected_pairs"] and eligible.size != dparams["expected_pairs"]:
        raise NuswideError(f"{root}: the top-{k} rule keeps {eligible.size} pairs, data.{dataset}.expected_pairs says "
                           f"{dparams['expected_pairs']} (different annotation archives or rule parameters; set it to "
                           f"0 to accept)")
    rule = (f"eligible = rows of Imagelist.txt with >=1 of the {k} most frequent concepts"
            f"{' and >=1 of the 1k tags' if dparams['require_tags'] else ''}; ordered by sha256('<seed>:<row>'); "
            f"test = first n_test, val = next n_val, train = rest")
    assignment, created = splits.frozen_split(
        dparams["split_file"], "nuswide", rule,
        lambda: splits.seeded_split(eligible.tolist(), dparams["n_val"], dparams["n_test"], dparams["split_seed"]),
        set(eligible.tolist()),
        {"seed": dparams["split_seed"], "n_val": dparams["n_val"], "n_test": dparams["n_test"],
         "top_concepts": [concepts[j] for j in top], "require_tags": dparams["require_tags"],
         "eligible": int(eligible.size)})

    paths = [images_root / image_relpath(image_list[i]) for i in eligible]
    locate.check_inside(paths, images_root, "Imagelist.txt")
    sizes = image_sizes(paths, progress)
    present = sizes[:, 0] >= 0
    if not present.all() and dparams["missing_images"] == "error":
        first = paths[int(np.argmin(present))]
        raise FileNotFoundError(f"{first}: image of Imagelist.txt row {int(eligible[np.argmin(present)])} not found "
                                f"({int((~present).sum())} eligible images missing from data.{dataset}.images_root; "
                                f"set data.{dataset}.missing_images: drop to skip them)")
    tag_array = np.array(tag_names, dtype=object)
    rows = []
    for r, i in enumerate(eligible):
        if not present[r]:
            continue
        text = " ".join(tag_array[tags[i]])
        rows.append({"image_id": int(i), "file_path": str(paths[r]), "width": int(sizes[r, 0]),
                     "height": int(sizes[r, 1]), "captions": [text] if text else [],
                     "labels": np.flatnonzero(kept_labels[i]).tolist(), "boxes": [], "box_labels": [],
                     "split": assignment[int(i)]})
    stats = {"source_images": n, "concept_counts": {concepts[j]: int(counts[j]) for j in top},
             "eligible_pairs": int(eligible.size), "missing_images": int((~present).sum()),
             "without_tags": int((~tags[eligible].any(axis=1)).sum()), "split_file": str(dparams["split_file"]),
             "split_file_created": created, "split_file_sha256": splits.file_sha256(dparams["split_file"])}
    return rows, [concepts[j] for j in top], stats
