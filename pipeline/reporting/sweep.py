"""The lambda sweep: NDCG against `lambda` from `dvc exp show --json` (papers/001 Figure 3).

`dvc exp show --json` prints a list of experiment states: `{rev, name, data, error, experiments}`,
where `data` holds `params` (`{"params.yaml": {"data": {...}}}`) and `metrics`
(`{"reports/metrics/<ds>/<method>.json": {"data": {...}}}`) and `experiments` lists ranges whose
`revs` are further states. Every state with the parameter and NDCG metrics gives one point per
metrics file; the first point seen for a (dataset, method, lambda) is kept (the workspace comes
first in dvc's output).
"""
from __future__ import annotations

import re
from pathlib import PurePosixPath

from pipeline.reporting.collect import MetricsRecord, ReportInputError

METRICS_PATH = re.compile(r"(?:^|/)reports/metrics/([^/]+)/([^/]+)\.json$")
NDCG_KEYS = ("ndcg_i2t", "ndcg_t2i", "ndcg_ave")


def _param(params: dict, name: str):
    """A possibly dotted parameter (`lambda`, `train.lr`) from a params mapping, or None."""
    value = params
    for part in name.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def sweep_points(exp_show, param: str = "lambda", params_file: str = "params.yaml") -> list[dict]:
    """Points `{experiment, rev, <param>, dataset, method, ndcg_i2t, ndcg_t2i, ndcg_ave}`."""
    if not isinstance(exp_show, list):
        raise ReportInputError("experiments: expected the list printed by `dvc exp show --json`, "
                               f"got {type(exp_show).__name__}")
    points, seen = [], set()

    def visit(state, where: str) -> None:
        if not isinstance(state, dict) or "rev" not in state:
            raise ReportInputError(f"experiments: {where} is not an experiment state (no 'rev')")
        data = state.get("data") or {}
        value = _param((data.get("params") or {}).get(params_file, {}).get("data") or {}, param)
        if not state.get("error") and isinstance(value, (int, float)) and not isinstance(value, bool):
            for path, result in sorted((data.get("metrics") or {}).items()):
                match = METRICS_PATH.search(str(PurePosixPath(path)))
                metrics = (result or {}).get("data")
                if not match or not isinstance(metrics, dict) or not all(k in metrics for k in NDCG_KEYS):
                    continue
                key = (match.group(1), match.group(2), float(value))
                if key in seen:
                    continue
                seen.add(key)
                rev = str(state["rev"])
                points.append({"experiment": state.get("name") or (rev if rev == "workspace" else rev[:7]), "rev": rev,
                               param: float(value), "dataset": key[0], "method": key[1],
                               **{k: float(metrics[k]) for k in NDCG_KEYS}})
        for i, exp_range in enumerate(state.get("experiments") or []):
            for j, child in enumerate((exp_range or {}).get("revs") or []):
                visit(child, f"{where}.experiments[{i}].revs[{j}]")

    for i, state in enumerate(exp_show):
        visit(state, f"entry {i}")
    return points


def workspace_points(records: list[MetricsRecord], value: float, param: str = "lambda") -> list[dict]:
    """The current results as sweep points at the current parameter value."""
    return [{"experiment": "workspace", "rev": "workspace", param: float(value), "dataset": r.dataset,
             "method": r.method, **{k: float(r.values[k]) for k in NDCG_KEYS}}
            for r in records if all(k in r.values for k in NDCG_KEYS)]


def merge_points(first: list[dict], second: list[dict], param: str = "lambda") -> list[dict]:
    """`first`, then the points of `second` at a (dataset, method, value) not yet present; sorted."""
    seen = {(p["dataset"], p["method"], p[param]) for p in first}
    merged = first + [p for p in second if (p["dataset"], p["method"], p[param]) not in seen]
    return sorted(merged, key=lambda p: (p["dataset"], p["method"], p[param]))
