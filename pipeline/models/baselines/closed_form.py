"""The protocol of the linear baselines (CCA, LCFS, JFSSL): fitted once on arrays, not trained by steps.

A `ClosedFormMethod` is a `RetrievalMethod` whose state is buffers only: the standardisation of its
two inputs and one projection per modality. `fit_arrays(image_x, text_x, labels)` solves for them
from the pooled training pairs; encoding is `((x - mean) / scale) @ projection`, the retrieval score
the cosine (the default of `RetrievalMethod`). The training loop (`pipeline.training.loop`) fits such a
method as its one "epoch" (`training_arrays` gathers the pairs through the data layer it is given, then
`fit_arrays`), and validates, selects and checkpoints it through the same steps as every other method.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from pipeline.contract.batches import DataInfo, ImageBatch, PairBatch, TextBatch
from pipeline.contract.method import RetrievalMethod
from pipeline.models.baselines.inputs import CaptionFeatures, pooled_regions
from pipeline.models.baselines.linalg import SolverError, standardize_stats

FIT_BATCH = 1024  # pairs per data-layer read while gathering the training arrays


class NotFittedError(ValueError):
    """A closed-form method was asked to encode before `fit_arrays`."""


class ClosedFormMethod(RetrievalMethod):
    """Base class: inputs, standardisation and projection buffers; subclasses implement `solve`."""

    closed_form = True
    #: The projections regress the centred labels (LCFS, JFSSL): adding the label means gives label
    #: predictions, clipped to [0, 1] as probabilities for Micro-F1.
    label_regression = False

    def __init__(self, name: str, settings: dict[str, Any], info: DataInfo, lam: float | None = None,
                 word_vectors: np.ndarray | None = None):
        super().__init__(name, settings, info, lam)
        self.captions = CaptionFeatures(settings["text_features"], info, word_vectors)
        d_img, d_txt, k = info.feature_dim, self.captions.dim, self.output_dim()
        self.register_buffer("fitted", torch.zeros((), dtype=torch.bool))
        for side, d in (("image", d_img), ("text", d_txt)):
            self.register_buffer(f"{side}_mean", torch.zeros(d))
            self.register_buffer(f"{side}_scale", torch.ones(d))
            self.register_buffer(f"{side}_projection", torch.zeros(d, k))
        self.register_buffer("label_offset", torch.zeros(k if self.label_regression else 0))

    # --- what subclasses provide ---------------------------------------------------------------
    def output_dim(self) -> int:
        """Width of the common space; label-regression methods project onto the label space."""
        if not self.label_regression:
            raise NotImplementedError
        return self.info.num_labels  # label-regression methods need labels: checked by RetrievalMethod

    def solve(self, image_x: np.ndarray, text_x: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, dict]:
        """Projections `[d_img, k]`, `[d_txt, k]` from standardised inputs, and facts about the fit."""
        raise NotImplementedError

    # --- inputs --------------------------------------------------------------------------------
    def image_inputs(self, images: ImageBatch) -> torch.Tensor:
        return pooled_regions(images)

    def text_inputs(self, texts: TextBatch) -> torch.Tensor:
        return self.captions(texts)

    # --- fitting -------------------------------------------------------------------------------
    def fit_arrays(self, image_x: np.ndarray, text_x: np.ndarray, labels: np.ndarray) -> dict:
        """Fit on paired rows (`image_x[i]` with `text_x[i]`, labels of the pair); returns fit facts."""
        image_x, text_x = np.asarray(image_x, np.float64), np.asarray(text_x, np.float64)
        labels = np.asarray(labels, np.float64)
        n = image_x.shape[0]
        if text_x.shape[0] != n or labels.shape[0] != n:
            raise SolverError(f"{self.method_name}: image, text and label arrays must have the same rows, got "
                              f"{image_x.shape[0]}, {text_x.shape[0]} and {labels.shape[0]}")
        for what, x, d in (("image", image_x, self.image_mean.numel()), ("text", text_x, self.text_mean.numel())):
            if x.ndim != 2 or x.shape[1] != d:
                raise SolverError(f"{self.method_name}: {what} inputs must be [pairs, {d}], got {x.shape}")
        if self.needs_labels and labels.shape[1] != self.info.num_labels:
            raise SolverError(f"{self.method_name}: labels must be [pairs, {self.info.num_labels}], got {labels.shape}")
        stats = {side: standardize_stats(x, f"{self.method_name} {side} inputs")
                 for side, x in (("image", image_x), ("text", text_x))}
        xs = {side: (x - stats[side][0]) / stats[side][1] for side, x in (("image", image_x), ("text", text_x))}
        p_img, p_txt, facts = self.solve(xs["image"], xs["text"], labels)
        for side, proj in (("image", p_img), ("text", p_txt)):
            if not np.isfinite(proj).all():
                raise SolverError(f"{self.method_name}: the {side} projection is not finite; check the inputs "
                                  f"and the method's lambda parameters")
            getattr(self, f"{side}_mean").copy_(torch.from_numpy(stats[side][0]))
            getattr(self, f"{side}_scale").copy_(torch.from_numpy(stats[side][1]))
            getattr(self, f"{side}_projection").copy_(torch.from_numpy(proj))
        if self.label_regression:
            self.label_offset.copy_(torch.from_numpy(labels.mean(axis=0)))
        self.fitted.fill_(True)
        return {"pairs": int(n), **facts}

    # --- RetrievalMethod protocol --------------------------------------------------------------
    def _project(self, x: torch.Tensor, side: str) -> torch.Tensor:
        if not bool(self.fitted):
            raise NotFittedError(f"method '{self.method_name}' is fitted in closed form and has not been fitted "
                                 f"yet (run `xmr train <dataset> {self.method_name}`)")
        mean, scale = getattr(self, f"{side}_mean"), getattr(self, f"{side}_scale")
        return ((x.float() - mean) / scale) @ getattr(self, f"{side}_projection")

    def encode_images(self, images: ImageBatch) -> torch.Tensor:
        return self._project(self.image_inputs(images), "image")

    def encode_texts(self, texts: TextBatch) -> torch.Tensor:
        return self._project(self.text_inputs(texts), "text")

    def classify_images(self, images: ImageBatch) -> torch.Tensor | None:
        return (self.encode_images(images) + self.label_offset).clamp(0, 1) if self.label_regression else None

    def classify_texts(self, texts: TextBatch) -> torch.Tensor | None:
        return (self.encode_texts(texts) + self.label_offset).clamp(0, 1) if self.label_regression else None

    def training_loss(self, batch: PairBatch):
        raise TypeError(f"method '{self.method_name}' is fitted in closed form (fit_arrays), not by gradient steps")


@torch.no_grad()
def training_arrays(method: ClosedFormMethod, data, *, split: str = "train", seed: int = 0,
                    progress: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pooled inputs of the split's (image, caption) pairs through the shared data layer.

    Every caption of the split forms a pair with its image; `max_pairs > 0` keeps a random subset.
    Returns `(image_x [n, d_img], text_x [n, d_txt], labels [n, C])`.
    """
    captions = data.split_items(split).captions
    if len(captions) == 0:
        raise ValueError(f"{data.names['table']}: the {split} split has no captions to fit on")
    limit = int(method.settings["max_pairs"])
    if 0 < limit < len(captions):
        captions = np.sort(np.random.default_rng(seed).choice(captions, size=limit, replace=False))
    parts: dict[str, list[np.ndarray]] = {"image": [], "text": [], "labels": []}
    device = method.image_mean.device
    for start in tqdm(range(0, len(captions), FIT_BATCH), desc=f"{method.method_name} inputs", unit="batch",
                      disable=not progress, leave=False):
        batch = data.pair_batch(captions[start:start + FIT_BATCH]).to(device)
        parts["image"].append(method.image_inputs(batch.images).double().cpu().numpy())
        parts["text"].append(method.text_inputs(batch.texts).double().cpu().numpy())
        parts["labels"].append(batch.texts.labels.cpu().numpy())
    return tuple(np.concatenate(parts[k]) for k in ("image", "text", "labels"))
