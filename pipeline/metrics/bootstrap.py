"""95% bootstrap intervals over test queries, paired across the methods of a dataset.

The resampled unit is the test image with its queries: its image query and the caption queries of its
captions (`unit_*` of a per-query file, `pipeline.metrics.per_query`). Captions of one image are not
independent queries, and the average of the two directions needs both resampled together, so the
image is the unit. One `PairedBootstrap` per dataset draws `resamples` x `n_units` image indices once
from a seeded generator and uses them for every method: the difference of two methods is then
computed resample by resample and gets its own interval (a paired bootstrap), which is narrower than
comparing two separate intervals when the methods fail on the same hard queries.

Vectorised: each resample is a row of unit counts (how often each image was drawn); a query's weight
is its unit's count, so every mean over every resample is one matrix product `weights @ values`,
medians come from weighted cumulative counts, Micro-F1 from resampled (TP, FP, FN) sums. Intervals
are percentile intervals (2.5th and 97.5th of the resampled statistic). The point estimate is the
statistic on the original queries, i.e. the metric of the metrics file.

Statistics (keys as in the metrics dict; a `<protocol>_` prefix reads that protocol's arrays):
`ndcg|map|mapk _ i2t|t2i|ave`, `r<K>_<d>`, `medr_<d>`, `meanr_<d>`, `rsum`, `f1_image`, `f1_text`.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from pipeline.metrics.per_query import DIRECTIONS, PerQueryError, protocol_prefixes
from pipeline.metrics.schema import PROTOCOLS

LEVEL = 0.95
_MEAN = {"ndcg": "ndcg", "map": "ap", "mapk": "apk"}
_PROTOCOL_PREFIX = re.compile(rf"^(?:{'|'.join(PROTOCOLS)})_")
_KEY = re.compile(r"^(?:(?P<mean>ndcg|map|mapk)_(?P<md>i2t|t2i|ave)|r(?P<k>\d+)_(?P<rd>i2t|t2i)"
                  r"|(?P<rank>medr|meanr)_(?P<kd>i2t|t2i)|(?P<rsum>rsum)|(?P<f1>f1_image|f1_text))$")


@dataclass(frozen=True)
class Estimate:
    """A point estimate with its percentile interval."""

    value: float
    low: float
    high: float

    def excludes(self, x: float = 0.0) -> bool:
        """True when `x` lies outside the interval (for a difference: the sign is settled)."""
        return not self.low <= x <= self.high


def resample_indices(n_units: int, resamples: int, seed: int) -> np.ndarray:
    """`[resamples, n_units]` unit indices drawn with replacement by `numpy.random.default_rng(seed)`."""
    if n_units < 1 or resamples < 1:
        raise ValueError(f"bootstrap: need at least one unit and one resample, got {n_units} units and "
                         f"{resamples} resamples")
    return np.random.default_rng(seed).integers(0, n_units, size=(resamples, n_units))


def unit_counts(indices: np.ndarray, n_units: int) -> np.ndarray:
    """`[resamples, n_units]` float64: how often each unit was drawn in each resample (one bincount)."""
    rows = indices.shape[0]
    flat = (indices + n_units * np.arange(rows)[:, None]).ravel()
    return np.bincount(flat, minlength=rows * n_units).reshape(rows, n_units).astype(np.float64)


def supported(key: str) -> bool:
    """Whether `key` (without protocol prefix) is a statistic the bootstrap knows."""
    return _KEY.match(key) is not None


class PairedBootstrap:
    """The resamples of one dataset's test set, shared by all its methods.

    `units` maps each protocol prefix ("" first) to `(unit_i2t, unit_t2i, n_units)`; build it from
    one per-query file with `PairedBootstrap.for_arrays`. `indices` replaces the seeded draw (tests).
    """

    def __init__(self, units: dict[str, tuple[np.ndarray, np.ndarray, int]], resamples: int = 1000,
                 seed: int = 0, indices: dict[str, np.ndarray] | None = None):
        self.units = {p: (np.asarray(a), np.asarray(b), int(n)) for p, (a, b, n) in units.items()}
        self.indices, self._weights, self._totals = {}, {}, {}
        for i, (prefix, (unit_i2t, unit_t2i, n_units)) in enumerate(sorted(self.units.items())):
            drawn = indices[prefix] if indices is not None else resample_indices(n_units, resamples, seed + i)
            self.indices[prefix] = drawn
            counts = unit_counts(drawn, n_units)
            weights = {"i2t": counts[:, unit_i2t], "t2i": counts[:, unit_t2i]}
            self._weights[prefix] = weights
            self._totals[prefix] = {d: w.sum(1) for d, w in weights.items()}

    @classmethod
    def for_arrays(cls, arrays: dict, resamples: int = 1000, seed: int = 0) -> "PairedBootstrap":
        units = {p: (arrays[f"{p}unit_i2t"], arrays[f"{p}unit_t2i"], int(arrays[f"{p}n_units"]))
                 for p in protocol_prefixes(arrays)}
        return cls(units, resamples, seed)

    def check(self, arrays: dict, where: str) -> None:
        """A per-query file must have the units the resamples were drawn for (same test set)."""
        for prefix, (unit_i2t, unit_t2i, n_units) in self.units.items():
            same = (f"{prefix}n_units" in arrays and int(arrays[f"{prefix}n_units"]) == n_units
                    and np.array_equal(arrays.get(f"{prefix}unit_i2t"), unit_i2t)
                    and np.array_equal(arrays.get(f"{prefix}unit_t2i"), unit_t2i))
            if not same:
                raise PerQueryError(f"{where}: its test queries (protocol '{prefix.rstrip('_') or 'first'}') differ "
                                    "from the other methods' of this dataset; the paired bootstrap needs the same "
                                    "test set for every method (re-run `xmr evaluate` for all of them)")

    def distributions(self, arrays: dict, keys) -> dict[str, np.ndarray]:
        """`{key: [resamples] values}` of several statistics of one method (one matrix product per
        direction serves them all)."""
        out = {}
        for prefix, group in self._by_prefix(keys).items():
            values = _statistics(arrays, prefix, list(group.values()), self._weights[prefix], self._totals[prefix])
            out.update({key: values[plain] for key, plain in group.items()})
        return out

    def points(self, arrays: dict, keys) -> dict[str, float]:
        """The statistics on the original queries (every unit once): the metrics file's values."""
        out = {}
        for prefix, group in self._by_prefix(keys).items():
            unit_i2t, unit_t2i, _ = self.units[prefix]
            weights = {"i2t": np.ones((1, len(unit_i2t))), "t2i": np.ones((1, len(unit_t2i)))}
            totals = {d: w.sum(1) for d, w in weights.items()}
            values = _statistics(arrays, prefix, list(group.values()), weights, totals)
            out.update({key: float(values[plain][0]) for key, plain in group.items()})
        return out

    def distribution(self, arrays: dict, key: str) -> np.ndarray:
        """`[resamples]` values of statistic `key` over the resamples."""
        return self.distributions(arrays, [key])[key]

    def point(self, arrays: dict, key: str) -> float:
        return self.points(arrays, [key])[key]

    def estimates(self, arrays: dict, keys) -> dict[str, Estimate]:
        """Each statistic of one method with its interval."""
        dists, points = self.distributions(arrays, keys), self.points(arrays, keys)
        return {k: Estimate(points[k], *percentile_interval(dists[k])) for k in keys}

    def estimate(self, arrays: dict, key: str) -> Estimate:
        """Statistic `key` of one method with its interval."""
        return self.estimates(arrays, [key])[key]

    def difference(self, a: dict, b: dict, key: str) -> Estimate:
        """Method a minus method b on statistic `key`, with the interval of the paired differences."""
        diff = self.distribution(a, key) - self.distribution(b, key)
        return Estimate(self.point(a, key) - self.point(b, key), *percentile_interval(diff))

    def _by_prefix(self, keys) -> dict[str, dict[str, str]]:
        """`{per-query prefix: {key as asked: plain key}}`."""
        groups: dict[str, dict[str, str]] = {}
        for key in keys:
            prefix, plain = self._split(key)
            groups.setdefault(prefix, {})[key] = plain
        return groups

    def _split(self, key: str) -> tuple[str, str]:
        """`(per-query prefix, plain key)`. The metrics file names its first protocol in the keys
        (`coco5k_ndcg_ave`, `pipeline.training.scoring.metrics_file`) where the per-query file keeps it plain."""
        for prefix in sorted(self.units, key=len, reverse=True):
            if prefix and key.startswith(prefix):
                return prefix, key[len(prefix):]
        named = _PROTOCOL_PREFIX.match(key)
        return "", key[named.end():] if named else key


def percentile_interval(values: np.ndarray, level: float = LEVEL) -> tuple[float, float]:
    """The central `level` percentile interval (resamples where the statistic is undefined are left out)."""
    tail = 100.0 * (1.0 - level) / 2.0
    low, high = np.nanpercentile(values, [tail, 100.0 - tail])
    return float(low), float(high)


def _values(arrays: dict, name: str) -> np.ndarray:
    if name not in arrays:
        raise PerQueryError(f"per-query array '{name}' missing (the evaluate stage writes it for this metric)")
    return np.asarray(arrays[name])


def _parse(key: str) -> re.Match:
    m = _KEY.match(key)
    if m is None:
        raise ValueError(f"bootstrap: no interval for metric '{key}'")
    return m


def _columns(key: str) -> list[tuple[str, str]]:
    """The `(direction, column)` sums a statistic needs (medians need none: they sort)."""
    m = _parse(key)
    if m["mean"]:
        directions = DIRECTIONS if m["md"] == "ave" else (m["md"],)
        return [(d, _MEAN[m["mean"]]) for d in directions]
    if m["k"]:
        return [(m["rd"], f"hits{m['k']}")]
    if m["rank"] == "meanr":
        return [(m["kd"], "rank")]
    if m["rsum"]:
        return [(d, f"hits{k}") for d in DIRECTIONS for k in (1, 5, 10)]
    if m["f1"]:
        d = "i2t" if m["f1"] == "f1_image" else "t2i"
        return [(d, f"{m['f1']}:{j}") for j in range(3)]
    return []


def _column(arrays: dict, prefix: str, d: str, name: str) -> np.ndarray:
    if name.startswith("hits"):
        return _values(arrays, f"{prefix}rank_{d}") < int(name[4:])
    if name.startswith("f1_"):
        key, j = name.split(":")
        return _values(arrays, prefix + key)[:, int(j)]
    return _values(arrays, f"{prefix}{name}_{d}")


def _statistics(arrays: dict, prefix: str, keys: list[str], weights: dict, totals: dict) -> dict[str, np.ndarray]:
    """Statistics `keys` (without prefix) for each row of `weights` (`{direction: [rows, queries]}`).

    Every column sum a statistic needs is gathered first, so each direction costs one matrix product
    `weights @ columns` (the weights, the large operand, are read once)."""
    needed = {d: [] for d in DIRECTIONS}
    for key in keys:
        for d, name in _columns(key):
            if name not in needed[d]:
                needed[d].append(name)
    sums = {}
    for d, names in needed.items():
        if names:
            matrix = np.stack([_column(arrays, prefix, d, n).astype(np.float64) for n in names], axis=1)
            product = weights[d] @ matrix
            sums.update({(d, n): product[:, i] for i, n in enumerate(names)})

    def mean(d: str, name: str) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            return sums[(d, name)] / totals[d]

    def statistic(key: str) -> np.ndarray:
        m = _parse(key)
        if m["mean"]:
            if m["md"] == "ave":
                return (statistic(f"{m['mean']}_i2t") + statistic(f"{m['mean']}_t2i")) / 2.0
            return mean(m["md"], _MEAN[m["mean"]]) * 100.0
        if m["k"]:
            return mean(m["rd"], f"hits{m['k']}") * 100.0
        if m["rank"] == "meanr":
            return mean(m["kd"], "rank") + 1.0
        if m["rank"] == "medr":
            d = m["kd"]
            return np.floor(_weighted_median(_values(arrays, f"{prefix}rank_{d}"), weights[d])) + 1.0
        if m["rsum"]:
            return sum(statistic(f"r{k}_{d}") for d in DIRECTIONS for k in (1, 5, 10))
        d = "i2t" if m["f1"] == "f1_image" else "t2i"
        tp, fp, fn = (sums[(d, f"{m['f1']}:{j}")] for j in range(3))
        denominator = 2.0 * tp + fp + fn
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(denominator > 0, 2.0 * tp / np.where(denominator > 0, denominator, 1.0), 0.0)

    return {key: statistic(key) for key in keys}


def _weighted_median(values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Per row of `weights` (integer counts), `numpy.median` of the sample holding each value that often.

    Queries with equal values are pooled first (ranks repeat a lot), so the cumulative counts run over
    the distinct values only."""
    order = np.argsort(values, kind="stable")
    ordered = values[order]
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
    distinct = ordered[starts].astype(np.float64)
    cumulative = np.cumsum(np.add.reduceat(weights[:, order], starts, axis=1), axis=1)
    n = cumulative[:, -1]
    last = len(distinct) - 1
    lower = np.minimum((cumulative <= ((n - 1) // 2)[:, None]).sum(1), last)
    upper = np.minimum((cumulative <= (n // 2)[:, None]).sum(1), last)
    return (distinct[lower] + distinct[upper]) / 2.0


def reference_statistic(arrays: dict, rows: dict[str, np.ndarray], key: str) -> float:
    """One resample the slow way, the definition the vectorised path is checked against (tests, bench):
    `rows` holds the query indices of the drawn images per direction (with repeats); each metric is
    computed from those queries by the library's per-sample code."""
    from pipeline.metrics.classification import f1_from_counts
    from pipeline.metrics.recall import recall_summary, rsum

    recall = {**recall_summary(arrays["rank_i2t"][rows["i2t"]], (1, 5, 10, 20, 50, 100), "i2t"),
              **recall_summary(arrays["rank_t2i"][rows["t2i"]], (1, 5, 10, 20, 50, 100), "t2i")}
    recall["rsum"] = rsum(recall)
    if key in recall:
        return recall[key]
    if key.startswith("f1_"):
        counts = arrays[key][rows["i2t" if key == "f1_image" else "t2i"]].sum(0)
        return f1_from_counts(*(int(v) for v in counts))
    name, d = key.rsplit("_", 1)
    name = _MEAN[name]
    if d == "ave":
        return (100 * arrays[f"{name}_i2t"][rows["i2t"]].mean() + 100 * arrays[f"{name}_t2i"][rows["t2i"]].mean()) / 2
    return 100 * arrays[f"{name}_{d}"][rows[d]].mean()
