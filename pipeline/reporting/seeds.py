"""A seed sweep summarised: mean ± std over seeds (n shown) and a t interval for differences.

The bootstrap of `intervals.py` measures test-set noise for one trained model; another seed gives
another model. Over seeds, a metric's spread is its sample standard deviation (n - 1), and the 95%
interval of a mean (or of a paired mean difference, seed by seed) is `mean ± t(0.975, n-1) * std / sqrt(n)`.
With 3 seeds t is 4.30, so only large, consistent differences exclude 0: that is the honest width.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from scipy.stats import t as student_t

from pipeline.reporting.sweep import ExperimentState

LEVEL = 0.95
# The headline metrics summarised over seeds (the keys of the metrics files).
SEED_KEYS = {"ndcg_ave": "NDCG Ave", "map_ave": "mAP Ave", "rsum": "rsum", "f1_image": "F1 image"}


@dataclass(frozen=True)
class SeedSummary:
    """Mean, sample std and the t interval of the mean over `n` seeds (low = high = mean when n < 2)."""

    mean: float
    std: float
    n: int
    low: float
    high: float


def summarise(values: list[float]) -> SeedSummary:
    n = len(values)
    if n == 0:
        raise ValueError("seed summary: no values")
    mean = sum(values) / n
    if n < 2:
        return SeedSummary(mean, 0.0, n, mean, mean)
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    half = float(student_t.ppf(0.5 + LEVEL / 2, n - 1)) * std / math.sqrt(n)
    return SeedSummary(mean, std, n, mean - half, mean + half)


def metric_over_seeds(runs: dict[int, ExperimentState], dataset: str, method: str, key: str) -> SeedSummary | None:
    """`key` of one method over the seeds of a sweep, or None when a run lacks it."""
    values = [(run.metrics.get((dataset, method)) or {}).get(key) for run in runs.values()]
    if not runs or any(not isinstance(v, (int, float)) or isinstance(v, bool) for v in values):
        return None
    return summarise([float(v) for v in values])


def difference_over_seeds(runs: dict[int, ExperimentState], dataset: str, method: str, other: str,
                          key: str) -> SeedSummary | None:
    """`method` minus `other` seed by seed (paired by seed), summarised; None when a run lacks either."""
    a, b = metric_over_seeds(runs, dataset, method, key), metric_over_seeds(runs, dataset, other, key)
    if a is None or b is None:
        return None
    return summarise([float(run.metrics[(dataset, method)][key]) - float(run.metrics[(dataset, other)][key])
                      for run in runs.values()])


def fmt_seed(summary: SeedSummary, digits: int = 2) -> str:
    return f"{summary.mean:.{digits}f} ± {summary.std:.{digits}f} (n={summary.n})"


def seed_table(runs: dict[int, ExperimentState], dataset: str) -> str | None:
    """Markdown: every method of `dataset` in the sweep, mean ± std over seeds for each headline metric."""
    from pipeline.reporting.tables import markdown_table

    methods = sorted({m for run in runs.values() for d, m in run.metrics if d == dataset})
    keys = [k for k in SEED_KEYS if any(metric_over_seeds(runs, dataset, m, k) for m in methods)]
    if not methods or not keys:
        return None
    rows = []
    for method in methods:
        cells = [metric_over_seeds(runs, dataset, method, k) for k in keys]
        rows.append([f"`{method}`"] + [fmt_seed(c, 3 if k.startswith("f1") else 2) if c else "–"
                                       for k, c in zip(keys, cells)])
    return markdown_table(["Method"] + [SEED_KEYS[k] for k in keys], rows)
