"""Dual-path image-text embedding with the instance loss (papers/003), method `dual_path`.

Every image with its captions (one table row) is a class. Both paths end in a 2048-d feature `f`
(fc-bn-relu-fc head, Sec. 3.1); one shared classifier `W_share` (no bias, as the official code)
scores `dropout(f)` of either modality over all classes, and each modality has its own softmax
instance loss (Eq. 5-8). Retrieval compares the `f` of the two paths by cosine similarity.

Training has two stages (Sec. 5): stage I (the first `stage1_epochs` epochs) uses only the instance
losses (weights 0/1/1) with the pretrained image weights frozen; stage II adds the bidirectional
ranking loss (Eq. 4, margin `margin`) with `loss_weights` (1/1/1) and trains everything. The loop
tells the method which epoch starts through `start_epoch(epoch)`. Frozen parts run without
gradients (so the optimiser skips them) and keep their batch-norm statistics.

Image path: by default the RoI features mean-pooled over regions (the detector is fixed, so stage I
freezes nothing unless `stage1_freeze` is "image_path"); with `image_backbone: resnet50` a
ResNet-50 from local ImageNet weights is fine-tuned end to end on the table's images.
Text path: `pipeline.models.text_cnn` (fixed 32-word input, position shift while training).

Options (null: the recipe's value, `pipeline/training/recipes.py`): `head` "paper" (fc-bn-relu-fc heads)
or "official" (image fc-bn-relu-fc-bn-relu, text CNN with wide first blocks and max pooling, then
fc-bn-relu; bias-free fc layers); `lr_multipliers` {backbone, words, new}: learning-rate multipliers of the
pretrained ResNet-50, the word table and the new layers (`lr_groups`, honoured by the loop); `test_flip`:
with `image_backbone: resnet50`, an evaluated image's f is the mean over the image and its mirror (RoI
features have no mirror: not applicable there).

The instance losses are means over the batch, as the official code's (MatConvNet divides every gradient by
the batch size). The ranking loss is the sum over the batch's B anchor pairs (an image-anchor and a
text-anchor term each) divided by B, times `ranking_scale`. The official `RankLoss` sums over the first half of
the batch's pairs only (the second half supplies their negatives), and that sum is divided by B too, so its
ranking term weighs half of the mean over all pairs: official `ranking_scale` 0.5, paper 1 (the paper sums
all three terms, so there the ratio of ranking to instance terms depends on the batch size).
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from pipeline.contract.batches import DataInfo, ImageBatch, PairBatch, TextBatch
from pipeline.contract.method import RetrievalMethod, build_kwargs_word_vectors
from pipeline.losses.ranking import distinct_images, pooled_hardest_ranking_loss, triplet_ranking_loss
from pipeline.models.text_cnn import TextCNN, fixed_length_ids



class _BatchNorm(nn.BatchNorm1d):
    """Batch norm that falls back to its running statistics for a training batch of one item."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and x.shape[0] == 1:
            return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, self.eps)
        return super().forward(x)


def embedding_head(in_dim: int, dim: int) -> nn.Sequential:
    """fc -> batch norm -> relu -> fc (papers/003 Sec. 3.1), giving the descriptor f."""
    return nn.Sequential(nn.Linear(in_dim, dim), _BatchNorm(dim), nn.ReLU(inplace=True), nn.Linear(dim, dim))


def _fc_bn_relu(in_dim: int, dim: int) -> list[nn.Module]:
    return [nn.Linear(in_dim, dim, bias=False), _BatchNorm(dim), nn.ReLU(inplace=True)]


def official_heads(image_in: int, text_in: int, dim: int) -> tuple[nn.Sequential, nn.Sequential]:
    """The official code's heads (bias-free fc layers): image fc-bn-relu-fc-bn-relu, text (after the text
    CNN's pooling) fc-bn-relu; f is the last relu's output."""
    return nn.Sequential(*_fc_bn_relu(image_in, dim), *_fc_bn_relu(dim, dim)), nn.Sequential(*_fc_bn_relu(text_in, dim))


HEADS = ("paper", "official")
# Parameter groups of `lr_multipliers` (the params check's list, `schema.DUAL_PATH_LR_GROUPS`, must match).
LR_GROUPS = ("backbone", "words", "new")


def instance_classes(info: DataInfo) -> int:
    """Number of instance classes: one per table row (image/text group)."""
    n = getattr(info, "num_images", 0)
    if not n:
        raise ValueError("method 'dual_path' classifies image/text groups and needs the number of images of the "
                         "dataset (DataInfo.num_images), which this data description lacks")
    return int(n)


class DualPath(RetrievalMethod):
    """Image path + text CNN + shared instance classifier (see the module docstring)."""

    #: Model selection on the validation rsum (instance-level retrieval) when train.select_metric is "auto".
    select_metric = "rsum"

    def __init__(self, name: str, settings: dict, info: DataInfo, lam: float | None = None,
                 word_vectors: np.ndarray | None = None):
        super().__init__(name, settings, info, lam)
        s = settings
        dim = s["embed_dim"]
        self.num_classes = instance_classes(info)
        head = s.get("head") or "paper"
        if head not in HEADS:
            raise ValueError(f"dual_path: head must be one of {', '.join(HEADS)}, got {head!r}")
        official = head == "official"
        self.text_cnn = TextCNN(info.vocab_size, info.word_dim, s["text_blocks"], s["text_widths"],
                                build_kwargs_word_vectors(word_vectors, info), s["finetune_words"],
                                wide_first=official, pool="max" if official else "mean")
        self.backbone = None
        self.images = None
        image_in = info.feature_dim
        if s["image_backbone"] == "resnet50":
            from pipeline.models.resnet_images import FEATURE_DIM, ResNet50Features, TableImages

            self.backbone = ResNet50Features(s["resnet_weights"])
            self.images = TableImages(s["image_table"], s["image_size"])
            image_in = FEATURE_DIM
        if official:
            self.image_head, self.text_head = official_heads(image_in, self.text_cnn.out_dim, dim)
        else:
            self.image_head, self.text_head = embedding_head(image_in, dim), embedding_head(self.text_cnn.out_dim, dim)
        self.classifier = nn.Linear(dim, self.num_classes, bias=False)   # W_share
        self.drop = nn.Dropout(s["dropout"])
        self.epoch = 0

    # --- stages ---------------------------------------------------------------------------------
    @property
    def stage(self) -> int:
        if self.settings["stage1_epochs"] is None:
            raise ValueError("dual_path: stage1_epochs is null (no recipe value for this dataset kind): write it")
        return 1 if self.epoch < self.settings["stage1_epochs"] else 2

    @property
    def first_stage_epochs(self) -> int:
        """Epochs early stopping never cuts (the loop reads it): stage I runs whole, so patience judges
        stage II only."""
        return int(self.settings.get("stage1_epochs") or 0)

    def start_epoch(self, epoch: int) -> None:
        """Called by the training loop before epoch `epoch` (0-based): selects the stage."""
        self.epoch = int(epoch)
        self.train(self.training)

    def frozen_modules(self) -> list[nn.Module]:
        """Parts of the image path that stage I keeps fixed (none in stage II)."""
        if self.stage != 1:
            return []
        parts = [self.backbone] if self.backbone is not None else []
        if self.settings["stage1_freeze"] == "image_path":
            parts.append(self.image_head)
        return parts

    def train(self, mode: bool = True) -> "DualPath":
        super().train(mode)
        if mode:
            for module in self.frozen_modules():
                module.eval()   # frozen batch-norm statistics
        return self

    def lr_groups(self) -> list[tuple[float, list[nn.Parameter]]]:
        """`lr_multipliers` {backbone, words, new} (missing groups and null: 1): the pretrained ResNet-50,
        the word lookup table, and every other (new) layer."""
        mult = self.settings.get("lr_multipliers")
        if not mult:
            return super().lr_groups()
        backbone = list(self.backbone.parameters()) if self.backbone is not None else []
        words = list(self.text_cnn.lookup.parameters())
        taken = {id(p) for p in backbone + words}
        new = [p for p in self.parameters() if id(p) not in taken]
        return [(float(mult.get(group, 1.0)), params)
                for group, params in zip(LR_GROUPS, (backbone, words, new))]

    # --- encoders -------------------------------------------------------------------------------
    def encode_images(self, images: ImageBatch) -> torch.Tensor:
        frozen = self.frozen_modules() if self.training else []
        if self.backbone is None:
            return self._head(self.image_head, images.features.mean(dim=1), frozen)
        pixels = self.images.load(images.rows.cpu(), train=self.training).to(images.features.device)
        f = self._image_f(pixels, frozen)
        if not self.training and self.settings.get("test_flip"):
            # test-time flip (papers/003 Sec. 5, official code): the mean of f of the image and its mirror
            f = (f + self._image_f(pixels.flip(3), frozen)) / 2
        return f

    def _image_f(self, pixels: torch.Tensor, frozen: list[nn.Module]) -> torch.Tensor:
        with torch.set_grad_enabled(torch.is_grad_enabled() and self.backbone not in frozen):
            x = self.backbone(pixels)
        return self._head(self.image_head, x, frozen)

    @staticmethod
    def _head(head: nn.Module, x: torch.Tensor, frozen: list[nn.Module]) -> torch.Tensor:
        with torch.set_grad_enabled(torch.is_grad_enabled() and head not in frozen):
            return head(x)

    def encode_texts(self, texts: TextBatch) -> torch.Tensor:
        shift = self.training and self.settings["position_shift"]
        ids = fixed_length_ids(texts.ids, texts.lengths, self.settings["text_length"], shift)
        return self.text_head(self.text_cnn(ids))

    # --- objective ------------------------------------------------------------------------------
    def loss_weights(self) -> tuple[float, float, float]:
        """(ranking, visual, textual) weights of Eq. 9 in the current stage."""
        rank, visual, textual = (float(w) for w in self.settings["loss_weights"] or (1.0, 1.0, 1.0))
        return (0.0 if self.stage == 1 else rank), visual, textual

    def training_loss(self, batch: PairBatch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        classes = batch.images.rows
        if int(classes.max()) >= self.num_classes or int(classes.min()) < 0:
            raise ValueError(f"dual_path: image row {int(classes.max())} outside the {self.num_classes} instance "
                             f"classes the model was built for")
        f_img, f_txt = self.encode_images(batch.images), self.encode_texts(batch.texts)
        w_rank, w_visual, w_textual = self.loss_weights()
        visual = F.cross_entropy(self.classifier(self.drop(f_img)).float(), classes)
        textual = F.cross_entropy(self.classifier(self.drop(f_txt)).float(), classes)
        total = w_visual * visual + w_textual * textual
        parts = {"instance_visual": visual.detach(), "instance_textual": textual.detach()}
        if w_rank > 0:
            scores = F.normalize(f_img.float(), dim=1) @ F.normalize(f_txt.float(), dim=1).T
            negatives = distinct_images(batch.images.rows, batch.texts.rows)
            mining = self.settings["ranking_negatives"] or "sampled"
            if mining == "hardest_of_pool":  # official; the pool is drawn from the batch
                ranking = pooled_hardest_ranking_loss(scores, self.settings["margin"], negatives,
                                                      pool=self.settings.get("negative_pool", 256))
            else:
                ranking = triplet_ranking_loss(scores, self.settings["margin"], negatives,
                                               mining=mining, reduction="mean")
            scale = self.settings.get("ranking_scale")
            total = total + w_rank * (1.0 if scale is None else float(scale)) * ranking
            parts["ranking"] = ranking.detach()
        return total, parts


class DualPathStage1(DualPath):
    """Method `dual_path_stage1`: the dual-path model held in stage I for all its epochs (instance losses
    only, `stage1_freeze` applied throughout; `stage1_epochs` is not read), so that papers/003's claim
    "stage II beats stage I" can be checked against `dual_path` trained for the same epochs."""

    @property
    def stage(self) -> int:
        return 1

    @property
    def first_stage_epochs(self) -> int:
        return 0
