"""Tiny synthetic image-caption data for the instance-level methods (SCAN, dual path).

Each image shows 2-3 of a few "concepts": one region per concept is that concept's prototype
feature plus noise, the other regions are noise. Each caption names the image's concepts (one word
per concept, in random order) mixed with filler words, so a model can only match captions to
images by learning which word goes with which region feature.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import torch

from pipeline.contract.batches import DataInfo, ImageBatch, PairBatch, TextBatch
from pipeline.metrics import evaluate_similarity

RESERVED = 3  # <pad>, <unk>, <mask>
FILLERS = 4


def make_info(**fields) -> DataInfo:
    """A DataInfo; `num_images` is passed on when the dataclass has that field, else kept as an
    attribute of a subclass (the dual-path model needs it)."""
    names = {f.name for f in dataclasses.fields(DataInfo)}
    num_images = fields.pop("num_images", 0)
    if "num_images" in names:
        return DataInfo(**fields, num_images=num_images)

    @dataclass(frozen=True)
    class _Info(DataInfo):
        num_images: int = 0

    return _Info(**fields, num_images=num_images)


@dataclass
class ConceptData:
    features: torch.Tensor   # [N, R, D]
    ids: torch.Tensor        # [N * cpi, L]
    lengths: torch.Tensor    # [N * cpi]
    caption_rows: torch.Tensor
    word_vectors: np.ndarray
    info: DataInfo

    def image_batch(self, rows) -> ImageBatch:
        rows = torch.as_tensor(rows, dtype=torch.long)
        n = len(rows)
        return ImageBatch(rows=rows, features=self.features[rows], positions=torch.zeros(n, self.features.shape[1], 5),
                          classes=torch.full((n, self.features.shape[1]), -1, dtype=torch.long),
                          labels=torch.zeros(n, 0))

    def text_batch(self, captions) -> TextBatch:
        captions = torch.as_tensor(captions, dtype=torch.long)
        lengths = self.lengths[captions]
        width = max(1, int(lengths.max()))
        return TextBatch(captions=captions, rows=self.caption_rows[captions], ids=self.ids[captions, :width],
                         lengths=lengths, labels=torch.zeros(len(captions), 0))

    def pair_batch(self, captions) -> PairBatch:
        captions = torch.as_tensor(captions, dtype=torch.long)
        return PairBatch(self.image_batch(self.caption_rows[captions]), self.text_batch(captions))

    def captions_of(self, rows) -> torch.Tensor:
        return torch.nonzero(torch.isin(self.caption_rows, torch.as_tensor(rows))).squeeze(1)


def concept_data(n_images: int = 120, captions_per_image: int = 5, n_concepts: int = 10, regions: int = 6,
                 feature_dim: int = 16, word_dim: int = 8, seed: int = 0) -> ConceptData:
    rng = np.random.default_rng(seed)
    prototypes = rng.normal(size=(n_concepts, feature_dim))
    features = rng.normal(scale=0.6, size=(n_images, regions, feature_dim))
    ids, rows = [], []
    for i in range(n_images):
        concepts = rng.choice(n_concepts, size=int(rng.integers(2, 4)), replace=False)
        slots = rng.choice(regions, size=len(concepts), replace=False)
        features[i, slots] = prototypes[concepts] + rng.normal(scale=0.3, size=(len(concepts), feature_dim))
        for _ in range(captions_per_image):
            words = list(RESERVED + rng.permutation(concepts))
            words += list(RESERVED + n_concepts + rng.integers(0, FILLERS, size=int(rng.integers(0, 4))))
            rng.shuffle(words)
            ids.append(words)
            rows.append(i)
    width = max(len(w) for w in ids)
    padded = np.zeros((len(ids), width), dtype=np.int64)
    for k, w in enumerate(ids):
        padded[k, :len(w)] = w
    vocab = RESERVED + n_concepts + FILLERS
    vectors = rng.normal(size=(vocab, word_dim)).astype(np.float32)
    vectors[0] = 0
    info = make_info(feature_dim=feature_dim, num_regions=regions, num_detector_classes=1, vocab_size=vocab,
                     word_dim=word_dim, num_labels=0, num_images=n_images)
    return ConceptData(torch.tensor(features, dtype=torch.float32), torch.from_numpy(padded),
                       torch.tensor([len(w) for w in ids]), torch.tensor(rows), vectors, info)


def train_steps(method, data: ConceptData, train_rows, steps: int, batch_size: int = 32, lr: float = 1e-3,
                clip: float = 2.0, seed: int = 0, steps_per_epoch: int | None = None) -> list[float]:
    """A minimal copy of the training loop (Adam, gradient clipping, epoch hook) for tests."""
    torch.manual_seed(seed)
    captions = data.captions_of(train_rows)
    params = [p for p in method.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=lr)
    losses = []
    gen = torch.Generator().manual_seed(seed)
    for step in range(steps):
        if steps_per_epoch and step % steps_per_epoch == 0 and hasattr(method, "start_epoch"):
            method.start_epoch(step // steps_per_epoch)
        method.train()
        pick = captions[torch.randperm(len(captions), generator=gen)[:batch_size]]
        loss, _ = method.training_loss(data.pair_batch(pick))
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, clip)
        opt.step()
        losses.append(float(loss.detach()))
    return losses


@torch.no_grad()
def rsum_on(method, data: ConceptData, rows) -> float:
    """Validation rsum of `method` on the images `rows` and their captions (pipeline.metrics)."""
    method.eval()
    rows = torch.as_tensor(rows)
    captions = data.captions_of(rows)
    scores = method.similarity(method.encode_images(data.image_batch(rows)),
                               method.encode_texts(data.text_batch(captions)))
    caption_image = torch.searchsorted(rows, data.caption_rows[captions]).numpy()
    return evaluate_similarity(scores.numpy(), caption_image=caption_image, recall_ks=[1, 5, 10])["rsum"]
