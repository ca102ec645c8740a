"""The bottom-up-attention detector (Anderson et al.; reference.md), from torchvision building blocks.

ResNet-101 "C4" Faster R-CNN trained on Visual Genome (1600 object classes + background, optionally
400 attributes + "none"): a Caffe-style ResNet (stride in the first 1x1 conv, frozen batch norm) up
to res4 (stride 16, 1024 channels); an RPN with a 512-channel hidden conv and 12 anchors per
location (3 ratios x 4 scales of a 16-px base); RoI pooling of each proposal to 14x14 on res4; the
res5 stage as box head with stride 1 and dilation 2 (as in the released Caffe test prototxt), whose
output is averaged to the 2048-d RoI feature; class scores and class-specific box deltas from it.

Inputs are float RGB in [0, 1]; the transform turns them into 0..255 minus the Caffe BGR pixel
means (the converter flips conv1 to RGB), resized to a 600-px short side (max 1000), and never
padded (as the reference extractors, which run one image at a time): anchors sit on a fixed 16-px
stride, so an image's features do not depend on what else is in its batch.
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import asdict, dataclass

import torch
from torch import nn
from torch.nn import functional as F
from torchvision.models.detection.generalized_rcnn import GeneralizedRCNN
from torchvision.models.detection.roi_heads import RoIHeads
from torchvision.models.detection.transform import GeneralizedRCNNTransform
from torchvision.models.resnet import Bottleneck
from torchvision.ops import FrozenBatchNorm2d

from pipeline.detection.rcnn_parts import (FixedAnchorGenerator, HiddenRPNHead, LegacyBoxCoder, ScaledMinSizeRPN,
                                           SingleLevelRoIPool, caffe_cell_anchors, centred_cell_anchors)

# Caffe pixel means of the released model, BGR order.
PIXEL_MEANS_BGR = (102.9801, 115.9465, 122.7717)
FEATURE_DIM = 2048
STRIDE = 16


@dataclass(frozen=True)
class ButdConfig:
    """Architecture and test-time settings; `convert` fills the checkpoint-dependent ones."""

    blocks: tuple[int, int, int] = (3, 4, 23)  # res2, res3, res4 blocks (ResNet-101)
    num_classes: int = 1601  # including background at index 0
    num_attributes: int = 0  # 401 with the attribute head ("no attribute" + 400), 0 without
    attribute_embed_rows: int = 0
    anchors: str = "caffe"  # caffe (bottom-up-attention.pytorch) | detectron2 (py-bottom-up-attention)
    anchor_ratios: tuple[float, ...] = (0.5, 1.0, 2.0)
    anchor_scales: tuple[int, ...] = (4, 8, 16, 32)  # x 16 px
    legacy_box_coder: bool = True
    bbox_reg_weights: tuple[float, float, float, float] = (1.0, 1.0, 1.0, 1.0)
    stem_pool: str = "caffe"  # caffe: 3x3/2 max pool, pad 0, ceil; detectron2: pad 1
    rpn_hidden: int = 512
    pool_kind: str = "pool"  # RoIPool as in Caffe
    pool_size: int = 14
    min_size: int = 600
    max_size: int = 1000
    proposals: int = 300
    pre_nms_proposals: int = 6000
    rpn_nms: float = 0.7
    rpn_min_size: float = 16.0  # pixels of the original image (x resize scale); "+1" widths with legacy_box_coder
    no_attribute_index: int = 0  # the attribute head's "no attribute" class (the last one in airsplay's file)

    def as_dict(self) -> dict:
        return asdict(self)


def _block(inplanes: int, planes: int, stride: int, dilation: int) -> Bottleneck:
    """A torchvision Bottleneck turned Caffe-style: stride in conv1, frozen BN, projection shortcut if needed."""
    downsample = None
    if stride != 1 or inplanes != planes * 4:
        downsample = nn.Sequential(nn.Conv2d(inplanes, planes * 4, 1, stride=stride, bias=False),
                                   FrozenBatchNorm2d(planes * 4))
    block = Bottleneck(inplanes, planes, stride=1, downsample=downsample, dilation=dilation,
                       norm_layer=FrozenBatchNorm2d)
    block.conv1.stride = (stride, stride)
    return block


def _stage(inplanes: int, planes: int, blocks: int, stride: int, dilation: int = 1) -> nn.Sequential:
    layers = [_block(inplanes, planes, stride, dilation)]
    layers += [_block(planes * 4, planes, 1, dilation) for _ in range(blocks - 1)]
    return nn.Sequential(*layers)


class Stem(nn.Module):
    def __init__(self, pool: str):
        super().__init__()
        if pool not in ("caffe", "detectron2"):
            raise ValueError(f"stem_pool must be 'caffe' or 'detectron2', got {pool!r}")
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = FrozenBatchNorm2d(64)
        self.pool = pool

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        if self.pool == "caffe":
            return F.max_pool2d(x, kernel_size=3, stride=2, padding=0, ceil_mode=True)
        return F.max_pool2d(x, kernel_size=3, stride=2, padding=1)


class ResNetC4(nn.Module):
    """Stem + res2..res4: one feature map "0" at stride 16 with 1024 channels."""

    out_channels = 1024

    def __init__(self, blocks: tuple[int, int, int], stem_pool: str):
        super().__init__()
        self.stem = Stem(stem_pool)
        self.res2 = _stage(64, 64, blocks[0], stride=1)
        self.res3 = _stage(256, 128, blocks[1], stride=2)
        self.res4 = _stage(512, 256, blocks[2], stride=2)

    def forward(self, x: torch.Tensor) -> OrderedDict:
        return OrderedDict([("0", self.res4(self.res3(self.res2(self.stem(x)))))])


class Res5Head(nn.Module):
    """res5 (stride 1, dilation 2) on the pooled RoIs, averaged over space: the 2048-d RoI feature."""

    def __init__(self):
        super().__init__()
        self.res5 = _stage(1024, 512, 3, stride=1, dilation=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.res5(x).mean(dim=(2, 3))


class ButdPredictor(nn.Module):
    """Class logits [R, C] (background first) and class-specific box deltas [R, 4C]."""

    def __init__(self, in_dim: int, num_classes: int):
        super().__init__()
        self.cls_score = nn.Linear(in_dim, num_classes)
        self.bbox_pred = nn.Linear(in_dim, num_classes * 4)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.cls_score(x), self.bbox_pred(x)


class AttributeHead(nn.Module):
    """Visual Genome attributes: embed the predicted class, concatenate with the RoI feature, 2 layers."""

    def __init__(self, embed_rows: int, num_attributes: int, in_dim: int = FEATURE_DIM, embed: int = 256,
                 hidden: int = 512, no_attribute_index: int = 0):
        super().__init__()
        self.no_attribute_index = no_attribute_index
        self.class_embedding = nn.Embedding(embed_rows, embed)
        self.fc = nn.Linear(in_dim + embed, hidden)
        self.score = nn.Linear(hidden, num_attributes)

    def forward(self, features: torch.Tensor, class_logits: torch.Tensor) -> torch.Tensor:
        """Attribute probabilities [R, A]; `no_attribute_index` is the "no attribute" class."""
        embedded = self.class_embedding(class_logits.argmax(dim=1))
        hidden = F.relu(self.fc(torch.cat([features, embedded], dim=1)))
        return torch.softmax(self.score(hidden), dim=1)


def cell_anchors(config: ButdConfig) -> torch.Tensor:
    """The config's cell anchors [A, 4], ratio-major (torchvision's channel order)."""
    if config.anchors == "caffe":
        return caffe_cell_anchors(STRIDE, config.anchor_ratios, config.anchor_scales)
    if config.anchors == "detectron2":
        return centred_cell_anchors(tuple(STRIDE * s for s in config.anchor_scales), config.anchor_ratios)
    raise ValueError(f"anchors must be 'caffe' or 'detectron2', got {config.anchors!r}")


def build_butd(config: ButdConfig = ButdConfig()) -> GeneralizedRCNN:
    """The bottom-up-attention detector with frozen-BN identity statistics and default-initialised weights."""
    cells = cell_anchors(config)
    backbone = ResNetC4(config.blocks, config.stem_pool)
    rpn = ScaledMinSizeRPN(
        FixedAnchorGenerator(cells, stride=STRIDE), HiddenRPNHead(1024, config.rpn_hidden, cells.shape[0]),
        fg_iou_thresh=0.7, bg_iou_thresh=0.3, batch_size_per_image=256, positive_fraction=0.5,
        pre_nms_top_n={"training": 12000, "testing": config.pre_nms_proposals},
        post_nms_top_n={"training": 2000, "testing": config.proposals}, nms_thresh=config.rpn_nms,
        min_size_original=config.rpn_min_size, legacy_widths=config.legacy_box_coder,
    )
    if config.legacy_box_coder:
        rpn.box_coder = LegacyBoxCoder(weights=(1.0, 1.0, 1.0, 1.0))
    roi_heads = RoIHeads(
        SingleLevelRoIPool(config.pool_size, 1.0 / 16, kind=config.pool_kind), Res5Head(),
        ButdPredictor(FEATURE_DIM, config.num_classes),
        fg_iou_thresh=0.5, bg_iou_thresh=0.5, batch_size_per_image=64, positive_fraction=0.25,
        bbox_reg_weights=config.bbox_reg_weights, score_thresh=0.2, nms_thresh=0.3, detections_per_img=100,
    )
    if config.legacy_box_coder:
        roi_heads.box_coder = LegacyBoxCoder(weights=config.bbox_reg_weights)
    if config.num_attributes:
        roi_heads.attribute_head = AttributeHead(config.attribute_embed_rows, config.num_attributes,
                                                 no_attribute_index=config.no_attribute_index)
    rgb_means = [m / 255.0 for m in reversed(PIXEL_MEANS_BGR)]
    transform = GeneralizedRCNNTransform(config.min_size, config.max_size, rgb_means, [1.0 / 255] * 3,
                                         size_divisible=1)  # no padding: the references' size_divisibility 0
    model = GeneralizedRCNN(backbone, rpn, roi_heads, transform)
    model.butd_config = config
    return model.eval()


def init_random_(model: nn.Module, seed: int = 0) -> nn.Module:
    """Random weights that keep activations finite through 26+ residual blocks (tests, benchmarks):
    He-initialised ResNet convolutions with residual branches scaled down by their last frozen BN;
    the RPN predicts no box deltas, so its proposals are distinct anchors ranked by random objectness."""
    gen = torch.Generator().manual_seed(seed)
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d) and not name.startswith("rpn."):
            fan_in = module.in_channels * module.kernel_size[0] * module.kernel_size[1] // module.groups
            module.weight.data = torch.randn(module.weight.shape, generator=gen) * (2.0 / fan_in) ** 0.5
            if module.bias is not None:
                module.bias.data.zero_()
        elif isinstance(module, nn.Linear):
            module.weight.data = torch.randn(module.weight.shape, generator=gen) * 0.01
            module.bias.data.zero_()
        elif isinstance(module, Bottleneck):
            module.bn3.weight.fill_(0.2)
    model.rpn.head.bbox_pred.weight.data.zero_()
    model.rpn.head.bbox_pred.bias.data.zero_()
    return model
