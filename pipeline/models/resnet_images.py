"""End-to-end image path of the dual-path model: pixels of table rows through a ResNet-50.

Only used with ImageNet weights given as a local file (`methods.dual_path.resnet_weights`, a
torchvision `resnet50` state dict): fine-tuning a randomly initialised ResNet-50 on a retrieval set
is not what papers/003 does. Images are read from the prepared table's `file_path` column; training
takes a random `size` crop (with random horizontal flip) of the image resized so that its shorter
side is `size * 256 / 224`, evaluation the centre crop (papers/003 Sec. 6.2).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torchvision
import torchvision.transforms.functional as TF
from PIL import Image
from torch import nn

from pipeline.project_paths import project_path

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
FEATURE_DIM = 2048


class ResNet50Features(nn.Module):
    """`[B, 3, H, W]` normalised pixels -> `[B, 2048]` pooled ResNet-50 features."""

    def __init__(self, weights_path: str | Path | None):
        super().__init__()
        net = torchvision.models.resnet50(weights=None)
        if weights_path is not None:
            path = Path(weights_path)
            if not path.is_file():
                raise FileNotFoundError(f"{path}: ResNet-50 weights not found (parameter 'methods.dual_path."
                                        f"resnet_weights' must name a torchvision resnet50 state dict)")
            state = torch.load(path, map_location="cpu", weights_only=True)
            state = {k: v for k, v in state.items() if not k.startswith("fc.")}
            missing, unexpected = net.load_state_dict(state, strict=False)
            missing = [k for k in missing if not k.startswith("fc.")]
            if missing or unexpected:
                raise ValueError(f"{path}: not a resnet50 state dict (missing {missing[:3]}, "
                                 f"unexpected {unexpected[:3]})")
        net.fc = nn.Identity()
        self.net = net

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.net(pixels)


class TableImages:
    """Loads the images of table rows as normalised `[B, 3, size, size]` tensors."""

    def __init__(self, table_path: str | Path, size: int):
        from pipeline.data.table import read_table

        self.table_path = Path(table_path)
        self.files = read_table(self.table_path).column("file_path").to_pylist()
        self.size = size
        self.resize = round(size * 256 / 224)

    def _one(self, row: int, train: bool, rng: np.random.Generator) -> torch.Tensor:
        if not 0 <= row < len(self.files):
            raise ValueError(f"{self.table_path}: row {row} outside the table's {len(self.files)} rows")
        path = project_path(self.files[row])
        if not path.is_file():
            raise FileNotFoundError(f"{path}: image of table row {row} ({self.table_path}) not found")
        with Image.open(path) as im:
            img = TF.resize(TF.pil_to_tensor(im.convert("RGB")), self.resize, antialias=True)
        h, w = img.shape[1:]
        if train:
            top, left = int(rng.integers(0, h - self.size + 1)), int(rng.integers(0, w - self.size + 1))
            img = img[:, top:top + self.size, left:left + self.size]
            if rng.random() < 0.5:
                img = img.flip(2)
        else:
            img = TF.center_crop(img, [self.size, self.size])
        return TF.normalize(img.float() / 255.0, IMAGENET_MEAN, IMAGENET_STD)

    def load(self, rows: torch.Tensor, train: bool) -> torch.Tensor:
        rng = np.random.default_rng(int(torch.randint(0, 2**31 - 1, (1,))))  # follows torch's seeding
        return torch.stack([self._one(int(r), train, rng) for r in rows.tolist()])
