"""Bootstrap intervals for the report: one paired bootstrap per dataset over its per-query files.

`dataset_intervals` reads `per_query/<ds>/<method>.npz` for every metrics record, draws one set of
resamples per dataset (`pipeline.metrics.bootstrap.PairedBootstrap`) and attaches to each record the
interval of every metric it reports; `differences_table` renders each method minus the reference
method, resample by resample. Claims (method A beats B) reuse `DatasetIntervals.difference`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pipeline.metrics.bootstrap import Estimate, PairedBootstrap, percentile_interval, supported
from pipeline.metrics.evaluation_set import require_same_evaluation
from pipeline.metrics.per_query import read_per_query
from pipeline.reporting.collect import MetricsRecord

# The headline metrics compared between methods: label-wise NDCG and mAP (papers/000, 001), rsum (002, 003).
DIFFERENCE_KEYS = {"ndcg_ave": "NDCG@k Ave", "map_ave": "mAP Ave", "rsum": "rsum"}


@dataclass
class DatasetIntervals:
    """The bootstrap of one dataset and the per-query arrays of its methods."""

    dataset: str
    bootstrap: PairedBootstrap
    arrays: dict[str, dict] = field(default_factory=dict)  # method -> per-query arrays
    _cache: dict = field(default_factory=dict)  # (method, key) -> (point, [resamples] values)

    def _resampled(self, method: str, key: str) -> tuple[float, np.ndarray]:
        if (method, key) not in self._cache:
            arrays = self.arrays[method]
            self._cache[(method, key)] = (self.bootstrap.point(arrays, key), self.bootstrap.distribution(arrays, key))
        return self._cache[(method, key)]

    def estimates(self, method: str, keys: list[str]) -> dict[str, Estimate]:
        """Each metric of one method with its interval (one pass over the resamples for all of them)."""
        arrays = self.arrays[method]
        points, dists = self.bootstrap.points(arrays, keys), self.bootstrap.distributions(arrays, keys)
        self._cache.update({(method, k): (points[k], dists[k]) for k in keys})
        return {k: Estimate(points[k], *percentile_interval(dists[k])) for k in keys}

    def difference(self, method: str, other: str, key: str) -> Estimate:
        """`method` minus `other` on metric `key`, with the interval of the paired differences."""
        (a, dist_a), (b, dist_b) = self._resampled(method, key), self._resampled(other, key)
        return Estimate(a - b, *percentile_interval(dist_a - dist_b))


def interval_keys(values: dict) -> list[str]:
    """The metrics of a record that get an interval (prefixed protocols included)."""
    keys = []
    for key, value in values.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        plain = key.split("_", 1)[1] if key.startswith(("coco1k_", "coco5k_", "all_")) else key
        if supported(plain):
            keys.append(key)
    return keys


def dataset_intervals(records: list[MetricsRecord], per_query_dir: str | Path, resamples: int,
                      seed: int) -> dict[str, DatasetIntervals]:
    """Attach `record.intervals` to every record that has a per-query file; returns the bootstraps."""
    per_query_dir = Path(per_query_dir)
    found: dict[str, DatasetIntervals] = {}
    for record in records:
        path = per_query_dir / record.dataset / f"{record.method}.npz"
        if not path.is_file():
            continue
        arrays = read_per_query(path)
        require_same_evaluation(record.path, record.values, path, arrays)
        if record.dataset not in found:
            found[record.dataset] = DatasetIntervals(record.dataset, PairedBootstrap.for_arrays(arrays, resamples, seed))
        intervals = found[record.dataset]
        intervals.bootstrap.check(arrays, str(path))
        intervals.arrays[record.method] = arrays
        try:
            record.intervals = intervals.estimates(record.method, interval_keys(record.values))
        except ValueError as exc:
            raise type(exc)(f"{path}: {exc}") from exc
    return found


def fmt_difference(estimate: Estimate, digits: int = 1) -> str:
    """`+1.2 [0.3, 2.1]`; bold when the interval excludes 0 (the sign of the difference is settled)."""
    value = f"{estimate.value:+.{digits}f}"
    if estimate.excludes(0.0):
        value = f"**{value}**"
    return f"{value} [{estimate.low:+.{digits}f}, {estimate.high:+.{digits}f}]"


def differences_table(intervals: DatasetIntervals, reference: str, records: list[MetricsRecord]) -> str | None:
    """Markdown table: every other method of the dataset minus `reference`, or None without the reference."""
    from pipeline.reporting.tables import markdown_table

    if reference not in intervals.arrays:
        return None
    ref_values = next(r.values for r in records if r.dataset == intervals.dataset and r.method == reference)
    keys = [k for k in DIFFERENCE_KEYS if k in ref_values]
    rows = []
    for record in records:
        if record.dataset != intervals.dataset or record.method == reference or record.method not in intervals.arrays:
            continue
        rows.append([f"`{record.method}`"] + [fmt_difference(intervals.difference(record.method, reference, k))
                                              if k in record.values else "–" for k in keys])
    if not rows or not keys:
        return None
    return markdown_table(["Method"] + [f"{DIFFERENCE_KEYS[k]}: method − `{reference}`" for k in keys], rows)
