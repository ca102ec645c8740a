"""DSCMR: deep supervised cross-modal retrieval (Zhen, Hu, Wang, Peng; CVPR 2019).

Architecture as the official code: per modality one FC layer (`hidden`, ReLU) on the input feature,
then a FC layer shared by both modalities into the common space (`common_dim`, no non-linearity; the
weight sharing of the paper) and a shared linear label predictor P. Inputs here: the mean of the RoI
features (the paper: VGG-19 fc7) and a sentence CNN over the word vectors (the paper: word2vec +
sentence CNN). Objective (official code): `J = J1 + alpha * J2 + beta * J3` with
- J1 label-space discrimination, `pipeline.losses.discrimination.label_space_loss`, both modalities;
- J2 common-space discrimination over image-text, image-image, text-text pairs,
  `pipeline.losses.consistency.imc_loss`; option `label_similarity` (recipe): "shares_label" (S = 1 when
  the pair shares a label, the paper's same-class S) or "label_count" (official: S = y_i . y_j);
- J3 modality invariance, `pipeline.losses.discrimination.modality_invariance_loss`.
Retrieval: cosine between common representations. The official optimiser settings (`main.py`: Adam lr 1e-4,
betas (0.5, 0.999), batch 100) are the official recipe's loop values (`pipeline/training/recipes.py`): the
betas on every dataset kind, lr and batch (loop sizes) on the real-data kinds only.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from pipeline.contract.batches import DataInfo, ImageBatch, PairBatch, TextBatch
from pipeline.contract.method import RetrievalMethod
from pipeline.losses.consistency import imc_loss
from pipeline.losses.discrimination import label_space_loss, modality_invariance_loss
from pipeline.models.baselines.inputs import CaptionEncoder, mlp, pooled_regions


class DSCMR(RetrievalMethod):
    needs_labels = True

    def __init__(self, name: str, settings: dict, info: DataInfo, lam: float | None = None,
                 word_vectors: np.ndarray | None = None):
        super().__init__(name, settings, info, lam)
        s = settings
        self.captions = CaptionEncoder(s["text_encoder"], info, word_vectors, s["finetune_words"])
        self.image_net = mlp([info.feature_dim, s["hidden"]], "relu", last_activation=True)
        self.text_net = mlp([self.captions.dim, s["hidden"]], "relu", last_activation=True)
        self.common = nn.Linear(s["hidden"], s["common_dim"])       # shared by both modalities
        self.predictor = nn.Linear(s["common_dim"], info.num_labels)  # P, shared

    def encode_images(self, images: ImageBatch) -> torch.Tensor:
        return self.common(self.image_net(pooled_regions(images)))

    def encode_texts(self, texts: TextBatch) -> torch.Tensor:
        return self.common(self.text_net(self.captions(texts)))

    def classify_images(self, images: ImageBatch) -> torch.Tensor:
        """The shared predictor's label regression, clipped to [0, 1] (supplementary Table 1 reports DSCMR's Micro-F1)."""
        return self.predictor(self.encode_images(images)).float().clamp(0, 1)

    def classify_texts(self, texts: TextBatch) -> torch.Tensor:
        return self.predictor(self.encode_texts(texts)).float().clamp(0, 1)

    def training_loss(self, batch: PairBatch):
        u, v = self.encode_images(batch.images), self.encode_texts(batch.texts)
        y_u, y_v = batch.images.labels, batch.texts.labels
        parts = {
            "label_space": label_space_loss(self.predictor(u), y_u) + label_space_loss(self.predictor(v), y_v),
            "common_space": imc_loss(u, v, y_u, y_v, self.settings.get("label_similarity") or "shares_label"),
            "invariance": modality_invariance_loss(u, v),
        }
        s = self.settings
        total = parts["label_space"] + s["alpha"] * parts["common_space"] + s["beta"] * parts["invariance"]
        return total, {k: p.detach() for k, p in parts.items()}
