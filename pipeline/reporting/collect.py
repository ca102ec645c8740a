"""Reading `reports/metrics/<dataset>/<method>.json` and placing each file in the papers' columns.

A metrics file is the dict of `pipeline.metrics.evaluate_similarity` plus optional `dataset` and
`method` keys (which must then agree with the path). COCO files that hold both protocols feed two
columns (COCO5K, COCO1K); every other dataset feeds the column named after it (the papers' name
when there is one, e.g. `mirflickr` -> FLICKR25K, else the dataset name itself).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.metrics.evaluate import protocol_view
from pipeline.reporting.published import COCO_NAMES, DATASET_COLUMNS, PROTOCOL_COLUMNS


class ReportInputError(ValueError):
    """An input of the report (metrics, training history, rankings, experiments) is malformed."""


@dataclass
class MetricsRecord:
    dataset: str
    method: str
    path: Path
    values: dict
    intervals: dict = field(default_factory=dict)  # metric key -> bootstrap Estimate (pipeline.reporting.intervals)
    recipe: str = ""  # the method's `methods.<m>.recipe` (paper / official) when it has one
    still_rising: bool = False  # its validation curve rose at its last epoch (pipeline.reporting.convergence)


def read_json(path: Path, what: str):
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ReportInputError(f"{path}: not a readable JSON {what} ({exc})") from exc


def collect_metrics(metrics_dir: str | Path) -> list[MetricsRecord]:
    """Every `<dataset>/<method>.json` under `metrics_dir`, sorted by dataset then method."""
    metrics_dir = Path(metrics_dir)
    records = []
    for path in sorted(metrics_dir.glob("*/*.json")):
        values = read_json(path, "metrics file")
        if not isinstance(values, dict):
            raise ReportInputError(f"{path}: a metrics file must hold a JSON object, got {type(values).__name__}")
        dataset, method = path.parent.name, path.stem
        for key, expected in (("dataset", dataset), ("method", method)):
            if key in values and values[key] != expected:
                raise ReportInputError(f"{path}: field '{key}' is {values[key]!r} but the path says {expected!r}")
        for key, value in values.items():
            if isinstance(value, bool) or not isinstance(value, (int, float, str, type(None))):
                raise ReportInputError(f"{path}: field '{key}' must be a number or a string, got {value!r}")
        records.append(MetricsRecord(dataset, method, path, values))
    return records


def column_views(record: MetricsRecord) -> list[tuple[str, dict]]:
    """`(column, metrics with plain keys)` for each table column this record fills."""
    values = record.values
    if record.dataset.lower() in COCO_NAMES:
        views = [(PROTOCOL_COLUMNS[p], protocol_view(values, p)) for p in ("coco1k", "coco5k")]
        views = [(c, v) for c, v in views if v]
        if views:
            return views
    column = DATASET_COLUMNS.get(record.dataset.lower(), record.dataset)
    protocol = values.get("protocol") or _only_protocol(values)
    return [(column, protocol_view(values, protocol) if isinstance(protocol, str) else values)]


def _only_protocol(values: dict) -> str | None:
    """The protocol of a metrics file written with prefixed keys only (`coco5k_ndcg_ave`, ...), if any."""
    if any(k in values for k in ("rsum", "ndcg_ave", "r1_i2t")):
        return None
    return next((p for p in ("coco5k", "coco1k") if any(k.startswith(f"{p}_") for k in values)), None)
