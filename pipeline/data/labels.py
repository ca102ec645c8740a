"""Label matrices from the prepared table."""
from __future__ import annotations

import numpy as np
import pyarrow as pa

from pipeline.data.table import label_names


def multi_hot(table: pa.Table, num_labels: int | None = None) -> np.ndarray:
    """`[N, C]` uint8 matrix with 1 where image n carries label c."""
    num_labels = len(label_names(table)) if num_labels is None else num_labels
    labels = table.column("labels").combine_chunks()
    out = np.zeros((table.num_rows, num_labels), dtype=np.uint8)
    flat = labels.values.to_numpy(zero_copy_only=False)
    rows = np.repeat(np.arange(table.num_rows), np.diff(labels.offsets.to_numpy()))
    out[rows, flat] = 1
    return out
