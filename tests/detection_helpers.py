"""Tiny datasets and detectors for the detection tests (built by the tests themselves)."""
from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from pipeline.data.shapes import CLASSES, generate_image
from pipeline.data.table import write_table
from pipeline.detection.shapes_frcnn import ShapesDetectorConfig, build_shapes_detector, init_weights_
from pipeline.detection.train import save_shapes_detector
from pipeline.params import SHAPES_SCHEMA, validate

RESIZED = {3: (160, 120), 6: (96, 140)}  # rows drawn at other sizes, to check row alignment


def shapes_table(root: Path, n: int = 10, dataset: str = "tiny") -> Path:
    """`n` shapes images (two of them resized) and their prepared table at root/data/<dataset>/table.parquet."""
    p = dict(copy.deepcopy(SHAPES_SCHEMA), n_images=n, n_val=2, n_test=0)
    cols = {k: [] for k in ("image_id", "file_path", "width", "height", "captions", "labels", "boxes", "box_labels", "split")}
    (root / "images").mkdir(parents=True, exist_ok=True)
    for i in range(n):
        img, objects, captions = generate_image(i, p)
        boxes = np.array([o["box"] for o in objects], dtype=np.float32)
        if i in RESIZED:
            w, h = RESIZED[i]
            boxes *= np.array([w / img.width, h / img.height] * 2, dtype=np.float32)
            img = img.resize((w, h), Image.BILINEAR)
        path = root / "images" / f"{i:03d}.png"
        img.save(path)
        labels = [int(o["class_id"]) for o in objects]
        cols["image_id"].append(i + 1)
        cols["file_path"].append(str(path))
        cols["width"].append(img.width)
        cols["height"].append(img.height)
        cols["captions"].append(captions)
        cols["labels"].append(sorted(set(labels)))
        cols["boxes"].append(boxes.tolist())
        cols["box_labels"].append(labels)
        cols["split"].append("train" if i < n - 2 else "val")
    out = root / "data" / dataset / "table.parquet"
    write_table(cols, list(CLASSES), dataset, out)
    return out


def tiny_detector(models_dir: Path, dataset: str = "tiny", seed: int = 0) -> Path:
    """An untrained (random) small shapes detector saved where `xmr extract` looks for it."""
    torch.manual_seed(seed)
    config = ShapesDetectorConfig(num_classes=len(CLASSES), width=8, feature_channels=16, representation=32, proposals=50)
    model = init_weights_(build_shapes_detector(config))
    out = models_dir / dataset / "detector"
    save_shapes_detector(model.eval(), list(CLASSES), out)
    return out


def params(dataset: str = "tiny", **extract) -> dict:
    """Validated params with a shapes-kind dataset and small extraction settings."""
    ext = {"workers": 0, "chunk_size": 4, "batch_size": 3, "device": "cpu", "proposals": 50}
    ext.update(extract)
    return validate({"datasets": [dataset], "data": {dataset: {"kind": "shapes"}}, "extract": ext,
                     "detector": {"iterations": 4, "batch_size": 2, "width": 8, "representation": 32,
                                  "proposals": 50, "checkpoint_every": 2}})
