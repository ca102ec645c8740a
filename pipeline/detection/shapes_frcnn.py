"""A small Faster R-CNN for the embedded `shapes` dataset, trainable on a CPU in minutes.

Same structure as the real detectors (backbone -> RPN -> RoIAlign -> box head -> classes), so the
embedded pipeline exercises the same extraction path: a 7-conv backbone at stride 8 (48 channels),
9 anchors per location (16/32/64 px x 3 ratios), 7x7 RoIAlign, a two-layer MLP box head whose
output is the RoI feature (`representation`-d), and a linear class/box predictor.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

from torch import nn
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, FasterRCNN, TwoMLPHead
from torchvision.ops import Conv2dNormActivation, MultiScaleRoIAlign

NAME = "shapes_frcnn"
# Channel means / stds of the shapes images (light cluttered backgrounds, saturated objects).
IMAGE_MEAN = (0.78, 0.77, 0.74)
IMAGE_STD = (0.18, 0.18, 0.20)


@dataclass(frozen=True)
class ShapesDetectorConfig:
    num_classes: int  # foreground classes
    image_size: int = 128
    width: int = 24
    feature_channels: int = 48  # channels of the stride-8 map read by the RPN and RoIAlign
    representation: int = 256
    anchor_sizes: tuple[int, ...] = (16, 32, 64)
    proposals: int = 100  # RPN proposals kept per image at test time
    train_proposals: int = 300
    train_rois: int = 64  # RoIs sampled per image for the box head loss

    def as_dict(self) -> dict:
        return asdict(self)


class SmallBackbone(nn.Sequential):
    """Three stride-2 stages of 3x3 conv + BN + ReLU; one `out_channels` feature map at stride 8."""

    def __init__(self, width: int, out_channels: int):
        def conv(cin, cout, stride=1):
            return Conv2dNormActivation(cin, cout, kernel_size=3, stride=stride)

        w = width
        super().__init__(conv(3, w, 2), conv(w, w), conv(w, 2 * w, 2), conv(2 * w, 2 * w),
                         conv(2 * w, 4 * w, 2), conv(4 * w, 4 * w), conv(4 * w, out_channels))
        self.out_channels = out_channels


def build_shapes_detector(config: ShapesDetectorConfig) -> FasterRCNN:
    backbone = SmallBackbone(config.width, config.feature_channels)
    size = config.image_size
    model = FasterRCNN(
        backbone,
        num_classes=None,
        min_size=size, max_size=size, image_mean=list(IMAGE_MEAN), image_std=list(IMAGE_STD),
        rpn_anchor_generator=AnchorGenerator((tuple(config.anchor_sizes),), ((0.5, 1.0, 2.0),)),
        box_roi_pool=MultiScaleRoIAlign(["0"], output_size=7, sampling_ratio=1),
        box_head=TwoMLPHead(backbone.out_channels * 49, config.representation),
        box_predictor=FastRCNNPredictor(config.representation, config.num_classes + 1),
        rpn_pre_nms_top_n_train=2 * config.train_proposals, rpn_pre_nms_top_n_test=500,
        rpn_post_nms_top_n_train=config.train_proposals, rpn_post_nms_top_n_test=config.proposals,
        rpn_batch_size_per_image=128, box_batch_size_per_image=config.train_rois,
        box_score_thresh=0.05, box_detections_per_img=20,
    )
    model.shapes_config = config
    return model


def init_weights_(model: nn.Module) -> nn.Module:
    """He initialisation for the backbone convolutions (torchvision leaves them at PyTorch defaults)."""
    for module in model.backbone.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
    return model
