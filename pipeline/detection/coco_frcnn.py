"""torchvision's COCO Faster R-CNN (ResNet-50 FPN v2) as a region-feature detector.

The RoI feature is the output of its box head (four 3x3 convs + one FC layer): 1024-d. Classes are
torchvision's 91 COCO category slots without background (90, including the unused "N/A" slots), so
class id i is COCO category slot i + 1. Weights come from a local file (fetched by the download
stage with the pinned hash of `weights.REGISTRY`); nothing here touches the network.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torchvision.models.detection import FasterRCNN_ResNet50_FPN_V2_Weights, fasterrcnn_resnet50_fpn_v2

from pipeline.detection.convert import CheckpointError

NAME = "frcnn_r50_fpn_v2_coco"
FEATURE_DIM = 1024
NUM_SLOTS = 91  # incl. background


def class_names() -> list[str]:
    return list(FasterRCNN_ResNet50_FPN_V2_Weights.COCO_V1.meta["categories"][1:])


def build(min_size: int = 800, max_size: int = 1333, proposals: int = 1000):
    """The architecture with random weights (no download)."""
    return fasterrcnn_resnet50_fpn_v2(weights=None, weights_backbone=None, num_classes=NUM_SLOTS,
                                      min_size=min_size, max_size=max_size,
                                      rpn_post_nms_top_n_test=proposals).eval()


def load(path: str | Path, **settings):
    """The detector with the state dict stored at `path` (strict: every key and shape must match)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: weights file for {NAME} not found (run `xmr download` for a COCO dataset)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(f"{path}: not a readable checkpoint ({type(exc).__name__}: {exc})") from exc
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: expected a state dict, got {type(state).__name__}")
    model = build(**settings)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        detail = " ".join(str(exc).split())[:300]
        raise CheckpointError(f"{path}: keys or shapes do not match {NAME} ({detail})") from exc
    return model.eval()
