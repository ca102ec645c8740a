"""A tiny synthetic retrieval dataset with learnable structure, built in memory for the training tests.

Each image carries 1-2 of C labels. Its RoIs of a label have features near that label's prototype
(detector class = label); the remaining RoIs are clutter (prototype of a clutter class). Captions
name the image's labels with one word per label among filler words. A model that learns the
label/feature and label/word associations retrieves by label far better than chance.
The store and text objects follow the reader contracts of docs/architecture.md.
"""
from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import torch

from pipeline.data.table import SCHEMA

RESERVED = ["<pad>", "<unk>", "<mask>"]


class FakeFeatureStore:
    """In-memory stand-in for `pipeline.detection.store.FeatureStore`."""

    def __init__(self, features, positions, classes, num_classes):
        self.features, self.positions, self.classes = features, positions, classes
        self.dim = features.shape[-1]
        self.num_classes = num_classes

    def __len__(self):
        return len(self.features)

    def read(self, rows, float32=True, arrays=None, out=None):
        rows = np.asarray(rows)
        features = self.features[rows].astype(np.float32 if float32 else self.features.dtype)
        values = {"features": features, "positions": self.positions[rows],
                  "classes": self.classes[rows], "boxes": self.positions[rows, :, :4] * 100,
                  "scores": np.ones(self.classes[rows].shape, np.float32)}
        values = {k: v for k, v in values.items() if arrays is None or k in arrays}
        for k, target in (out or {}).items():  # `out`: fill the given arrays, as FeatureStore.read does
            target[...] = values[k]
        return values if out is None else out


class FakeTextData:
    """In-memory stand-in for `pipeline.text.store.TextData`."""

    def __init__(self, vocab, embeddings, caption_rows, ids):
        self.vocab, self.embeddings = vocab, embeddings
        self.caption_rows = np.asarray(caption_rows, dtype=np.int64)
        self.ids = [np.asarray(i, dtype=np.int64) for i in ids]
        self.lengths = np.array([len(i) for i in self.ids], dtype=np.int64)
        starts = np.searchsorted(self.caption_rows, self.caption_rows)  # captions are grouped by image
        self.caption_index = np.arange(len(self.caption_rows)) - starts

    def __len__(self):
        return len(self.ids)

    def pad_batch(self, captions, max_len=None):
        captions = np.asarray(captions)
        lengths = self.lengths[captions]
        width = int(lengths.max()) if len(lengths) else 0
        out = np.zeros((len(captions), width), dtype=np.int64)
        for k, c in enumerate(captions):
            out[k, :lengths[k]] = self.ids[c]
        return out, lengths


def make_dataset(n_images=120, n_labels=6, n_regions=8, dim=16, n_val=20, n_test=20, captions_per_image=2,
                 noise=0.6, seed=0):
    """`(table, store, text)` of a synthetic labelled dataset."""
    rng = np.random.default_rng(seed)
    n_clutter = 2
    prototypes = rng.normal(size=(n_labels + n_clutter, dim)).astype(np.float32)
    labels = [sorted(rng.choice(n_labels, size=rng.integers(1, 3), replace=False).tolist()) for _ in range(n_images)]
    features = np.empty((n_images, n_regions, dim), np.float16)
    classes = np.empty((n_images, n_regions), np.int32)
    for i, labs in enumerate(labels):
        cls = rng.integers(n_labels, n_labels + n_clutter, size=n_regions)
        k = rng.integers(1, 3, size=len(labs))  # RoIs per label
        slots = rng.permutation(n_regions)[: int(k.sum())]
        cls[slots] = np.repeat(labs, k)
        classes[i] = cls
        features[i] = prototypes[cls] + noise * rng.normal(size=(n_regions, dim))
    xy = rng.uniform(0, 0.5, size=(n_images, n_regions, 2))
    wh = rng.uniform(0.1, 0.5, size=(n_images, n_regions, 2))
    positions = np.concatenate([xy, xy + wh, (wh[..., :1] * wh[..., 1:])], axis=-1).astype(np.float32)

    label_words = [f"w{c}" for c in range(n_labels)]
    fillers = ["a", "the", "with", "and", "picture"]
    vocab = RESERVED + label_words + fillers
    word_id = {w: i for i, w in enumerate(vocab)}
    caption_rows, ids, captions = [], [], []
    for i, labs in enumerate(labels):
        caps = []
        for _ in range(captions_per_image):
            words = [label_words[c] for c in labs] + list(rng.choice(fillers, size=rng.integers(1, 4)))
            words = [words[j] for j in rng.permutation(len(words))]
            caption_rows.append(i)
            ids.append([word_id[w] for w in words])
            caps.append(" ".join(words))
        captions.append(caps)
    embeddings = rng.normal(size=(len(vocab), 8)).astype(np.float32)
    embeddings[0] = 0

    split = ["train"] * (n_images - n_val - n_test) + ["val"] * n_val + ["test"] * n_test
    table = pa.table({
        "image_id": np.arange(n_images, dtype=np.int64), "file_path": [f"img{i}.png" for i in range(n_images)],
        "width": np.full(n_images, 100, np.int32), "height": np.full(n_images, 100, np.int32),
        "captions": captions, "labels": labels, "boxes": [[] for _ in range(n_images)],
        "box_labels": [[] for _ in range(n_images)], "split": split}, schema=SCHEMA)
    table = table.replace_schema_metadata({b"label_names": json.dumps([f"label{c}" for c in range(n_labels)]).encode(),
                                           b"dataset": b"synthetic"})
    store = FakeFeatureStore(features, positions, classes, n_labels + n_clutter)
    text = FakeTextData(vocab, embeddings, caption_rows, ids)
    return table, store, text


def small_params(method="ss", epochs=3, **train):
    """Validated params with tiny Semantic Sharing models (every variant)."""
    from pipeline.params import validate

    raw = {"train": {"batch_size": 16, "lr": 3e-3, "epochs": epochs, "device": "cpu", "eval_batch_size": 64,
                     "threads": 1, **train}, "methods": {}}
    from pipeline.models.semantic_sharing import VARIANTS
    from pipeline.training.schema import METHOD_SCHEMAS
    for name in VARIANTS:
        schema = METHOD_SCHEMAS[name]
        entry = {"d_model": 32, "dropout": 0.0, "text_gru": False}
        if "layers" in schema:
            entry.update(layers=2, heads=4, d_ff=64)
        raw["methods"][name] = entry
    return validate(raw)


def ddp_worker(rank: int, world: int, port: int, out_dir: str) -> None:
    """One rank of a CPU (gloo) data-parallel `ss` run; saves its final weights as rank<r>.pt."""
    import os

    import torch.distributed as dist

    from pipeline.training.data import RetrievalData
    from pipeline.training.loop import train_method

    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    torch.set_num_threads(1)
    data = RetrievalData(*make_dataset(), cache_splits=("train", "val"))
    try:
        result = train_method("ss", small_params(epochs=2), data, f"{out_dir}/model", f"{out_dir}/history.json",
                              dataset="synthetic", progress=False, log=lambda m: None)
        import pipeline.training.checkpoint as ckpt

        state = ckpt.load_state(__import__("pathlib").Path(out_dir) / "model" / "last.pt") if rank == 0 else None
        torch.save({"best_epoch": result.best_epoch, "epochs": result.epochs_done,
                    "last": state["model"] if state else None}, f"{out_dir}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()
