"""Small parts that let torchvision's Faster R-CNN reproduce detectors trained elsewhere.

torchvision provides the detection pipeline (transform, RPN, RoI heads); the published
bottom-up-attention weights expect a few conventions it does not have built in: anchors given as
fixed cell boxes (Caffe's `generate_anchors`, or detectron2's unrounded ones), box decoding with
the legacy "+1" width, a single-level RoI pooler of either kind, an RPN head whose hidden
width differs from its input width, anchors on a fixed stride (so that unpadded images of any size
get the reference's anchor grid), and an RPN minimum box size given in original-image pixels.
"""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F
from torchvision.models.detection._utils import BoxCoder
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.image_list import ImageList
from torchvision.models.detection.rpn import RegionProposalNetwork
from torchvision.ops import roi_align, roi_pool


def caffe_cell_anchors(base_size: int = 16, ratios=(0.5, 1.0, 2.0), scales=(4, 8, 16, 32)) -> torch.Tensor:
    """Caffe Faster R-CNN cell anchors ([A, 4], ratio-major): a `base_size` square centred at
    ((base-1)/2, (base-1)/2), reshaped to each ratio with rounded sides, then scaled; inclusive corners."""
    ctr = (base_size - 1) / 2.0
    area = float(base_size * base_size)
    rows = []
    for ratio in ratios:
        w = torch.round(torch.tensor(math.sqrt(area / ratio), dtype=torch.float64))
        h = torch.round(w * ratio)
        for scale in scales:
            ws, hs = w * scale, h * scale
            half_w, half_h = 0.5 * (ws - 1), 0.5 * (hs - 1)
            rows.append(torch.stack([ctr - half_w, ctr - half_h, ctr + half_w, ctr + half_h]))
    return torch.stack(rows).float()


def centred_cell_anchors(sizes=(64, 128, 256, 512), ratios=(0.5, 1.0, 2.0)) -> torch.Tensor:
    """detectron2-style cell anchors ([A, 4], ratio-major here): area size^2, h/w = ratio, centred on 0, unrounded."""
    rows = []
    for ratio in ratios:
        for size in sizes:
            w = math.sqrt(size * size / ratio)
            h = ratio * w
            rows.append([-w / 2, -h / 2, w / 2, h / 2])
    return torch.tensor(rows, dtype=torch.float32)


class FixedAnchorGenerator(AnchorGenerator):
    """An AnchorGenerator for one feature map whose cell anchors are given explicitly.

    With `stride`, anchors are placed every `stride` pixels whatever the image size; torchvision
    derives the stride from image size // grid size, which is only right for padded inputs."""

    def __init__(self, cell_anchors: torch.Tensor, stride: int | None = None):
        super().__init__(sizes=(tuple([1.0] * cell_anchors.shape[0]),), aspect_ratios=((1.0,),))
        self.cell_anchors = [cell_anchors.clone()]
        self.stride = stride

    def forward(self, image_list: ImageList, feature_maps: list[torch.Tensor]) -> list[torch.Tensor]:
        if self.stride is None:
            return super().forward(image_list, feature_maps)
        grid_sizes = [fm.shape[-2:] for fm in feature_maps]
        device = feature_maps[0].device
        strides = [[torch.tensor(self.stride, dtype=torch.int64, device=device)] * 2 for _ in grid_sizes]
        self.set_cell_anchors(feature_maps[0].dtype, device)
        grid = torch.cat(self.grid_anchors(grid_sizes, strides))
        return [grid for _ in image_list.image_sizes]


class ScaledMinSizeRPN(RegionProposalNetwork):
    """An RPN whose minimum proposal size is `min_size_original` pixels of the original image, i.e.
    that many times each image's resize scale in the resized image (Caffe, bottom-up-attention.pytorch).

    The caller sets `image_list.scales` (one per image; 1.0 when absent). With `legacy_widths` a box
    is `x2 - x1 + 1` wide (Caffe); otherwise a minimum of 0 keeps every non-empty box (detectron2)."""

    def __init__(self, *args, min_size_original: float = 16.0, legacy_widths: bool = True, **kwargs):
        super().__init__(*args, **kwargs)
        self.min_size_original, self.legacy_widths = float(min_size_original), legacy_widths
        self._scales: list[float] = []

    def forward(self, images: ImageList, features, targets=None):
        self._scales = list(getattr(images, "scales", None) or [1.0] * len(images.image_sizes))
        return super().forward(images, features, targets)

    def min_size_for(self, scale: float) -> float:
        """The threshold torchvision's `remove_small_boxes` (x2 - x1 >= t) needs for this image."""
        wanted = self.min_size_original * scale
        if self.legacy_widths:
            return max(wanted - 1.0, 0.0)
        return max(wanted, 1e-6)  # detectron2 keeps boxes wider than the threshold: > 0 for a minimum of 0

    def filter_proposals(self, proposals, objectness, image_shapes, num_anchors_per_level):
        n = proposals.shape[0]
        objectness = objectness.reshape(n, -1)
        boxes, scores = [], []
        for i in range(n):  # one image at a time: each has its own minimum size
            self.min_size = self.min_size_for(self._scales[i] if i < len(self._scales) else 1.0)
            b, s = super().filter_proposals(proposals[i:i + 1], objectness[i:i + 1], image_shapes[i:i + 1],
                                            num_anchors_per_level)
            boxes += b
            scores += s
        return boxes, scores


class LegacyBoxCoder(BoxCoder):
    """Box decoding with widths `x2 - x1 + 1` (Caffe / bottom-up-attention.pytorch convention)."""

    def decode_single(self, rel_codes: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
        # Widening each reference box by one pixel gives exactly the legacy width and centre.
        return super().decode_single(rel_codes, boxes + boxes.new_tensor([0.0, 0.0, 1.0, 1.0]))


class SingleLevelRoIPool(nn.Module):
    """RoI pooling on one feature map, called like torchvision's MultiScaleRoIAlign."""

    def __init__(self, output_size: int, spatial_scale: float, kind: str = "align",
                 sampling_ratio: int = 0, feature: str = "0"):
        super().__init__()
        if kind not in ("align", "pool"):
            raise ValueError(f"RoI pooler kind must be 'align' or 'pool', got {kind!r}")
        self.output_size, self.spatial_scale, self.kind = output_size, spatial_scale, kind
        self.sampling_ratio, self.feature = sampling_ratio, feature

    def forward(self, features: dict, proposals: list[torch.Tensor], image_shapes=None) -> torch.Tensor:
        x = features[self.feature]
        boxes = [p.to(x.dtype) for p in proposals]
        if self.kind == "pool":
            return roi_pool(x, boxes, self.output_size, self.spatial_scale)
        return roi_align(x, boxes, self.output_size, self.spatial_scale, self.sampling_ratio, aligned=False)


class HiddenRPNHead(nn.Module):
    """RPN head: 3x3 conv to `hidden` channels + ReLU, then per-anchor objectness logit and box deltas."""

    def __init__(self, in_channels: int, hidden: int, num_anchors: int):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, hidden, kernel_size=3, padding=1)
        self.cls_logits = nn.Conv2d(hidden, num_anchors, kernel_size=1)
        self.bbox_pred = nn.Conv2d(hidden, num_anchors * 4, kernel_size=1)
        for layer in (self.conv, self.cls_logits, self.bbox_pred):
            nn.init.normal_(layer.weight, std=0.01)
            nn.init.zeros_(layer.bias)

    def forward(self, features: list[torch.Tensor]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        logits, deltas = [], []
        for x in features:
            t = F.relu(self.conv(x))
            logits.append(self.cls_logits(t))
            deltas.append(self.bbox_pred(t))
        return logits, deltas
