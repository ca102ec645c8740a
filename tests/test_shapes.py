import hashlib
import json
import re

import numpy as np
import pytest
from PIL import Image

from pipeline.data import shapes
from conftest import tiny_shapes_params

# Every (colour word, shape word) a caption can contain, mapped back to its class id.
_PHRASES = {}
for _shape, _words in shapes.SHAPE_WORDS.items():
    for _colour, _colour_words in shapes.COLOUR_WORDS.items():
        for _cw in _colour_words:
            for _sing, _plur in _words:
                _PHRASES[f"{_cw} {_sing}"] = shapes.class_id(_shape, _colour)
                _PHRASES[f"{_cw} {_plur}"] = shapes.class_id(_shape, _colour)
_PATTERN = re.compile(r"\b(" + "|".join(sorted(map(re.escape, _PHRASES), key=len, reverse=True)) + r")\b")
_COLOUR_WORDS = {w for ws in shapes.COLOUR_WORDS.values() for w in ws}


def mentioned_classes(caption: str) -> list[int]:
    return [_PHRASES[m] for m in _PATTERN.findall(caption)]


def _digest(folder):
    h = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        h.update(str(path.relative_to(folder)).encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def test_generation_is_deterministic_for_a_seed(tmp_path):
    p = tiny_shapes_params(n_images=12, n_val=2, n_test=2)
    shapes.generate(tmp_path / "a", p)
    shapes.generate(tmp_path / "b", p)
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")
    shapes.generate(tmp_path / "c", dict(p, seed=1))
    assert _digest(tmp_path / "a") != _digest(tmp_path / "c")


def test_layout_and_splits(shapes_raw):
    root = shapes_raw / "shapes" / "raw"
    p = tiny_shapes_params()
    sizes = {}
    for split in ("train", "val", "test"):
        caps = json.loads((root / "annotations" / f"captions_{split}.json").read_text())
        inst = json.loads((root / "annotations" / f"instances_{split}.json").read_text())
        assert caps["images"] == inst["images"]
        assert len(inst["categories"]) == 24
        sizes[split] = len(caps["images"])
        for img in caps["images"]:
            with Image.open(root / split / img["file_name"]) as im:
                assert im.size == (img["width"], img["height"]) == (p["image_size"], p["image_size"])
                assert im.mode == "RGB"
    assert sizes == {"train": 24, "val": 8, "test": 8}


def test_labels_boxes_and_captions_agree():
    p = tiny_shapes_params()
    omitted = 0
    for index in range(60):
        image, objects, captions = shapes.generate_image(index, p)
        present = {o["class_id"] for o in objects}
        assert p["min_objects"] <= len(objects) <= p["max_objects"]
        arr = np.asarray(image).astype(int)
        for o in objects:
            x0, y0, x1, y1 = o["box"]
            assert 0 <= x0 < x1 <= p["image_size"] and 0 <= y0 < y1 <= p["image_size"]
            assert p["min_object_size"] * 0.3 <= x1 - x0 <= p["max_object_size"] * 1.25
            # The object's colour is really drawn inside its box: its colour channel dominates there.
            patch = arr[int(y0):int(np.ceil(y1)), int(x0):int(np.ceil(x1))].reshape(-1, 3)
            target = np.array(shapes.COLOUR_RGB[o["colour"]])
            assert (np.abs(patch - target).sum(1) < 120).mean() > 0.2
        assert len(captions) == p["captions_per_image"]
        for caption in captions:
            mentioned = mentioned_classes(caption)
            assert mentioned, caption
            assert set(mentioned) <= present, (caption, present)
            # Each colour word is followed by a shape word: no dangling or absent object.
            assert len(mentioned) == sum(w in _COLOUR_WORDS for w in caption.split())
            omitted += len(set(mentioned)) < len(present)
    assert omitted > 0, "captions should sometimes leave objects out"


def test_all_classes_occur_and_split_is_fixed():
    p = tiny_shapes_params(n_images=400, n_val=50, n_test=50)
    seen = set()
    for index in range(400):
        seen |= {o["class_id"] for o in shapes.generate_image(index, p)[1]}
    assert seen == set(range(24))
    assert [shapes.split_of(i, p) for i in (0, 299, 300, 349, 350, 399)] == ["train", "train", "val", "val", "test", "test"]


@pytest.mark.parametrize("override, needle", [
    ({"n_val": 30, "n_test": 10}, "n_images > n_val + n_test"),
    ({"min_objects": 3, "max_objects": 2}, "min_objects <= max_objects"),
    ({"max_object_size": 200}, "max_object_size < image_size - 2"),
    ({"captions_per_image": 0}, "captions_per_image must be >= 1"),
])
def test_bad_generator_params(tmp_path, override, needle):
    with pytest.raises(ValueError, match=re.escape(needle)):
        shapes.generate(tmp_path / "raw", tiny_shapes_params(**override))
    assert not (tmp_path / "raw").exists()
