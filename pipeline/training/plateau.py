"""When has a validation curve stopped improving? One rule for the loop's early stopping and the report.

The training loop stops a run after `train.patience` consecutive epochs that do not improve its validation
curve, and the report flags a curve as still rising when its last epoch improved it; both read this module,
so a run stopped by patience is "converged" in the report by construction, and a run that hit its epoch cap
while still gaining is flagged.

An epoch improves the curve when its value exceeds the best value of every earlier epoch by more than the
tolerance: 0.2% of the metric's range, i.e. 0.2 points of NDCG / mAP / R@K (0-100) and 1.2 points of rsum
(0-600). The best is the running maximum (a gain within the tolerance raises it without counting as an
improvement), so a curve creeping up by less than the tolerance an epoch is flat. Torch-free.
"""
from __future__ import annotations

import math

TOLERANCE = 0.002                        # fraction of the metric's range
METRIC_RANGE = {"val_rsum": 600.0}       # every other validation metric is on a 0-100 scale
DEFAULT_RANGE = 100.0


def tolerance(key: str) -> float:
    """The tolerance on history key `key` (`val_rsum`, `val_ndcg_ave`, ...), in the metric's units."""
    return TOLERANCE * METRIC_RANGE.get(key, DEFAULT_RANGE)


def improves(value: float, best: float, tol: float) -> bool:
    """Whether `value` improves a curve whose best earlier value is `best` (-inf: no earlier value)."""
    return value > best + tol


def step(best: float, flat: int, value: float, tol: float) -> tuple[float, int]:
    """The curve's `(best, flat epochs in a row)` after one more epoch of `value`."""
    return max(best, value), 0 if improves(value, best, tol) else flat + 1


def stop_epoch(values: list[float], tol: float, patience: int, start: int = 0) -> int | None:
    """The 1-based epoch after which patience `patience` stops a run with validation curve `values`, or None
    when it trains on through them (patience 0: never). Epochs up to `start` are not counted as flat (a
    method's first stage, which must run whole); they still set the best."""
    best, flat = -math.inf, 0
    for epoch, value in enumerate(values, start=1):
        best, flat = step(best, flat, value, tol)
        if epoch <= start:
            flat = 0
        elif patience > 0 and flat >= patience:
            return epoch
    return None
