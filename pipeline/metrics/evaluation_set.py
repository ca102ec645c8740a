"""The id shared by one evaluation's three outputs: metrics JSON, per-query and rankings files.

`xmr evaluate` writes the rankings, then the per-query values, then the metrics, each atomically; a
kill between two writes leaves files of two evaluations side by side (a point from one, its interval
from the other). Each file carries `evaluation_id`, a hash of the model's completion record, the
identities of the data it was scored on, the split and the metric options: the same evaluation gets
the same id (reruns stay byte-identical), and the report refuses files whose ids differ.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from pipeline.completion import RECORD_FILE

EVALUATION_ID = "evaluation_id"


class EvaluationSetError(ValueError):
    """Outputs of one method that come from different evaluations."""


def evaluation_id(model_dir: str | Path, inputs: dict, split: str, metrics_params: dict) -> str:
    record = Path(model_dir) / RECORD_FILE
    model = record.read_bytes() if record.is_file() else b""
    ident = json.dumps({"inputs": inputs, "split": split, "metrics": metrics_params}, sort_keys=True, default=str)
    return hashlib.sha256(model + b"\0" + ident.encode()).hexdigest()[:16]


def file_evaluation_id(values: dict) -> str | None:
    """The id a metrics dict or an npz's arrays carry (None for files written before ids existed)."""
    value = values.get(EVALUATION_ID)
    if value is None:
        return None
    return str(np.asarray(value).item()) if isinstance(value, np.ndarray) else str(value)


def require_same_evaluation(metrics_path: str | Path, metrics: dict, other_path: str | Path, other: dict) -> None:
    """Refuse `other` (a per-query or rankings file) unless it comes from the evaluation of `metrics`."""
    a, b = file_evaluation_id(metrics), file_evaluation_id(other)
    if a != b:
        raise EvaluationSetError(f"{other_path}: from evaluation {b}, but {metrics_path} is from evaluation {a}; "
                                 f"the evaluate run that wrote them was interrupted: rerun `xmr evaluate` "
                                 f"(or `dvc repro`)")
