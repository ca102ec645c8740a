"""Run a torchvision Faster R-CNN up to per-proposal features and class scores.

Bottom-up-attention describes each RoI by the box head's pooled feature of the RPN proposal itself
(not of a regressed box), so feature, box and score always refer to the same region. Any
`GeneralizedRCNN` whose `roi_heads` has `box_roi_pool`, `box_head` (-> [R, D]) and `box_predictor`
(-> class logits with background at index 0) works: the feature dimension follows the box head.
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import torch
from torch.nn.utils.rnn import pad_sequence
from torchvision.models.detection.image_list import ImageList
from torchvision.models.detection.transform import resize_boxes


@dataclass
class Candidates:
    """Padded per-image candidates: boxes [B,R,4] in original pixels, probs [B,R,C] over the
    foreground classes, features [B,R,D], valid [B,R]."""

    boxes: torch.Tensor
    probs: torch.Tensor
    features: torch.Tensor
    valid: torch.Tensor


def _whole_image(size: tuple[int, int], like: torch.Tensor) -> torch.Tensor:
    h, w = size
    return like.new_tensor([[0.0, 0.0, float(w), float(h)]])


def _resize_scale(transform, height: int, width: int) -> float:
    """The factor torchvision's transform resizes an image by (short side to min_size, long side capped)."""
    short, long = min(height, width), max(height, width)
    return min(float(transform.min_size[-1]) / short, float(transform.max_size) / long)


def _same_size_groups(tensors: list[torch.Tensor]) -> dict[tuple, list[int]]:
    """Image indices grouped by their (padded) input shape, in first-seen order."""
    groups: dict[tuple, list[int]] = {}
    for i, t in enumerate(tensors):
        groups.setdefault(tuple(t.shape), []).append(i)
    return groups


@torch.no_grad()
def candidate_regions(model, images: list[torch.Tensor], min_candidates: int = 1,
                      amp_dtype: torch.dtype | None = None) -> Candidates:
    """Proposals, their foreground class probabilities and box-head features for a batch.

    `images` are float RGB tensors [3, H, W] in [0, 1] (sizes may differ). An image with fewer than
    `min_candidates` proposals gets the whole-image box as one extra candidate, so every image has
    at least one region to describe. With `amp_dtype` the backbone and box head run under autocast;
    the RPN always runs in float32 (half-precision box decoding would shift proposals by pixels).

    Batch-independent: each image is transformed (and padded, if the model pads) on its own, the
    backbone and RPN run on groups of images of identical input shape (so no image is padded to
    another's size), and only the pooled RoIs of all images go through the box head together. An
    image's regions are therefore the same, to float tolerance, alone or in any batch.
    """
    device_type = images[0].device.type
    amp = torch.autocast(device_type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None)
    original_sizes = [tuple(img.shape[-2:]) for img in images]
    singles = [model.transform([img])[0] for img in images]
    proposals: list = [None] * len(images)
    pooled: list = [None] * len(images)
    image_sizes: list = [None] * len(images)
    for rows in _same_size_groups([s.tensors[0] for s in singles]).values():
        image_list = ImageList(torch.cat([singles[i].tensors for i in rows]),
                               [singles[i].image_sizes[0] for i in rows])
        image_list.scales = [_resize_scale(model.transform, *original_sizes[i]) for i in rows]
        with amp:
            features = model.backbone(image_list.tensors)
        if isinstance(features, torch.Tensor):
            features = OrderedDict([("0", features)])
        group_props, _ = model.rpn(image_list, OrderedDict((k, v.float()) for k, v in features.items()))
        group_props = [p if len(p) >= min_candidates else torch.cat([p, _whole_image(size, p)])
                       for p, size in zip(group_props, image_list.image_sizes)]
        with amp:
            group_pooled = model.roi_heads.box_roi_pool(features, group_props, image_list.image_sizes)
        for i, chunk in zip(rows, group_pooled.split([len(p) for p in group_props])):
            pooled[i] = chunk
        for i, p, size in zip(rows, group_props, image_list.image_sizes):
            proposals[i], image_sizes[i] = p, size
    with amp:
        representation = model.roi_heads.box_head(torch.cat(pooled))
        logits, _ = model.roi_heads.box_predictor(representation)
    probs = torch.softmax(logits.float(), dim=-1)[:, 1:]
    counts = [len(p) for p in proposals]
    boxes = [resize_boxes(p, resized, original)
             for p, resized, original in zip(proposals, image_sizes, original_sizes)]
    valid = torch.arange(max(counts), device=probs.device)[None, :] < torch.tensor(counts, device=probs.device)[:, None]
    return Candidates(
        boxes=pad_sequence(boxes, batch_first=True),
        probs=pad_sequence(list(probs.split(counts)), batch_first=True),
        features=pad_sequence(list(representation.split(counts)), batch_first=True),
        valid=valid,
    )
