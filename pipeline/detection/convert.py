"""Load the published bottom-up-attention checkpoints into `butd` (torchvision layout).

Two layouts are recognised from their keys (both use detectron2 module names):
  bua         MILVLG/bottom-up-attention.pytorch, e.g. `bua-caffe-frcn-r101-k36.pth` (torch file):
              RPN objectness as 2 softmax logits per anchor (background block, then object block),
              Caffe anchors (ratio-major), 1601 classes with background first and box deltas for all
              1601, "+1" box widths, box-regression weights 1; attributes as `cls_embed`,
              `attr_linear1`, `attr_linear2`.
  detectron2  airsplay/py-bottom-up-attention, e.g. `faster_rcnn_from_caffe.pkl` (a detectron2 pickle
              `{'model': {name: numpy array}}`): one sigmoid logit per anchor, anchors size-major,
              1600 classes + background last, deltas for the 1600 foreground classes only,
              box-regression weights (10, 10, 5, 5); attributes as `cls_embedding`, `fc_attr`, `attr_score`.
Conversions: the object/background logit pair becomes one logit (w_obj - w_bg: sigmoid of the
difference equals the softmax probability); anchor channels are reordered ratio-major; background
moves to index 0 (with zero deltas where the checkpoint has none); conv1 is flipped from BGR to RGB
input. Every expected key must be present with the expected shape, and no key may be left over.

Parity settings per layout: stored cell anchors (MILVLG saves `cell_anchors.0`) must equal the
anchors the model computes, else the load stops naming both; the RPN minimum box size is 16 px of
the original image with "+1" widths (Caffe, MILVLG) or 0 (airsplay); the "no attribute" class is
attribute 0 (MILVLG) or the last attribute (airsplay). Files are read through the allow-list of
`safe_pickle` (tensors, numpy arrays, containers), every pickle protocol, numpy inside `.pth` included.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from pipeline.detection.butd import ButdConfig, build_butd, cell_anchors
from pipeline.detection.safe_pickle import load_weights_file

NORM_PARAMS = ("weight", "bias", "running_mean", "running_var")
# Buffers some detectron2 versions save that the model rebuilds itself (BN counters, pixel
# statistics); stored cell anchors are compared with the computed ones (`check_anchors`).
IGNORED = re.compile(r"(^|\.)num_batches_tracked$|^pixel_(mean|std)$")
STORED_ANCHORS = "proposal_generator.anchor_generator.cell_anchors.0"
# The published architecture: ResNet-101 C4, 1600 Visual Genome classes + background, 400 + 1 attributes.
RESNET101_BLOCKS = (3, 4, 23)
VG_CLASSES = 1601
VG_ATTRIBUTES = 401
ATTRIBUTE_KEYS = {
    "bua": {"cls_embed.weight": "class_embedding.weight", "attr_linear1.weight": "fc.weight",
            "attr_linear1.bias": "fc.bias", "attr_linear2.weight": "score.weight", "attr_linear2.bias": "score.bias"},
    "detectron2": {"cls_embedding.weight": "class_embedding.weight", "fc_attr.weight": "fc.weight",
                   "fc_attr.bias": "fc.bias", "attr_score.weight": "score.weight", "attr_score.bias": "score.bias"},
}
ANCHOR_RATIOS, ANCHOR_SCALES = 3, 4


class CheckpointError(ValueError):
    """A checkpoint cannot be read or does not match the expected keys and shapes."""


@dataclass
class ConvertedCheckpoint:
    model: torch.nn.Module  # `butd` with the converted weights, in eval mode
    config: ButdConfig
    layout: str


def read_checkpoint(path: str | Path) -> dict[str, np.ndarray | torch.Tensor]:
    """The flat {name: array} of a .pkl (detectron2 pickle) or .pth/.pt (torch) weights file,
    unwrapped from `model` / `state_dict`; read through the restricted unpickler."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint file not found")
    try:
        data = load_weights_file(path)
    except Exception as exc:  # unreadable, truncated, refused global, or not a weights file
        raise CheckpointError(f"{path}: not a readable checkpoint ({type(exc).__name__}: {exc})") from exc
    for wrapper in ("model", "state_dict"):
        if isinstance(data, dict) and isinstance(data.get(wrapper), dict):
            data = data[wrapper]
    if not isinstance(data, dict) or not data:
        raise CheckpointError(f"{path}: expected a mapping of parameter names to arrays")
    bad = next((k for k, v in data.items() if not isinstance(v, (np.ndarray, np.generic, torch.Tensor))), None)
    if bad is not None:
        raise CheckpointError(f"{path}: entry '{bad}' is a {type(data[bad]).__name__}, expected an array or tensor")
    return {k: v for k, v in data.items() if not IGNORED.search(k)}


def check_anchors(src: dict, config: ButdConfig, layout: str, path: Path) -> None:
    """Stored cell anchors (if any) must equal the computed ones, in the checkpoint's channel order."""
    if STORED_ANCHORS not in src:
        return
    stored = torch.as_tensor(np.asarray(src.pop(STORED_ANCHORS)), dtype=torch.float32)
    computed = cell_anchors(config)
    if layout == "detectron2":  # size-major in the checkpoint
        computed = computed.reshape(ANCHOR_RATIOS, ANCHOR_SCALES, 4).transpose(0, 1).reshape(-1, 4)
    if stored.shape != computed.shape or not torch.allclose(stored, computed, atol=0.01):
        def show(t):
            return np.round(t.numpy(), 1).tolist()
        raise CheckpointError(f"{path}: stored anchors '{STORED_ANCHORS}' {show(stored)} differ from the "
                              f"{config.anchors} anchors xmr computes {show(computed)} (same channel order)")


def check_architecture(config: ButdConfig, path: Path, blocks: tuple[int, int, int], num_classes: int) -> None:
    """A checkpoint of another architecture stops here, naming what differs."""
    if config.blocks != tuple(blocks):
        raise CheckpointError(f"{path}: res2/res3/res4 have {config.blocks} blocks, expected {tuple(blocks)} "
                              f"(ResNet-101 C4 bottom-up-attention)")
    if config.num_classes != num_classes:
        raise CheckpointError(f"{path}: 'roi_heads.box_predictor.cls_score.weight' has {config.num_classes} "
                              f"classes, expected {num_classes} (1600 Visual Genome classes + background)")
    if config.num_attributes not in (0, VG_ATTRIBUTES):
        raise CheckpointError(f"{path}: the attribute head has {config.num_attributes} outputs, expected "
                              f"{VG_ATTRIBUTES} (400 Visual Genome attributes + 'no attribute')")


def _block_keys(prefix: str, shortcut: bool) -> list[str]:
    keys = []
    for conv in ("conv1", "conv2", "conv3") + (("shortcut",) if shortcut else ()):
        keys.append(f"{prefix}.{conv}.weight")
        keys += [f"{prefix}.{conv}.norm.{p}" for p in NORM_PARAMS]
    return keys


def expected_keys(blocks: tuple[int, int, int], layout: str, attributes: bool) -> list[str]:
    """The source keys a checkpoint of this layout must hold, and nothing else."""
    keys = ["backbone.stem.conv1.weight"] + [f"backbone.stem.conv1.norm.{p}" for p in NORM_PARAMS]
    for stage, n in zip(("res2", "res3", "res4"), blocks):
        for i in range(n):
            keys += _block_keys(f"backbone.{stage}.{i}", shortcut=i == 0)
    for i in range(3):
        keys += _block_keys(f"roi_heads.res5.{i}", shortcut=i == 0)
    for layer in ("conv", "objectness_logits", "anchor_deltas"):
        keys += [f"proposal_generator.rpn_head.{layer}.weight", f"proposal_generator.rpn_head.{layer}.bias"]
    for layer in ("cls_score", "bbox_pred"):
        keys += [f"roi_heads.box_predictor.{layer}.weight", f"roi_heads.box_predictor.{layer}.bias"]
    if attributes:
        keys += [f"roi_heads.box_predictor.{k}" for k in ATTRIBUTE_KEYS[layout]]
    return keys


_BLOCK = re.compile(r"^(?:backbone\.(res[234])|roi_heads\.(res5))\.(\d+)\.(conv[123]|shortcut)\.(weight|norm\.\w+)$")


def target_key(source: str, layout: str) -> str:
    """Name in the `butd` model of a source key (detectron2 naming)."""
    if source == "backbone.stem.conv1.weight":
        return "backbone.stem.conv1.weight"
    if source.startswith("backbone.stem.conv1.norm."):
        return "backbone.stem.bn1." + source.rsplit(".", 1)[1]
    m = _BLOCK.match(source)
    if m:
        stage, res5, index, conv, param = m.groups()
        base = f"backbone.{stage}.{index}" if stage else f"roi_heads.box_head.{res5}.{index}"
        if conv == "shortcut":
            return f"{base}.downsample.0.weight" if param == "weight" else f"{base}.downsample.1.{param[5:]}"
        bn = "bn" + conv[-1]
        return f"{base}.{conv}.weight" if param == "weight" else f"{base}.{bn}.{param[5:]}"
    rpn = {"conv": "conv", "objectness_logits": "cls_logits", "anchor_deltas": "bbox_pred"}
    m = re.match(r"^proposal_generator\.rpn_head\.(\w+)\.(weight|bias)$", source)
    if m and m.group(1) in rpn:
        return f"rpn.head.{rpn[m.group(1)]}.{m.group(2)}"
    m = re.match(r"^roi_heads\.box_predictor\.(cls_score|bbox_pred)\.(weight|bias)$", source)
    if m:
        return f"roi_heads.box_predictor.{m.group(1)}.{m.group(2)}"
    rest = source.removeprefix("roi_heads.box_predictor.")
    if rest in ATTRIBUTE_KEYS[layout]:
        return "roi_heads.attribute_head." + ATTRIBUTE_KEYS[layout][rest]
    raise KeyError(source)


def _count_blocks(keys, stage: str) -> int:
    found = {int(m.group(1)) for k in keys if (m := re.match(rf"^backbone\.{stage}\.(\d+)\.", k))}
    return max(found) + 1 if found else 0


def _shape(src: dict, key: str, path: Path) -> tuple[int, ...]:
    if key not in src:
        raise CheckpointError(f"{path}: key '{key}' missing (expected a bottom-up-attention checkpoint in "
                              "detectron2 naming: bottom-up-attention.pytorch .pth or py-bottom-up-attention .pkl)")
    return tuple(np.shape(src[key]))


def infer_config(src: dict, path: Path) -> tuple[ButdConfig, str]:
    """Layout and architecture of a checkpoint, from the shapes of its key tensors."""
    deltas = _shape(src, "proposal_generator.rpn_head.anchor_deltas.weight", path)
    logits = _shape(src, "proposal_generator.rpn_head.objectness_logits.weight", path)
    anchors = deltas[0] // 4
    if anchors != ANCHOR_RATIOS * ANCHOR_SCALES:
        raise CheckpointError(f"{path}: 'proposal_generator.rpn_head.anchor_deltas.weight' has shape {deltas}, "
                              f"expected {4 * ANCHOR_RATIOS * ANCHOR_SCALES} outputs (12 anchors x 4)")
    if logits[0] == 2 * anchors:
        layout = "bua"
    elif logits[0] == anchors:
        layout = "detectron2"
    else:
        raise CheckpointError(f"{path}: 'proposal_generator.rpn_head.objectness_logits.weight' has shape {logits}, "
                              f"expected {anchors} (one logit per anchor) or {2 * anchors} (two) outputs")
    cls = _shape(src, "roi_heads.box_predictor.cls_score.weight", path)
    bbox = _shape(src, "roi_heads.box_predictor.bbox_pred.weight", path)
    want_bbox = 4 * cls[0] if layout == "bua" else 4 * (cls[0] - 1)
    if bbox[0] != want_bbox:
        raise CheckpointError(f"{path}: 'roi_heads.box_predictor.bbox_pred.weight' has shape {bbox}, expected "
                              f"{want_bbox} outputs for {cls[0]} classes in the {layout} layout")
    attr_names = list(ATTRIBUTE_KEYS[layout])
    has_attr = any(f"roi_heads.box_predictor.{k}" in src for k in attr_names)
    embed_rows = num_attr = 0
    if has_attr:
        embed_rows = _shape(src, f"roi_heads.box_predictor.{attr_names[0]}", path)[0]
        num_attr = _shape(src, f"roi_heads.box_predictor.{attr_names[3]}", path)[0]
    blocks = tuple(_count_blocks(src, s) for s in ("res2", "res3", "res4"))
    rpn_hidden = _shape(src, "proposal_generator.rpn_head.conv.weight", path)[0]
    common = dict(blocks=blocks, num_classes=cls[0], num_attributes=num_attr, attribute_embed_rows=embed_rows,
                  rpn_hidden=rpn_hidden)
    if layout == "bua":
        config = ButdConfig(**common, anchors="caffe", legacy_box_coder=True, bbox_reg_weights=(1.0, 1.0, 1.0, 1.0),
                            rpn_min_size=16.0, no_attribute_index=0)
    else:
        config = ButdConfig(**common, anchors="detectron2", legacy_box_coder=False,
                            bbox_reg_weights=(10.0, 10.0, 5.0, 5.0), rpn_min_size=0.0,
                            no_attribute_index=max(num_attr - 1, 0))
    return config, layout


def _ratio_major(size_major: torch.Tensor, per_anchor: int) -> torch.Tensor:
    """Reorder anchor channels from size-major (detectron2) to ratio-major (torchvision) order."""
    rows = size_major.shape[0]
    t = size_major.reshape(ANCHOR_SCALES, ANCHOR_RATIOS, per_anchor, *size_major.shape[1:])
    return t.transpose(0, 1).reshape(rows, *size_major.shape[1:])


def _convert_tensor(source: str, value: torch.Tensor, layout: str) -> torch.Tensor:
    """Layout-specific rewrites of individual tensors."""
    if source == "backbone.stem.conv1.weight":
        return value.flip(1)  # BGR -> RGB input channels
    if source.startswith("proposal_generator.rpn_head.objectness_logits."):
        if layout == "bua":  # [background block; object block] -> object - background
            half = value.shape[0] // 2
            return value[half:] - value[:half]
        return _ratio_major(value, 1)
    if source.startswith("proposal_generator.rpn_head.anchor_deltas.") and layout == "detectron2":
        return _ratio_major(value, 4)
    if layout == "detectron2" and source.startswith(("roi_heads.box_predictor.cls_score.",
                                                     "roi_heads.box_predictor.cls_embedding.")):
        return torch.cat([value[-1:], value[:-1]])  # background last -> first
    if layout == "detectron2" and source.startswith("roi_heads.box_predictor.bbox_pred."):
        return torch.cat([torch.zeros_like(value[:4]), value])  # no deltas for background
    return value


def load_butd(path: str | Path, *, blocks: tuple[int, int, int] = RESNET101_BLOCKS, num_classes: int = VG_CLASSES,
              **settings) -> ConvertedCheckpoint:
    """Read, check and convert a checkpoint into a `butd` model; `settings` override test-time
    fields of `ButdConfig` (min_size, max_size, proposals, ...). `blocks` and `num_classes` are the
    architecture the file must have (the published one; tests use fewer blocks)."""
    path = Path(path)
    src = read_checkpoint(path)
    config, layout = infer_config(src, path)
    check_architecture(config, path, blocks, num_classes)
    config = replace(config, **settings)
    check_anchors(src, config, layout, path)
    expected = expected_keys(config.blocks, layout, config.num_attributes > 0)
    for key in expected:
        _shape(src, key, path)
    extra = sorted(set(src) - set(expected))
    if extra:
        raise CheckpointError(f"{path}: unexpected key '{extra[0]}' ({len(extra)} unexpected in all) for a "
                              f"{layout}-layout bottom-up-attention checkpoint")
    model = build_butd(config)
    target = model.state_dict()
    out = {}
    for key in expected:
        value = torch.as_tensor(np.asarray(src[key]) if not isinstance(src[key], torch.Tensor) else src[key]).float()
        name = target_key(key, layout)
        value = _convert_tensor(key, value, layout)
        if tuple(value.shape) != tuple(target[name].shape):
            raise CheckpointError(f"{path}: '{key}' has shape {tuple(np.shape(src[key]))}, which does not fit "
                                  f"'{name}' of shape {tuple(target[name].shape)} in the ResNet-{_depth(config)} C4 model")
        out[name] = value
    missing = sorted(set(target) - set(out))
    if missing:
        raise CheckpointError(f"{path}: no source key provides model parameter '{missing[0]}'")
    model.load_state_dict(out, strict=True)
    return ConvertedCheckpoint(model.eval(), config, layout)


def _depth(config: ButdConfig) -> int:
    return 3 * (sum(config.blocks) + 3) + 2

