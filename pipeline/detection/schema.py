"""Parameter schema of the `extract` and `detector` sections (kept free of torch imports: every stage reads it).

`pipeline.params` adds the two free-form mappings of `extract` (`detectors`, `weights`); value
ranges and choices are checked by `pipeline.detection.settings`.
"""
from __future__ import annotations

from typing import Any

EXTRACT_SCHEMA: dict[str, Any] = {
    # The detector is chosen per dataset in `extract.detectors.<dataset>` (added by pipeline.params):
    # butd_r101_c4 | frcnn_r50_fpn_v2_coco | shapes_frcnn, or "auto" (shapes_frcnn for the embedded
    # `shapes` kind, butd_r101_c4 otherwise); weights file per detector: `extract.weights.<detector>`.
    # RoI selection (papers/001): exactly num_boxes per image; score threshold; per-class NMS IoU,
    # relaxed by nms_step up to nms_max when too few survive; class scores below the floor skip NMS.
    "num_boxes": 36,
    "score_threshold": 0.5,
    "nms": 0.3,
    "nms_max": 0.9,
    "nms_step": 0.1,
    "class_score_floor": 0.01,
    # butd / COCO detectors: RPN proposals per image, image resize (short side, long-side cap).
    # (shapes_frcnn keeps its trained input size and `detector.proposals`.)
    "proposals": 300,
    "min_size": 600,
    "max_size": 1000,
    # Stored feature dtype (float16 | float32); images per batch; images per store chunk (resume unit).
    "dtype": "float16",
    "batch_size": 8,
    "chunk_size": 64,
    # DataLoader decode workers (more on a GPU machine); device auto | cpu | cuda[:N]; bfloat16 autocast
    # on CUDA (off by default: the reference extractors run float32; bf16 is faster and its deviation is
    # in reports/benchmarks.md); torch CPU threads of the extracting process (0 = torch default; 1 is fastest for the small
    # shapes detector and robust on a shared machine, where spinning OpenMP threads cost 6-18x:
    # reports/benchmarks.md).
    "workers": 2,
    "device": "auto",
    "autocast": False,
    "threads": 1,
    # Unreadable image: error (stop, naming the file) or skip (valid=False row, counted);
    # unusual modes (grey, 16-bit, CMYK, palette, alpha): convert (documented rules) or strict (error).
    "on_bad_image": "error",
    "image_modes": "convert",
}

DETECTOR_SCHEMA: dict[str, Any] = {
    # Training of the shapes detector (xmr train-detector): AdamW iterations of batch_size images,
    # peak lr with linear warm-up over `warmup` of the run then cosine decay.
    "iterations": 600,
    "batch_size": 8,
    "lr": 0.002,
    "weight_decay": 0.0001,
    "warmup": 0.1,
    # Backbone width (channels of the first stage), RoI feature size, RPN proposals kept at test time
    # (also when `xmr extract` runs it).
    "width": 24,
    "representation": 256,
    "proposals": 100,
    # Resume file written every checkpoint_every iterations; score for the reported recall/precision;
    # torch CPU threads (0 = torch default; 1 stays fast when the machine is shared).
    "checkpoint_every": 50,
    "eval_score": 0.5,
    "threads": 1,
}
