"""Declarations of the dual-path instance loss (papers/003): `DualPath`, and `DualPathStage1` held in
stage I (the same section; params.yaml writes it as a YAML merge of dual_path's)."""
from __future__ import annotations

from typing import Any

from pipeline.methods import INSTANCE_LEVEL, Declaration
from pipeline.param_checks import AnyMapping, Optional_

ORDER = 20

# Dual-path instance loss (papers/003): 2048-d embedding (fc-bn-relu-fc heads), dropout 0.75,
# text CNN over 32 tokens with ResNet-50 stage depths/widths, ranking margin 1 with one sampled
# negative per anchor ("hardest" for VSE++ mining), stage II weights (rank, visual, textual) 1/1/1
# (stage I: 0/1/1 for `stage1_epochs` epochs; the paper stops stage I at convergence).
# stage1_freeze: "pretrained" freezes the ImageNet backbone in stage I (paper; nothing on RoI
# features), "image_path" the whole image path. image_backbone "resnet50" trains end to end from
# pixels and needs resnet_weights (torchvision state dict) and image_table (table.parquet).
_DUAL_PATH: dict[str, Any] = {
    "embed_dim": 2048, "dropout": 0.75, "text_length": 32, "position_shift": True,
    "text_blocks": [3, 4, 6, 3], "text_widths": [256, 512, 1024, 2048], "finetune_words": True,
    # ranking_negatives (null = the recipe's): sampled | hardest | hardest_of_pool (official: an image
    # anchor takes the hardest of `negative_pool` random texts of other images, a text anchor a random
    # in-batch image); loss_weights null = the recipe's (official COCO 2 : 1 : 0.1).
    "margin": 1.0, "ranking_negatives": Optional_(str), "negative_pool": 256, "loss_weights": Optional_(list),
    # head (null = the recipe's): paper (fc-bn-relu-fc) | official (image fc-bn-relu-fc-bn-relu; text CNN
    # with wide first blocks, max pool, fc-bn-relu). lr_multipliers (null = the recipe's; {} = all 1):
    # {backbone, words, new} factors on the learning rate. test_flip (null = the recipe's): mirror averaging
    # of evaluated images, image_backbone resnet50 only.
    "head": Optional_(str), "lr_multipliers": Optional_(AnyMapping), "test_flip": Optional_(bool),
    # stage1_epochs null = the recipe's (official: COCO 90, Flickr30k 240; none elsewhere: write it).
    # ranking_scale null = the recipe's: factor on the ranking loss, xmr's mean over the batch's anchors
    # (official 0.5: its RankLoss sums over half the batch's anchors, divided by the whole batch).
    "stage1_epochs": Optional_(int), "stage1_freeze": "pretrained", "ranking_scale": Optional_(float),
    "image_backbone": "roi", "resnet_weights": "", "image_table": "", "image_size": 224,
}

# Choices of the dual-path section (papers/003; `pipeline/models/dual_path.py`).
DUAL_PATH_FREEZE = ("pretrained", "image_path")
DUAL_PATH_BACKBONES = ("roi", "resnet50")


def _check_dual_path_section(key: str, s: dict, fail) -> None:
    """Ranges, choices and the combinations of options a dual-path section must respect."""
    for k in ("embed_dim", "text_length", "image_size"):
        if s[k] < 1:
            fail(key + k, "an integer >= 1", s[k])
    if not s["text_blocks"] or len(s["text_blocks"]) != len(s["text_widths"]):
        fail(key + "text_widths", f"a non-empty list as long as text_blocks ({s['text_blocks']})", s["text_widths"])
    if any(b < 1 for b in s["text_blocks"]) or any(w < 1 for w in s["text_widths"]):
        fail(key + "text_blocks", "positive block counts with positive text_widths", s["text_blocks"])
    if not s["margin"] >= 0:
        fail(key + "margin", ">= 0", s["margin"])
    if s["stage1_epochs"] is not None and s["stage1_epochs"] < 0:
        fail(key + "stage1_epochs", "an integer >= 0", s["stage1_epochs"])
    if s["stage1_freeze"] not in DUAL_PATH_FREEZE:
        fail(key + "stage1_freeze", " or ".join(DUAL_PATH_FREEZE), s["stage1_freeze"])
    if s["image_backbone"] not in DUAL_PATH_BACKBONES:
        fail(key + "image_backbone", " or ".join(DUAL_PATH_BACKBONES), s["image_backbone"])
    if s.get("test_flip") and s["image_backbone"] != "resnet50":
        fail(key + "test_flip", "false or null when image_backbone is roi (RoI features have no mirror image)",
             s["test_flip"])
    if s["image_backbone"] == "resnet50":
        for k in ("resnet_weights", "image_table"):
            if not s[k]:
                fail(key + k, "a file path when image_backbone is resnet50 (ImageNet weights / the prepared table)",
                     s[k])


_PAPER = "papers/003 (dual-path instance loss)"
DECLARED = [
    Declaration("dual_path", "pipeline.models.dual_path:DualPath", _PAPER, INSTANCE_LEVEL, False,
                "one class per image, instance softmax per modality, then + ranking loss", dict(_DUAL_PATH),
                (_check_dual_path_section,)),
    # Stage I throughout (papers/003's "Stage I" rows); `stage1_epochs` is not read.
    Declaration("dual_path_stage1", "pipeline.models.dual_path:DualPathStage1", _PAPER, INSTANCE_LEVEL, False,
                "dual_path in stage I for every epoch: instance losses only, no ranking loss", dict(_DUAL_PATH),
                (_check_dual_path_section,)),
]
