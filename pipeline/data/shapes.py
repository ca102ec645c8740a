"""The embedded `shapes` dataset: synthetic images, boxes, labels and captions, generated offline.

Each image holds 1-4 objects from 24 classes (6 shapes x 4 colours) over a cluttered background.
Captions come from a small grammar with synonyms, counts and spatial relations, and they may leave
objects out, so text is the weaker modality as in real data. Everything derives from
`(seed, image index)`, so the dataset is identical on every machine and can be regenerated at will.
The output uses the MS-COCO layout, so the COCO reader serves this dataset and real COCO alike.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from tqdm import tqdm

from pipeline.io import atomic_output

SHAPES = ("circle", "square", "triangle", "star", "cross", "diamond")
COLOURS = ("red", "green", "blue", "yellow")
CLASSES = tuple(f"{colour} {shape}" for shape in SHAPES for colour in COLOURS)

# Caption vocabulary: (singular, plural) synonyms per shape, synonyms per colour.
SHAPE_WORDS = {
    "circle": (("circle", "circles"), ("disc", "discs"), ("round shape", "round shapes")),
    "square": (("square", "squares"), ("box", "boxes"), ("block", "blocks")),
    "triangle": (("triangle", "triangles"), ("three-sided shape", "three-sided shapes")),
    "star": (("star", "stars"), ("five-pointed star", "five-pointed stars")),
    "cross": (("cross", "crosses"), ("plus sign", "plus signs")),
    "diamond": (("diamond", "diamonds"), ("rhombus", "rhombi"), ("lozenge", "lozenges")),
}
COLOUR_WORDS = {
    "red": ("red", "crimson", "scarlet"),
    "green": ("green", "emerald", "lime"),
    "blue": ("blue", "navy", "azure"),
    "yellow": ("yellow", "golden", "amber"),
}
COLOUR_RGB = {"red": (215, 40, 40), "green": (40, 165, 60), "blue": (45, 70, 215), "yellow": (230, 200, 30)}
NUMBERS = {1: ("a", "one"), 2: ("two", "a pair of"), 3: ("three", "several"), 4: ("four", "several")}
SPLITS = ("train", "val", "test")


def class_id(shape: str, colour: str) -> int:
    """0-based class index of a (shape, colour) pair."""
    return SHAPES.index(shape) * len(COLOURS) + COLOURS.index(colour)


def _shape_points(shape: str, cx: float, cy: float, w: float, h: float, rng: np.random.Generator) -> list:
    """Polygon vertices of a shape centred at (cx, cy) inside a w x h box."""
    rx, ry = w / 2, h / 2
    if shape == "square":
        return [(cx - rx, cy - ry), (cx + rx, cy - ry), (cx + rx, cy + ry), (cx - rx, cy + ry)]
    if shape == "triangle":
        return [(cx, cy - ry), (cx + rx, cy + ry), (cx - rx, cy + ry)]
    if shape == "diamond":
        return [(cx, cy - ry), (cx + rx, cy), (cx, cy + ry), (cx - rx, cy)]
    if shape == "star":
        pts = []
        for k in range(10):
            angle = -math.pi / 2 + k * math.pi / 5
            r = 1.0 if k % 2 == 0 else 0.45
            pts.append((cx + rx * r * math.cos(angle), cy + ry * r * math.sin(angle)))
        return pts
    if shape == "cross":
        a, b = rx / 3, ry / 3
        return [(cx - a, cy - ry), (cx + a, cy - ry), (cx + a, cy - b), (cx + rx, cy - b), (cx + rx, cy + b),
                (cx + a, cy + b), (cx + a, cy + ry), (cx - a, cy + ry), (cx - a, cy + b), (cx - rx, cy + b),
                (cx - rx, cy - b), (cx - a, cy - b)]
    raise ValueError(f"unknown shape {shape!r}")


def _overlap(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over the smaller box's area: high when one object would hide the other."""
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    smaller = min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))
    return ix * iy / smaller


def _place_objects(rng: np.random.Generator, p: dict) -> list[dict]:
    """Random objects that overlap a little but never hide each other (overlap <= 0.3 of the smaller)."""
    size = p["image_size"]
    n = int(rng.integers(p["min_objects"], p["max_objects"] + 1))
    objects: list[dict] = []
    for _ in range(n):
        for _attempt in range(50):
            s = rng.uniform(p["min_object_size"], p["max_object_size"])
            w, h = s * rng.uniform(0.8, 1.2), s * rng.uniform(0.8, 1.2)
            cx, cy = rng.uniform(w / 2 + 1, size - w / 2 - 1), rng.uniform(h / 2 + 1, size - h / 2 - 1)
            box = np.array([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2])
            if all(_overlap(box, o["box"]) <= 0.3 for o in objects):
                shape = SHAPES[rng.integers(len(SHAPES))]
                colour = COLOURS[rng.integers(len(COLOURS))]
                objects.append({"shape": shape, "colour": colour, "box": box, "cx": cx, "cy": cy, "w": w, "h": h})
                break
    return objects


def _draw(objects: list[dict], rng: np.random.Generator, p: dict) -> tuple[Image.Image, list[list[float]]]:
    """Render the objects over a cluttered background; returns the image and tight xyxy boxes."""
    size = p["image_size"]
    tint = rng.integers(175, 240, size=3)
    canvas = np.clip(tint + rng.normal(0, 6, size=(size, size, 3)), 0, 255).astype(np.uint8)
    image = Image.fromarray(canvas)
    draw = ImageDraw.Draw(image)
    for _ in range(p["clutter"]):  # grey strokes and dots: clutter that carries no class colour
        grey = int(rng.integers(90, 170))
        x0, y0 = rng.uniform(0, size, 2)
        if rng.random() < 0.5:
            x1, y1 = x0 + rng.normal(0, size / 5), y0 + rng.normal(0, size / 5)
            draw.line([(x0, y0), (x1, y1)], fill=(grey, grey, grey), width=int(rng.integers(1, 3)))
        else:
            r = rng.uniform(1, 3)
            draw.ellipse([x0 - r, y0 - r, x0 + r, y0 + r], fill=(grey, grey, grey))
    boxes = []
    for o in objects:
        rgb = tuple(int(np.clip(c + rng.integers(-25, 26), 0, 255)) for c in COLOUR_RGB[o["colour"]])
        if o["shape"] == "circle":
            x0, y0, x1, y1 = o["box"]
            draw.ellipse([x0, y0, x1, y1], fill=rgb)
            boxes.append([float(x0), float(y0), float(x1), float(y1)])
        else:
            pts = np.array(_shape_points(o["shape"], o["cx"], o["cy"], o["w"], o["h"], rng))
            draw.polygon([tuple(pt) for pt in pts], fill=rgb)
            boxes.append([float(pts[:, 0].min()), float(pts[:, 1].min()), float(pts[:, 0].max()), float(pts[:, 1].max())])
    return image, boxes


def _noun_phrase(shape: str, colour: str, count: int, rng: np.random.Generator) -> str:
    singular, plural = SHAPE_WORDS[shape][rng.integers(len(SHAPE_WORDS[shape]))]
    colour_word = COLOUR_WORDS[colour][rng.integers(len(COLOUR_WORDS[colour]))]
    if count == 1:
        det = NUMBERS[1][rng.integers(2)]
        if det == "a" and colour_word[0] in "aeiou":
            det = "an"
        return f"{det} {colour_word} {singular}"
    if rng.random() < 0.2:  # counts are sometimes left vague
        return f"some {colour_word} {plural}"
    return f"{NUMBERS[count][rng.integers(2)]} {colour_word} {plural}"


def _relation(a: dict, b: dict) -> str:
    dx, dy = b["cx"] - a["cx"], b["cy"] - a["cy"]
    if abs(dx) >= abs(dy):
        return "to the left of" if dx > 0 else "to the right of"
    return "above" if dy > 0 else "below"


def _caption(objects: list[dict], rng: np.random.Generator) -> str:
    """One caption; it mentions a random non-empty subset of the present classes, never an absent one."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for o in objects:
        groups.setdefault((o["shape"], o["colour"]), []).append(o)
    keys = list(groups)
    rng.shuffle(keys)
    keep = [k for k in keys if rng.random() > 0.3] or keys[:1]  # deliberate omissions
    phrases = [_noun_phrase(s, c, len(groups[(s, c)]), rng) for s, c in keep]
    style = rng.random()
    if len(keep) >= 2 and style < 0.4:
        first, second = groups[keep[0]][0], groups[keep[1]][0]
        text = f"{phrases[0]} {_relation(first, second)} {phrases[1]}"
        if len(phrases) > 2:
            text += " and " + " and ".join(phrases[2:])
    else:
        text = phrases[0] if len(phrases) == 1 else ", ".join(phrases[:-1]) + " and " + phrases[-1]
    frames = ("{}", "there {} {}", "a picture of {}", "an image showing {}", "{} on a cluttered background",
              "{} in this picture", "we can see {}")
    frame = frames[rng.integers(len(frames))]
    if frame.startswith("there"):
        verb = "is" if text.split()[0] in ("a", "an", "one") else "are"
        return frame.format(verb, text)
    return frame.format(text)


def generate_image(index: int, p: dict) -> tuple[Image.Image, list[dict], list[str]]:
    """Image `index` of the dataset: (image, objects with boxes and class ids, captions)."""
    rng = np.random.default_rng([p["seed"], index])
    objects = _place_objects(rng, p)
    image, boxes = _draw(objects, rng, p)
    for o, box in zip(objects, boxes):
        o["box"] = box
        o["class_id"] = class_id(o["shape"], o["colour"])
    captions = [_caption(objects, rng) for _ in range(p["captions_per_image"])]
    return image, objects, captions


def split_of(index: int, p: dict) -> str:
    """Fixed split by index: the last `n_test` images are test, the `n_val` before them val."""
    n_train = p["n_images"] - p["n_val"] - p["n_test"]
    return "train" if index < n_train else "val" if index < n_train + p["n_val"] else "test"


def _check_params(p: dict) -> None:
    if p["n_val"] < 0 or p["n_test"] < 0 or p["n_images"] - p["n_val"] - p["n_test"] < 1:
        raise ValueError(f"params: data.shapes needs n_images > n_val + n_test >= 0, got "
                         f"n_images={p['n_images']}, n_val={p['n_val']}, n_test={p['n_test']}")
    if not 1 <= p["min_objects"] <= p["max_objects"]:
        raise ValueError(f"params: data.shapes needs 1 <= min_objects <= max_objects, got "
                         f"{p['min_objects']}..{p['max_objects']}")
    if not 4 <= p["min_object_size"] <= p["max_object_size"] < p["image_size"] - 2:
        raise ValueError(f"params: data.shapes needs 4 <= min_object_size <= max_object_size < image_size - 2, "
                         f"got {p['min_object_size']}..{p['max_object_size']} for image_size {p['image_size']}")
    if p["captions_per_image"] < 1:
        raise ValueError(f"params: data.shapes.captions_per_image must be >= 1, got {p['captions_per_image']}")


def generate(out_dir: str | Path, p: dict) -> dict:
    """Write the dataset in COCO layout under `out_dir` (atomically); returns per-split counts."""
    _check_params(p)
    categories = [{"id": i + 1, "name": name, "supercategory": name.split()[1]} for i, name in enumerate(CLASSES)]
    docs = {s: {"images": [], "captions": [], "instances": []} for s in SPLITS}
    next_id = iter(range(1, 1 << 62))  # annotation ids, unique across files
    with atomic_output(out_dir) as tmp:
        for split in SPLITS:
            (tmp / split).mkdir(parents=True)
        for index in tqdm(range(p["n_images"]), desc="shapes: generating", unit="img", mininterval=1.0):
            split = split_of(index, p)
            image, objects, captions = generate_image(index, p)
            image_id = index + 1
            file_name = f"{image_id:06d}.png"
            image.save(tmp / split / file_name)
            doc = docs[split]
            doc["images"].append({"id": image_id, "file_name": file_name, "width": p["image_size"], "height": p["image_size"]})
            for caption in captions:
                doc["captions"].append({"id": next(next_id), "image_id": image_id, "caption": caption})
            for o in objects:
                x0, y0, x1, y1 = o["box"]
                doc["instances"].append({"id": next(next_id), "image_id": image_id,
                                         "category_id": o["class_id"] + 1, "bbox": [x0, y0, x1 - x0, y1 - y0],
                                         "area": (x1 - x0) * (y1 - y0), "iscrowd": 0})
        (tmp / "annotations").mkdir()
        info = {"description": "xmr embedded shapes dataset", "seed": p["seed"]}
        for split, doc in docs.items():
            captions = {"info": info, "images": doc["images"], "annotations": doc["captions"]}
            instances = {"info": info, "images": doc["images"], "annotations": doc["instances"], "categories": categories}
            (tmp / "annotations" / f"captions_{split}.json").write_text(json.dumps(captions))
            (tmp / "annotations" / f"instances_{split}.json").write_text(json.dumps(instances))
    return {split: len(doc["images"]) for split, doc in docs.items()}
