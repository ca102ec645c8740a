"""The batch types every method consumes, and the facts about a dataset a model is built for."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch

PAD_ID, UNK_ID, MASK_ID = 0, 1, 2  # reserved vocabulary ids (docs/architecture.md, Text)


@dataclass(frozen=True)
class DataInfo:
    """Shapes a model depends on; stored in `config.json` and checked when a checkpoint is loaded."""

    feature_dim: int           # D of the RoI features
    num_regions: int           # RoIs per image (36)
    num_detector_classes: int  # classes of the detector (targets of masked-RoI prediction)
    vocab_size: int            # words incl. the reserved ids
    word_dim: int              # width of the word vectors (300)
    num_labels: int            # C, 0 for a dataset without labels
    num_images: int = 0        # table rows (instance classes of instance-level methods); 0 = unknown

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, obj: dict) -> "DataInfo":
        fields = dataclasses.fields(cls)
        missing = [f.name for f in fields if f.name not in obj and f.default is dataclasses.MISSING]
        if missing:
            raise ValueError(f"data info lacks field '{missing[0]}' (expected {', '.join(f.name for f in fields)})")
        return cls(**{f.name: int(obj[f.name]) for f in fields if f.name in obj})

    def differences(self, other: "DataInfo") -> list[str]:
        """`field: a != b` for every field where `other` differs (an unknown num_images, 0, matches any)."""
        out = []
        for f in dataclasses.fields(self):
            a, b = getattr(self, f.name), getattr(other, f.name)
            if a != b and not (f.name == "num_images" and 0 in (a, b)):
                out.append(f"{f.name}: {a} != {b}")
        return out


def _to(obj, device: torch.device | str):
    return dataclasses.replace(obj, **{f.name: getattr(obj, f.name).to(device, non_blocking=True)
                                       for f in dataclasses.fields(obj)})


@dataclass(frozen=True)
class ImageBatch:
    """The images a method sees, after `to(device)`: there the features become float32. Before it they are
    as stored (float16 by default), so a host moves half the bytes and the device converts them (issue 24:
    the float32 conversion on the host halved the rate of batches from the cache)."""

    rows: torch.Tensor       # [B] int64 table rows
    features: torch.Tensor   # [B, R, D] float32 after `to`; before it as stored (float16)
    positions: torch.Tensor  # [B, R, 5] float32 (x1/W, y1/H, x2/W, y2/H, area fraction)
    classes: torch.Tensor    # [B, R] int64 detector class per RoI (negative = none)
    labels: torch.Tensor     # [B, C] float32 multi-hot

    def __len__(self) -> int:
        return int(self.rows.shape[0])

    def to(self, device) -> "ImageBatch":
        moved = _to(self, device)
        return dataclasses.replace(moved, features=moved.features.float())


@dataclass(frozen=True)
class TextBatch:
    captions: torch.Tensor   # [B] int64 caption index (row of tokens.parquet)
    rows: torch.Tensor       # [B] int64 table row of each caption's image
    ids: torch.Tensor        # [B, L] int64 word ids, PAD_ID after the caption's end
    lengths: torch.Tensor    # [B] int64 tokens per caption (may be 0)
    labels: torch.Tensor     # [B, C] float32 labels of the caption's image

    def __len__(self) -> int:
        return int(self.captions.shape[0])

    def to(self, device) -> "TextBatch":
        return _to(self, device)


@dataclass(frozen=True)
class PairBatch:
    """A training mini-batch of both modalities: `texts[i]` is a caption of `images[i]`."""

    images: ImageBatch
    texts: TextBatch

    def __len__(self) -> int:
        return len(self.texts)

    def to(self, device) -> "PairBatch":
        return PairBatch(self.images.to(device), self.texts.to(device))
