"""The 5-d position feature of a RoI (papers/001, reference.md).

`(x1/W, y1/H, x2/W, y2/H, (x2-x1)(y2-y1)/(W*H))`: the box scaled to the unit square plus its
relative area, so the encoder sees where a region is independently of the image resolution.
"""
from __future__ import annotations

import numpy as np


def box_positions(boxes: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """Position features `[..., 5]` float32 of `boxes [..., 4]` (x1, y1, x2, y2 pixels).

    `sizes` holds (W, H) per image and broadcasts against the leading axes of `boxes`
    (e.g. boxes [N, K, 4] with sizes [N, 2]).
    """
    boxes = np.asarray(boxes, dtype=np.float64)
    sizes = np.asarray(sizes, dtype=np.float64)
    if boxes.shape[-1] != 4:
        raise ValueError(f"boxes must have 4 coordinates in the last axis, got shape {boxes.shape}")
    if sizes.shape[-1] != 2:
        raise ValueError(f"sizes must hold (width, height) in the last axis, got shape {sizes.shape}")
    if np.any(sizes <= 0):
        raise ValueError("image sizes must be positive to normalise box positions")
    while sizes.ndim < boxes.ndim:  # [N, 2] -> [N, 1, 2] for boxes [N, K, 4]
        sizes = sizes[..., None, :]
    w, h = sizes[..., 0], sizes[..., 1]
    x1, y1, x2, y2 = (boxes[..., i] for i in range(4))
    area = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None) / (w * h)
    return np.stack([x1 / w, y1 / h, x2 / w, y2 / h, area], axis=-1).astype(np.float32)
