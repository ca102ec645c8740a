"""DCCA: deep canonical correlation analysis (Andrew, Arora, Bilmes, Livescu; ICML 2013).

Two networks (image: mean of the RoI features; caption: mean word vector or sentence CNN) map the
views to o outputs each; training maximises their total canonical correlation on every mini-batch
(`pipeline.losses.correlation`). Retrieval uses the linear CCA of the two outputs: the paper fits it on
the training outputs after training, and so does `final_cca: one_pass` (default): after each epoch the
loop calls `after_epoch`, which recomputes the covariances in one pass over every training pair (so the
epoch selected on validation has its own fit). `final_cca: running` keeps running (exponential) averages
of the mini-batch covariances (`stats_momentum`) instead, without the extra pass. Faithful: the objective, the regularised covariances
(r1 = r2 = `reg`), the top-k option. Not reproduced: the paper's RBM pre-training and full-batch
L-BFGS (the shared Adam loop trains every gradient method).
"""
from __future__ import annotations

import numpy as np
import torch

from pipeline.contract.batches import DataInfo, ImageBatch, PairBatch, TextBatch
from pipeline.contract.method import RetrievalMethod
from pipeline.losses.correlation import dcca_loss, view_covariances
from pipeline.models.baselines.inputs import CaptionEncoder, mlp, pooled_regions
from pipeline.models.baselines.linalg import cca_projections


class DCCA(RetrievalMethod):
    needs_labels = False

    def __init__(self, name: str, settings: dict, info: DataInfo, lam: float | None = None,
                 word_vectors: np.ndarray | None = None):
        super().__init__(name, settings, info, lam)
        s = settings
        o, hidden = int(s["out_dim"]), [int(h) for h in s["hidden"]]
        self.captions = CaptionEncoder(s["text_encoder"], info, word_vectors, s["finetune_words"])
        self.image_net = mlp([info.feature_dim, *hidden, o], s["activation"], last_activation=False)
        self.text_net = mlp([self.captions.dim, *hidden, o], s["activation"], last_activation=False)
        self.k = int(s["top_k"]) or o
        for key, shape in (("mean1", (o,)), ("mean2", (o,)), ("s11", (o, o)), ("s22", (o, o)), ("s12", (o, o))):
            self.register_buffer(key, torch.zeros(shape, dtype=torch.float64))
        self.register_buffer("stats_seen", torch.zeros((), dtype=torch.bool))

    def _outputs(self, images: ImageBatch | None = None, texts: TextBatch | None = None) -> torch.Tensor:
        if images is not None:
            return self.image_net(pooled_regions(images))
        return self.text_net(self.captions(texts))

    @torch.no_grad()
    def _update_stats(self, h1: torch.Tensor, h2: torch.Tensor) -> None:
        h1, h2 = h1.detach().double(), h2.detach().double()
        s11, s22, s12 = view_covariances(h1, h2, 0.0)
        new = {"mean1": h1.mean(dim=0), "mean2": h2.mean(dim=0), "s11": s11, "s22": s22, "s12": s12}
        rate = 1.0 if not bool(self.stats_seen) else float(self.settings["stats_momentum"])
        for key, value in new.items():
            getattr(self, key).lerp_(value, rate)
        self.stats_seen.fill_(True)

    def _projections(self) -> tuple[torch.Tensor, torch.Tensor]:
        if not bool(self.stats_seen):
            raise ValueError(f"method '{self.method_name}' has no output statistics yet: its canonical projection "
                             f"is estimated during training (train it first)")
        eye = torch.eye(self.s11.shape[0], dtype=self.s11.dtype, device=self.s11.device)
        reg = float(self.settings["reg"])
        a1, a2, _ = cca_projections(self.s11 + reg * eye, self.s22 + reg * eye, self.s12, self.k)
        return a1, a2

    def canonical_correlations(self) -> torch.Tensor:
        """Correlations of the running linear CCA (largest first), for reports and tests."""
        eye = torch.eye(self.s11.shape[0], dtype=self.s11.dtype, device=self.s11.device)
        reg = float(self.settings["reg"])
        return cca_projections(self.s11 + reg * eye, self.s22 + reg * eye, self.s12, self.k)[2]

    @torch.no_grad()
    def after_epoch(self, batches) -> None:
        """`final_cca: one_pass`: the covariances of the outputs over every training pair (`batches`: an
        iterable of PairBatch), replacing the running estimates."""
        if self.settings.get("final_cca", "running") != "one_pass":
            return
        n, sums = 0, None
        for batch in batches:
            h1 = self._outputs(images=batch.images).double()
            h2 = self._outputs(texts=batch.texts).double()
            parts = (h1.sum(0), h2.sum(0), h1.T @ h1, h2.T @ h2, h1.T @ h2)
            sums = parts if sums is None else tuple(a + b for a, b in zip(sums, parts))
            n += h1.shape[0]
        if n < 2:
            return
        m1, m2, p11, p22, p12 = sums
        m1, m2 = m1 / n, m2 / n
        self.mean1.copy_(m1)
        self.mean2.copy_(m2)
        self.s11.copy_((p11 - n * torch.outer(m1, m1)) / (n - 1))
        self.s22.copy_((p22 - n * torch.outer(m2, m2)) / (n - 1))
        self.s12.copy_((p12 - n * torch.outer(m1, m2)) / (n - 1))
        self.stats_seen.fill_(True)

    # --- RetrievalMethod protocol ---------------------------------------------------------------
    def training_loss(self, batch: PairBatch):
        h1, h2 = self._outputs(images=batch.images), self._outputs(texts=batch.texts)
        if self.training:
            self._update_stats(h1, h2)
        loss = dcca_loss(h1.float(), h2.float(), float(self.settings["reg"]), int(self.settings["top_k"]))
        return loss, {"correlation": (self.k - loss).detach()}

    def encode_images(self, images: ImageBatch) -> torch.Tensor:
        a1, _ = self._projections()
        return ((self._outputs(images=images).double() - self.mean1) @ a1).float()

    def encode_texts(self, texts: TextBatch) -> torch.Tensor:
        _, a2 = self._projections()
        return ((self._outputs(texts=texts).double() - self.mean2) @ a2).float()
