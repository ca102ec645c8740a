"""SCML: sequential learning for cross-modal retrieval (Song & Tan, ICCV Workshops 2019), as far as
its paper allows.

What the paper states: one unified model captures the knowledge common to the modalities; it learns
the modalities one after another (sequentially, like tasks in continual learning) rather than jointly,
needs no alignment between the modalities' samples, and uses an optimisation-based meta-learning
objective against catastrophic forgetting. Everything else is an assumption of this implementation:
- a modality-specific input layer (FC + ReLU, `hidden` wide) per modality on the pooled RoI features /
  the caption encoding, then the unified network shared by all modalities: FC + ReLU + a linear
  classifier over the C labels, trained with multi-label binary cross-entropy;
- the pairing of the mini-batch is ignored: the images and the captions are two independent labelled
  samples (no alignment is used);
- each training step is one meta-step over a sequence of modality tasks (`order`: image then text,
  text then image, or alternating): an SGD step of `inner_lr` on the first modality's loss, then one on
  the second's, starting from the adapted unified weights; the meta-loss is the sum of both modalities'
  losses at the end of the sequence (learning the second must not undo the first), minimised
  first-order (the inner gradients are treated as constants, as first-order MAML / Reptile);
- retrieval embedding: the unified network's label scores, sigmoid, compared by cosine.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from pipeline.contract.batches import DataInfo, ImageBatch, PairBatch, TextBatch
from pipeline.contract.method import RetrievalMethod
from pipeline.models.baselines.inputs import CaptionEncoder, mlp, pooled_regions

ORDERS = {"image_text": ("image", "text"), "text_image": ("text", "image")}


def multilabel_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean binary cross-entropy over items and labels."""
    return F.binary_cross_entropy_with_logits(logits.float(), labels.float())


class SCML(RetrievalMethod):
    needs_labels = True

    def __init__(self, name: str, settings: dict, info: DataInfo, lam: float | None = None,
                 word_vectors: np.ndarray | None = None):
        super().__init__(name, settings, info, lam)
        s, h = settings, int(settings["hidden"])
        self.captions = CaptionEncoder(s["text_encoder"], info, word_vectors, s["finetune_words"])
        self.image_net = mlp([info.feature_dim, h], "relu", last_activation=True)
        self.text_net = mlp([self.captions.dim, h], "relu", last_activation=True)
        self.unified = nn.Sequential(nn.Linear(h, h), nn.ReLU(), nn.Linear(h, info.num_labels))
        self.register_buffer("meta_steps", torch.zeros((), dtype=torch.long))

    def _order(self) -> tuple[str, str]:
        order = self.settings["order"]
        if order == "alternate":
            return ORDERS["image_text"] if int(self.meta_steps) % 2 == 0 else ORDERS["text_image"]
        return ORDERS[order]

    def _logits(self, x: torch.Tensor, weights: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
        return self.unified(x) if weights is None else functional_call(self.unified, weights, (x,))

    def encode_images(self, images: ImageBatch) -> torch.Tensor:
        return torch.sigmoid(self._logits(self.image_net(pooled_regions(images))).float())

    def encode_texts(self, texts: TextBatch) -> torch.Tensor:
        return torch.sigmoid(self._logits(self.text_net(self.captions(texts))).float())

    def classify_images(self, images: ImageBatch) -> torch.Tensor:
        return self.encode_images(images)  # the unified classifier's label probabilities

    def classify_texts(self, texts: TextBatch) -> torch.Tensor:
        return self.encode_texts(texts)

    def training_loss(self, batch: PairBatch):
        x = {"image": self.image_net(pooled_regions(batch.images)), "text": self.text_net(self.captions(batch.texts))}
        y = {"image": batch.images.labels, "text": batch.texts.labels}
        order = self._order()
        weights = dict(self.unified.named_parameters())
        parts: dict[str, torch.Tensor] = {}
        if torch.is_grad_enabled():
            for modality in order:  # the sequence of modality tasks (inner SGD steps, first order)
                inner = multilabel_loss(self._logits(x[modality], weights), y[modality])
                grads = torch.autograd.grad(inner, list(weights.values()), retain_graph=True)
                weights = {k: w - self.settings["inner_lr"] * g.detach() for (k, w), g in zip(weights.items(), grads)}
                parts[f"inner_{modality}"] = inner.detach()
        if self.training:
            self.meta_steps += 1
        for modality in order:
            parts[modality] = multilabel_loss(self._logits(x[modality], weights), y[modality])
        total = parts[order[0]] + parts[order[1]]
        return total, {k: v.detach() for k, v in parts.items()}
