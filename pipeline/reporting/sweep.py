"""Sweeps from `dvc exp show --json`: the lambda sweep (papers/001 Figure 3) and the seed sweep.

`dvc exp show --json` prints a list of experiment states: `{rev, name, data, error, experiments}`,
where `data` holds `params` (`{"params.yaml": {"data": {...}}}`) and `metrics`
(`{"reports/metrics/<ds>/<method>.json": {"data": {...}}}`) and `experiments` lists ranges whose
`revs` are further states. The first state (the workspace) is the baseline. Every other state is
placed by the params in which it differs from the baseline: none (a commit of the same params), only
`lambda` (the lambda sweep) or only `seed` (the seed sweep). A state that differs in anything else,
or in both, mixes two sweeps: it is refused, naming the params, since its numbers would not measure
what the sweep varies. The `report` section is ignored in that comparison (only the report reads it).
A state that dvc marks with an error, or that lacks a metrics file the baseline has, is a partly
failed sweep and is refused too.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import PurePosixPath

from pipeline.reporting.collect import MetricsRecord, ReportInputError

METRICS_PATH = re.compile(r"(?:^|/)reports/metrics/([^/]+)/([^/]+)\.json$")
NDCG_KEYS = ("ndcg_i2t", "ndcg_t2i", "ndcg_ave")
SWEPT = ("lambda", "seed")
IGNORED_SECTIONS = ("report",)


class SweepError(ReportInputError):
    """The experiments file mixes sweeps, or a sweep is empty or partly failed."""


@dataclass
class ExperimentState:
    """One state of `dvc exp show --json`: its flattened params and its metrics files."""

    name: str
    rev: str
    params: dict  # dotted key -> value
    metrics: dict = field(default_factory=dict)  # (dataset, method) -> metrics dict
    error: str = ""
    status: str = ""  # the queue's executor state of its range: success, queued, running, failed ("" unknown)


@dataclass
class Sweeps:
    """The states of an experiments file placed by what they vary."""

    baseline: ExperimentState
    by_param: dict[str, list[ExperimentState]]  # "lambda" / "seed" -> states (baseline excluded)
    source: str = "experiments file"


def flatten_params(value, prefix: str = "") -> dict:
    if not isinstance(value, dict):
        return {prefix[:-1]: value}
    out = {}
    for key, item in value.items():
        out.update(flatten_params(item, f"{prefix}{key}."))
    return out


def read_states(exp_show, params_file: str = "params.yaml") -> list[ExperimentState]:
    """Every state of a `dvc exp show --json` list, depth first (the workspace first)."""
    if not isinstance(exp_show, list):
        raise ReportInputError("experiments: expected the list printed by `dvc exp show --json`, "
                               f"got {type(exp_show).__name__}")
    states = []

    def visit(state, where: str, status: str = "") -> None:
        if not isinstance(state, dict) or "rev" not in state:
            raise ReportInputError(f"experiments: {where} is not an experiment state (no 'rev')")
        data = state.get("data") or {}
        params = (data.get("params") or {}).get(params_file, {}).get("data") or {}
        metrics = {}
        for path, result in sorted((data.get("metrics") or {}).items()):
            match = METRICS_PATH.search(str(PurePosixPath(path)))
            values = (result or {}).get("data")
            if match and isinstance(values, dict):
                metrics[(match.group(1), match.group(2))] = values
        rev = str(state["rev"])
        error = state.get("error") or data.get("error") or ""
        states.append(ExperimentState(state.get("name") or data.get("name") or (rev if rev == "workspace" else rev[:7]),
                                      rev, flatten_params(params) if params else {}, metrics,
                                      (error.get("msg") or str(error)) if isinstance(error, dict) else str(error),
                                      status))
        for i, exp_range in enumerate(state.get("experiments") or []):
            executor = (exp_range or {}).get("executor") or {}
            for j, child in enumerate((exp_range or {}).get("revs") or []):
                visit(child, f"{where}.experiments[{i}].revs[{j}]", str(executor.get("state") or ""))

    for i, state in enumerate(exp_show):
        visit(state, f"entry {i}")
    return states


def differing_params(params: dict, baseline: dict) -> dict[str, tuple]:
    """Dotted keys whose values differ (`report.*` ignored) -> (baseline value, this value)."""
    keys = {k for k in set(params) | set(baseline) if k.split(".", 1)[0] not in IGNORED_SECTIONS}
    return {k: (baseline.get(k), params.get(k)) for k in sorted(keys) if baseline.get(k) != params.get(k)}


# Params sections keyed by method or dataset: a key under them bears on the results of that method or
# dataset only (dvc.yaml's stages track them so). `run` and `datasets` choose what runs, not its numbers.
_BY_METHOD = ("methods",)
_BY_DATASET = ("data", "per_dataset", "extract.detectors", "detector.datasets")
_CHOOSING = ("run", "datasets")
# Keys that change how a result is computed, never what it is: where and how downloads are fetched and
# unpacked (their content is checked by hash), and whether features are held in memory or streamed.
_NO_BEARING = ("download", "train.cache_features_gb")


def _no_bearing(key: str) -> bool:
    return any(key == k or key.startswith(k + ".") for k in _NO_BEARING)


def bears_on(key: str, datasets: set[str], methods: set[str]) -> bool:
    """Whether params key `key` (dotted) can change a result of `methods` on `datasets`: a section of
    another method (`methods.<m>`), of another dataset (`data.<ds>`, `per_dataset.<ds>`, including that
    dataset's method settings, `extract.detectors.<ds>`), or the run lists cannot; every other key can."""
    if key.split(".", 1)[0] in _CHOOSING or _no_bearing(key):
        return False
    for section in _BY_METHOD:
        if key.startswith(section + "."):
            return key[len(section) + 1:].split(".", 1)[0] in methods
    for section in _BY_DATASET:
        if key.startswith(section + "."):
            rest = key[len(section) + 1:].split(".")
            if rest[0] not in datasets:
                return False
            return not (section == "per_dataset" and len(rest) > 2 and rest[1] == "methods" and rest[2] not in methods)
    return True


# Sections whose values combine into what a method trains with (pipeline/training/recipes.py): compared by
# their combined value per swept method and dataset, so that moving a value between them (say, shapes' loop
# sizes from `train` into `per_dataset.shapes.train`) changes nothing.
LAYERED = ("train", "per_dataset", "methods")


def unflatten(flat: dict) -> dict:
    out: dict = {}
    for key, value in flat.items():
        *path, last = key.split(".")
        node = out
        for part in path:
            node = node.setdefault(part, {})
        node[last] = value
    return out


def effective_settings(params: dict, dataset: str, method: str) -> dict:
    """`train.<k>` and `methods.<method>.<k>`: the loop and section `method` runs with on `dataset` under
    `params` (as written, nested), the layers combined by the recipes module's rules."""
    from pipeline.param_checks import default_of
    from pipeline.training.recipes import dataset_kind, recipe_train, resolve_settings
    from pipeline.training.schema import METHOD_SCHEMAS, TRAIN_SCHEMA

    # a key left out takes its default, so a default written out or left out compares equal
    p = {**params, "train": {**default_of(TRAIN_SCHEMA), **(params.get("train") or {})},
         "methods": dict(params.get("methods") or {})}
    p["methods"][method] = {**default_of(METHOD_SCHEMAS.get(method, {})), **(p["methods"].get(method) or {})}
    kind = dataset_kind(p, dataset)
    return {**flatten_params(recipe_train(p, method, kind, dataset), "train."),
            **flatten_params(resolve_settings(p, method, kind, dataset), f"methods.{method}.")}


def _schema_defaults() -> dict:
    """Every param's default (dotted): a key that a sweep's params lack (it was added later) and that is
    set to its default here has not changed what the sweep computed."""
    from pipeline.params import validate

    return flatten_params(validate({}))


def stale_params(current: dict, baseline: dict, swept: set[tuple[str, str]]) -> dict[str, tuple]:
    """Params (dotted) in which `current` (nested, as written) differs from a sweep's `baseline` (flat) in a
    way that bears on the swept (dataset, method) results; all differing params when `swept` is empty."""
    defaults = _schema_defaults()
    diffs = {k: v for k, v in differing_params(flatten_params(current), baseline).items()
             if k not in SWEPT and not (k not in baseline and k in defaults and v[1] == defaults[k])}
    if not swept:
        return diffs
    datasets, methods = {d for d, _ in swept}, {m for _, m in swept}
    out = {k: v for k, v in diffs.items() if k.split(".", 1)[0] not in LAYERED and bears_on(k, datasets, methods)}
    nested = unflatten(baseline)
    for dataset, method in sorted(swept):
        out.update({k: v for k, v in differing_params(effective_settings(current, dataset, method),
                                                      effective_settings(nested, dataset, method)).items()
                    if not _no_bearing(k)})
    return out


def _describe(diffs: dict[str, tuple]) -> str:
    return ", ".join(f"{k} ({a!r} in the baseline, {b!r} here)" for k, (a, b) in diffs.items())


def split_sweeps(states: list[ExperimentState], source: str = "experiments file") -> Sweeps | None:
    """Place each state by the one swept param it changes; refuse mixed or failed states."""
    usable = [s for s in states if s.params]
    if not usable:
        return None
    baseline, by_param = usable[0], {p: [] for p in SWEPT}
    for state in usable[1:]:
        diffs = differing_params(state.params, baseline.params)
        if not diffs:
            continue  # the same params as the baseline (its commit): nothing new
        if len(diffs) > 1 or next(iter(diffs)) not in SWEPT:
            raise SweepError(f"{source}: experiment '{state.name}' ({state.rev[:7]}) differs from the baseline "
                             f"'{baseline.name}' in {_describe(diffs)}; a sweep may vary one of {', '.join(SWEPT)} "
                             "and nothing else. Remove it (`dvc exp remove <name>`) or rerun it from the baseline's "
                             "params, then export again (`dvc exp show --json`)")
        param = next(iter(diffs))
        if state.status in ("queued", "running"):
            raise SweepError(f"{source}: experiment '{state.name}' of the {param} sweep is still {state.status} (its "
                             "numbers are not its own yet); wait until `dvc queue status` says Success, then export "
                             "`dvc exp show --json` again")
        if state.error or state.status == "failed":
            raise SweepError(f"{source}: experiment '{state.name}' of the {param} sweep failed ({state.error or 'failed'}); "
                             f"rerun it (`dvc exp run --queue -S {param}={state.params.get(param)}`) or remove it")
        missing = sorted(set(baseline.metrics) - set(state.metrics))
        if missing:
            raise SweepError(f"{source}: experiment '{state.name}' of the {param} sweep has no metrics for "
                             f"{', '.join(f'{d}/{m}' for d, m in missing)} (a partly failed run); rerun it or "
                             "remove it")
        by_param[param].append(state)
    return Sweeps(baseline, by_param, source)


def sweep_points(sweeps: Sweeps | None, param: str = "lambda") -> list[dict]:
    """Points `{experiment, rev, <param>, dataset, method, ndcg_i2t, ndcg_t2i, ndcg_ave}` of a sweep.

    The baseline comes first; the first point seen for a (dataset, method, value) is kept.
    """
    if sweeps is None:
        return []
    points, seen = [], set()
    for state in [sweeps.baseline] + sweeps.by_param[param]:
        value = state.params.get(param)
        if state.error or isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        for (dataset, method), metrics in sorted(state.metrics.items()):
            key = (dataset, method, float(value))
            if key in seen or not all(k in metrics for k in NDCG_KEYS):
                continue
            seen.add(key)
            points.append({"experiment": state.name, "rev": state.rev, param: float(value), "dataset": dataset,
                           "method": method, **{k: float(metrics[k]) for k in NDCG_KEYS}})
    return points


def seed_runs(sweeps: Sweeps | None, seeds: list[int]) -> dict[int, ExperimentState]:
    """The state of each seed in `seeds` (the baseline's seed included). The sweep is an addition: without
    any seed experiment (or without a file) there are no runs, and the report says that none was run; a
    sweep that lacks some of `seeds` is refused (it is not the sweep asked for)."""
    if not seeds or sweeps is None or not sweeps.by_param["seed"]:
        return {}
    source = sweeps.source
    runs: dict[int, ExperimentState] = {}
    for state in [sweeps.baseline] + sweeps.by_param["seed"]:
        seed = state.params.get("seed")
        if isinstance(seed, int) and seed in seeds and seed not in runs:
            runs[seed] = state
    missing = [s for s in seeds if s not in runs]
    if missing:
        raise SweepError(f"{source}: the seed sweep lacks seeds {', '.join(map(str, missing))} of report.seeds "
                         f"(found {', '.join(map(str, sorted(runs)))}); queue them (`dvc exp run --queue -S "
                         f"seed={missing[0]}`) or drop them from report.seeds")
    return {s: runs[s] for s in seeds}


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
