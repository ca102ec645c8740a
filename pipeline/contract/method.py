"""The protocol every retrieval method implements so that one loop trains and scores them all.

A method is an `nn.Module` built from `(name, settings, info, lam)`:
- `name`: the method name in `params.yaml` (one class may serve several names, e.g. ablations);
- `settings`: the validated `methods.<name>` section;
- `info`: the `DataInfo` of the dataset (feature width, vocabulary, labels, ...);
- `lam`: the top-level `lambda` when `name` reads it (`uses_lambda` in the registry), else None.
Word vectors for initialisation are passed once as `word_vectors` and are not part of the config
(the trained table is in the state dict).

The loop calls `training_loss(PairBatch) -> (loss, parts)`; scoring calls `encode_images`,
`encode_texts` on batches and `similarity(image_repr, text_repr)` on blocks of the results;
`classify_images` / `classify_texts` (optional) give label probabilities for Micro-F1;
`lr_groups()` (optional) splits the parameters into groups with learning-rate multipliers;
`text_parameters()` (optional) names the parameters only the text path uses (`train.grad_clip_scope:
text` clips those alone; the methods that have one are `schema.TEXT_CLIP_METHODS`). The
default similarity is the cosine of embeddings; methods that score pairs jointly (cross attention)
return richer representations from the encoders and override `similarity`.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from pipeline.contract.batches import DataInfo, ImageBatch, PairBatch, TextBatch


class RetrievalMethod(nn.Module):
    """Base class: stores the build arguments (for `config`) and gives cosine similarity."""

    #: The method needs label annotations (label-wise objectives).
    needs_labels: bool = False
    #: Validation metric used when `train.select_metric` is "auto" (None: label-wise NDCG when the
    #: dataset has labels, rsum otherwise); instance-level methods set "rsum".
    select_metric: str | None = None
    #: Version of the model a config describes: raised when the same settings come to build another model
    #: (other modules or arithmetic), so that a model saved by the old code is refused at load instead of
    #: loading into the new one (`pipeline.training.registry.rebuild_method`).
    config_version: int = 1

    def __init__(self, name: str, settings: dict[str, Any], info: DataInfo, lam: float | None = None):
        super().__init__()
        if self.needs_labels and info.num_labels < 1:
            raise ValueError(f"method '{name}' is supervised by labels and needs a dataset with labels; "
                             f"this dataset has none")
        self.method_name = name
        self.settings = dict(settings)
        self.info = info
        self.lam = lam

    def config(self) -> dict[str, Any]:
        """JSON-able arguments that rebuild this model (without its weights)."""
        return {"method": self.method_name, "settings": self.settings, "lambda": self.lam,
                "info": self.info.to_json(), "config_version": self.config_version}

    def start_epoch(self, epoch: int) -> None:
        """Called by the loop before training epoch `epoch` (0-based, also after a resume): a hook for
        schedules such as training stages. Default: nothing."""

    def lr_groups(self) -> list[tuple[float, list[nn.Parameter]]]:
        """`(learning-rate multiplier, parameters)` groups for the optimiser: the loop trains group g at
        `lr * multiplier_g` (and decays every group together). Default: one group at multiplier 1."""
        return [(1.0, list(self.parameters()))]

    def text_parameters(self) -> list[nn.Parameter] | None:
        """The parameters only the text path uses, for gradient clipping of the text side alone; None:
        the method has no such group (`train.grad_clip_scope: text` is refused at params load)."""
        return None

    def training_loss(self, batch: PairBatch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Scalar loss of one mini-batch and its named parts (detached values for logging)."""
        raise NotImplementedError

    def encode_images(self, images: ImageBatch) -> Any:
        raise NotImplementedError

    def encode_texts(self, texts: TextBatch) -> Any:
        raise NotImplementedError

    def classify_images(self, images: ImageBatch) -> torch.Tensor | None:
        """Optional `[B, C]` label probabilities (for Micro-F1); None when the method has no classifier."""
        return None

    def classify_texts(self, texts: TextBatch) -> torch.Tensor | None:
        return None

    def similarity(self, image_repr: Any, text_repr: Any) -> torch.Tensor:
        """`[n_images, n_texts]` scores of two encoded blocks; default: cosine of embeddings."""
        a = image_repr.float()
        b = text_repr.float()
        a = a / a.norm(dim=-1, keepdim=True).clamp_min(1e-8)
        b = b / b.norm(dim=-1, keepdim=True).clamp_min(1e-8)
        return a @ b.T

    def forward(self, batch: PairBatch):  # lets DDP / hooks wrap the training step
        return self.training_loss(batch)


def build_kwargs_word_vectors(word_vectors: np.ndarray | None, info: DataInfo) -> torch.Tensor | None:
    """Word vectors as a float tensor, checked against `info`."""
    if word_vectors is None:
        return None
    if word_vectors.shape != (info.vocab_size, info.word_dim):
        raise ValueError(f"word vectors have shape {word_vectors.shape}, expected "
                         f"({info.vocab_size}, {info.word_dim}) from the vocabulary")
    return torch.as_tensor(np.asarray(word_vectors, dtype=np.float32))
