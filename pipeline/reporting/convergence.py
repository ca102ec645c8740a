"""Did each method's validation curve converge within its epochs? (issue 14 item 5, issue 27)

A run ends when `train.patience` epochs in a row did not improve its validation curve, or at its epoch cap
(`train.epochs`). A method whose validation metric was still climbing at its last epoch is measured at how
far it got, not at what it reaches, so the report flags it: per (dataset, method), from its training history
(`reports/training/<ds>/<method>.json`), on its validation metric (the one `train.select_metric: auto`
selects on; a method whose recipe selects on the training loss, such as `ss`'s official one, is judged
on that validation curve too):

- `converged`: the last epoch did not improve the curve (`pipeline.training.plateau`: it did not beat the
  best earlier epoch by more than the tolerance), so it plateaued or peaked earlier; a run stopped by
  patience is converged by construction, since the loop judges the same curve by the same rule;
- `still rising`: the last epoch improved the curve (it hit its epoch cap while still gaining);
- `one epoch`: a single validation point, so the curve's shape cannot be told;
- `closed form`: one fit, no curve (CCA, LCFS, JFSSL).

Tolerance (`pipeline.training.plateau`): 0.2% of the metric's range, i.e. 0.2 points of NDCG / mAP / R@K
(0-100) and 1.2 points of rsum (0-600). It is well below the seed-to-seed spread on shapes (std 0.73 of
`ss`'s test NDCG Ave over 3 seeds), which keeps the flag conservative: a curve counts as converged only when its last epoch added (almost)
nothing. The metric is the one the loop's `train.select_metric: auto` selects on (`selection_metric`).
"""
from __future__ import annotations

from dataclasses import dataclass

from pipeline.reporting.plots import FALLBACK_METRIC, FAMILY_METRIC, _curve, _family, is_closed_form_fit
from pipeline.reporting.tables import RISING_MARK
from pipeline.training.plateau import improves, tolerance

CONVERGED, RISING, ONE_EPOCH, CLOSED_FORM = "converged", "still rising", "one epoch", "closed form"


@dataclass(frozen=True)
class Convergence:
    method: str
    status: str
    metric: str                   # history key of the selection metric ("" for a closed-form fit)
    epochs: int                   # validation points on the curve
    best_epoch: int | None        # the epoch with the best value (the first of ties, as the loop keeps it)
    best: float | None
    last_gain: float | None       # last value minus the best earlier value (None: fewer than two points)
    tolerance: float | None


def selection_metric(method: str, history: list[dict], select_metric: str = "auto") -> str:
    """The history key of the metric that selected `method`'s model: `val_<select_metric>` when one is
    set, else the family's (NDCG for label-wise methods, rsum for instance-level ones, as the training
    loop's "auto"), rsum when the history has no NDCG."""
    if select_metric != "auto":
        return f"val_{select_metric}"
    key = FAMILY_METRIC.get(_family(method), FALLBACK_METRIC)[0]
    return key if _curve(history, key)[0] else FALLBACK_METRIC[0]


def convergence(method: str, history: list[dict], select_metric: str = "auto") -> Convergence:
    """The status of one training history (see the module docstring)."""
    if history and is_closed_form_fit(history):
        return Convergence(method, CLOSED_FORM, "", 0, None, None, None, None)
    key = selection_metric(method, history, select_metric)
    epochs, values = _curve(history, key)
    if not values:
        return Convergence(method, CLOSED_FORM, "", 0, None, None, None, None)
    tol = tolerance(key)
    best_i = max(range(len(values)), key=lambda i: (values[i], -i))
    selected, best = epochs[best_i], values[best_i]
    if len(values) == 1:
        return Convergence(method, ONE_EPOCH, key, 1, selected, best, None, tol)
    gain = values[-1] - max(values[:-1])
    status = RISING if improves(values[-1], max(values[:-1]), tol) else CONVERGED
    return Convergence(method, status, key, len(values), selected, best, gain, tol)


def dataset_convergence(histories: dict[str, list[dict]], select_metric: str = "auto") -> list[Convergence]:
    """One status per method of a dataset, sorted by method name."""
    return [convergence(m, h, select_metric) for m, h in sorted(histories.items()) if h]


def rising_methods(statuses: dict[str, list[Convergence]]) -> set[str]:
    """Methods still rising at their last epoch on at least one dataset."""
    return {c.method for rows in statuses.values() for c in rows if c.status == RISING}


def _num(value, digits: int = 2, signed: bool = False) -> str:
    return "-" if value is None else f"{value:{'+' if signed else ''}.{digits}f}"


def convergence_markdown(statuses: dict[str, list[Convergence]], epochs_param: str = "train.epochs") -> list[str]:
    """The report's "Convergence on <dataset>" sections: the methods still rising, then every status."""
    out = []
    for dataset, rows in sorted(statuses.items()):
        rising = [c.method for c in rows if c.status == RISING]
        out += [f"## Convergence on {dataset}", "",
                "Each method's validation curve (NDCG for label-wise methods, rsum for instance-level ones). `still rising` "
                f"({RISING_MARK} in the tables above): the last epoch is the best and beat every earlier one by "
                "more than the tolerance (0.2% of the metric's range: 0.2 NDCG / R@K points, 1.2 rsum points), so "
                f"the run hit its epoch cap (`{epochs_param}`) still gaining, so the number measures how far "
                "the method got, not what it reaches; `converged`: it plateaued or peaked earlier (a run "
                "stopped by `train.patience` always is: the loop judges the same curve by the same rule). "
                "Last gain: last epoch minus the best earlier one.", ""]
        out += [f"Still rising: {', '.join(f'`{m}`' for m in rising)}." if rising
                else "No method was still rising at its last epoch.", ""]
        out += ["| method | status | metric | epochs | best epoch | best | last gain |",
                "|---|---|---|---|---|---|---|"]
        out += [f"| `{c.method}` | {c.status} | {c.metric.removeprefix('val_') or '-'} | {c.epochs or '-'} | "
                f"{c.best_epoch or '-'} | {_num(c.best)} | {_num(c.last_gain, signed=True)} |" for c in rows]
        out += [""]
    return out
