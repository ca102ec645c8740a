"""Sweeps split by what they vary, seeds aggregated, and the papers' claims with verdicts."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from pipeline.params import ParamError, validate
from pipeline.reporting.claims import (FAILS, HOLDS, INCONCLUSIVE, NOT_TESTED, Claim, Comparison, check_claims, combine,
                                       interval_verdict, lambda_shape)
from pipeline.reporting.collect import MetricsRecord
from pipeline.reporting.report import build_report
from pipeline.reporting.seeds import difference_over_seeds, summarise
from pipeline.reporting.sweep import SweepError, read_states, seed_runs, split_sweeps, sweep_points

BASE = {"lambda": 0.1, "seed": 0, "train": {"lr": 0.001, "epochs": 3}, "report": {"seeds": []}}


def state(rev: str, metrics: dict[str, dict], error=None, **changes) -> dict:
    """One `dvc exp show --json` state: BASE params with `changes` (dotted keys), metrics per method."""
    params = json.loads(json.dumps(BASE))
    for key, value in changes.items():
        *path, last = key.split("__")
        node = params
        for part in path:
            node = node[part]
        node[last] = value
    return {"rev": rev, "name": None if rev == "workspace" else f"exp-{rev}", "error": error,
            "data": {"params": {"params.yaml": {"data": params}},
                     "metrics": {f"reports/metrics/shapes/{m}.json": {"data": v} for m, v in metrics.items()}}}


def ndcg(value: float, **extra) -> dict:
    return {"ndcg_i2t": value, "ndcg_t2i": value, "ndcg_ave": value, **extra}


def exp_show(*children: dict, workspace: dict | None = None) -> list:
    base = workspace or state("workspace", {"ss": ndcg(80.0), "cca": ndcg(60.0)})
    return [base, {**state("abc1234", {}), "experiments": [{"revs": list(children)}]}]  # the commit, then its runs


def test_lambda_and_seed_experiments_are_split_and_report_params_ignored():
    states = read_states(exp_show(state("l1", {"ss": ndcg(70.0), "cca": ndcg(60.0)}, **{"lambda": 1.0}),
                                  state("s1", {"ss": ndcg(81.0), "cca": ndcg(59.0)}, seed=1),
                                  state("s2", {"ss": ndcg(79.0), "cca": ndcg(61.0)}, seed=2,
                                        report__seeds=[0, 1, 2])))
    sweeps = split_sweeps(states)
    assert [s.name for s in sweeps.by_param["lambda"]] == ["exp-l1"]
    assert [s.name for s in sweeps.by_param["seed"]] == ["exp-s1", "exp-s2"]  # report.* differs: ignored
    assert {(p["method"], p["lambda"]) for p in sweep_points(sweeps, "lambda")} == {
        ("ss", 0.1), ("cca", 0.1), ("ss", 1.0), ("cca", 1.0)}
    runs = seed_runs(sweeps, [0, 1, 2])
    assert list(runs) == [0, 1, 2] and runs[0].name == "workspace"


@pytest.mark.parametrize("changes,named", [
    ({"train__lr": 0.01}, "train.lr (0.001 in the baseline, 0.01 here)"),
    ({"seed": 1, "train__epochs": 4}, "seed (0 in the baseline, 1 here), train.epochs (3 in the baseline, 4 here)"),
    ({"seed": 1, "lambda": 1.0}, "lambda (0.1 in the baseline, 1.0 here), seed (0 in the baseline, 1 here)"),
])
def test_a_sweep_mixed_with_other_changes_is_refused_naming_the_params(changes, named):
    states = read_states(exp_show(state("x", {"ss": ndcg(1.0), "cca": ndcg(1.0)}, **changes)))
    with pytest.raises(SweepError, match="experiment 'exp-x'") as info:
        split_sweeps(states, "reports/experiments.json")
    assert named in str(info.value) and "reports/experiments.json" in str(info.value)


def test_failed_and_partly_failed_experiments_are_refused():
    failed = read_states(exp_show(state("f", {}, error={"msg": "stage train failed"}, seed=1)))
    with pytest.raises(SweepError, match=r"'exp-f' of the seed sweep failed \(stage train failed\)"):
        split_sweeps(failed)
    queued = exp_show(state("q", {"ss": ndcg(80.0), "cca": ndcg(60.0)}, seed=1))  # metrics still the baseline's
    queued[1]["experiments"][0]["executor"] = {"state": "queued", "name": "exp-q", "local": None}
    with pytest.raises(SweepError, match="'exp-q' of the seed sweep is still queued"):
        split_sweeps(read_states(queued))
    partial = read_states(exp_show(state("p", {"ss": ndcg(80.0)}, seed=1)))
    with pytest.raises(SweepError, match="'exp-p' of the seed sweep has no metrics for shapes/cca"):
        split_sweeps(partial)


def test_no_seed_sweep_gives_no_runs_and_an_incomplete_one_is_refused():
    only_lambda = split_sweeps(read_states(exp_show(state("l", {"ss": ndcg(1.0), "cca": ndcg(1.0)}, **{"lambda": 1.0}))))
    assert seed_runs(only_lambda, [0, 1, 2]) == {}  # an addition, not a precondition: the report says none ran
    assert seed_runs(None, [0, 1]) == {}
    one_seed = split_sweeps(read_states(exp_show(state("s1", {"ss": ndcg(1.0), "cca": ndcg(1.0)}, seed=1))))
    with pytest.raises(SweepError, match="lacks seeds 2 of report.seeds"):
        seed_runs(one_seed, [0, 1, 2])
    assert seed_runs(one_seed, []) == {}


@pytest.mark.parametrize("seeds,message", [([1], "at least two seeds"), ([0, 0], "distinct"), ([0, -1], "non-negative"),
                                           (["a", 1], "non-negative integers")])
def test_report_seeds_are_checked_at_load(seeds, message):
    with pytest.raises(ParamError, match=rf"report\.seeds.*{message}"):
        validate({"report": {"seeds": seeds}})


def test_seed_summary_is_the_t_interval_of_the_mean():
    s = summarise([1.0, 2.0, 6.0])
    assert s.mean == pytest.approx(3.0) and s.std == pytest.approx(math.sqrt(7.0)) and s.n == 3
    half = 4.302652729911275 * math.sqrt(7.0) / math.sqrt(3.0)  # t(0.975, 2)
    assert (s.low, s.high) == pytest.approx((3.0 - half, 3.0 + half))
    single = summarise([5.0])
    assert (single.std, single.low, single.high) == (0.0, 5.0, 5.0)


def test_verdict_rules():
    assert interval_verdict(0.5, 2.0, +1) == HOLDS and interval_verdict(-2.0, -0.5, +1) == FAILS
    assert interval_verdict(-0.5, 2.0, +1) == INCONCLUSIVE
    assert interval_verdict(-2.0, -0.5, -1) == HOLDS and interval_verdict(0.5, 2.0, -1) == FAILS  # "lowers"
    assert combine([HOLDS, HOLDS]) == HOLDS and combine([HOLDS, INCONCLUSIVE]) == INCONCLUSIVE
    assert combine([HOLDS, FAILS, INCONCLUSIVE]) == FAILS and combine([NOT_TESTED]) == NOT_TESTED
    assert combine([HOLDS, NOT_TESTED]) == INCONCLUSIVE  # "beats every" needs every comparison


def runs_of(values: dict[str, list[float]], key: str = "ndcg_ave"):
    """Seed runs 0..n-1 with the given per-method values."""
    n = len(next(iter(values.values())))
    children = [state(f"s{i}", {m: ndcg(v[i]) if key == "ndcg_ave" else {key: v[i]} for m, v in values.items()}, seed=i)
                for i in range(1, n)]
    workspace = state("workspace", {m: ndcg(v[0]) if key == "ndcg_ave" else {key: v[0]} for m, v in values.items()})
    return seed_runs(split_sweeps(read_states(exp_show(*children, workspace=workspace))), list(range(n)))


def test_seed_evidence_decides_without_per_query_files():
    runs = runs_of({"ss": [80.0, 81.0, 82.0], "cca": [60.0, 61.0, 59.0], "lcfs": [80.5, 79.0, 83.0],
                    "ss_con": [90.0, 91.0, 92.5]})
    diff = difference_over_seeds(runs, "shapes", "ss", "cca", "ndcg_ave")
    assert diff.mean == pytest.approx(21.0) and diff.n == 3
    records = [MetricsRecord("shapes", m, None, {"ndcg_ave": v}) for m, v in
               (("ss", 80.0), ("cca", 60.0), ("lcfs", 80.5), ("ss_con", 90.0))]
    results = {r.claim.id: r for r in check_claims(records, {}, runs, [])}
    baselines = {e.comparison.other: e.verdict for e in results["000-baselines"].evidence}
    assert baselines["cca"] == HOLDS and baselines["lcfs"] == INCONCLUSIVE and baselines["dcca"] == NOT_TESTED
    assert results["000-baselines"].verdict == INCONCLUSIVE
    ablations = {e.comparison.other: e.verdict for e in results["000-ablations"].evidence}
    assert ablations["ss_con"] == FAILS and results["000-ablations"].verdict == FAILS
    assert results["003-stage2"].verdict == NOT_TESTED  # neither dual-path model ran


def test_lambda_shape_needs_a_noise_scale_and_reads_flat_then_drop():
    claim = Claim("001-lambda", "papers/001", "flat then drop", lambda_method="ss")
    runs = runs_of({"ss": [80.0, 81.0, 79.0]})  # s = 1, band = 1.96 * sqrt(2) = 2.77
    flat_drop = [{"dataset": "shapes", "method": "ss", "lambda": lam, "ndcg_ave": v}
                 for lam, v in ((0, 80.0), (0.01, 81.0), (0.1, 80.5), (1, 70.0), (10, 50.0))]
    assert lambda_shape(claim, "shapes", flat_drop, runs).verdict == HOLDS
    falling = [dict(p, ndcg_ave=90.0 - 10 * i) for i, p in enumerate(flat_drop)]
    assert lambda_shape(claim, "shapes", falling, runs).verdict == FAILS  # not flat
    no_drop = [dict(p, ndcg_ave=80.0 + (i % 2)) for i, p in enumerate(flat_drop)]
    result = lambda_shape(claim, "shapes", no_drop, runs)
    assert result.verdict == FAILS and "no drop beyond the band" in result.note
    assert lambda_shape(claim, "shapes", flat_drop, {}).verdict == INCONCLUSIVE  # no seeds, no noise scale
    assert lambda_shape(claim, "shapes", flat_drop[:1], runs).verdict == INCONCLUSIVE


def test_report_writes_claims_and_the_seed_sweep(tmp_path):
    """Per-query files from the evaluate code for three methods, and a 3-seed experiments file."""
    from pipeline.metrics import evaluate_similarity
    from pipeline.metrics.per_query import write_per_query
    from test_metrics_evaluate import make_data

    img, txt, labels, caption_image = make_data(n_img=40, seed=3)
    reports, rng = tmp_path / "reports", np.random.default_rng(3)
    metrics = {}
    for method, scale in {"ss": 0.0, "ss_wo_c": 0.02, "cca": 50.0}.items():
        per: dict = {}
        noisy = txt + scale * rng.normal(size=txt.shape).astype(np.float32)
        metrics[method] = evaluate_similarity((img, noisy), labels, None, caption_image, recall_ks=(1, 5, 10),
                                              per_query=per)
        (reports / "metrics/shapes").mkdir(parents=True, exist_ok=True)
        (reports / f"metrics/shapes/{method}.json").write_text(json.dumps(metrics[method]))
        write_per_query(reports / f"per_query/shapes/{method}.npz", per)
    shift = {"ss": (0.0, 0.4, -0.3), "ss_wo_c": (0.0, -0.5, 0.6), "cca": (0.0, 0.2, 0.1)}  # training noise
    children = [state(f"s{s}", {m: {**v, "ndcg_ave": v["ndcg_ave"] + shift[m][s]} for m, v in metrics.items()}, seed=s)
                for s in (1, 2)]
    experiments = tmp_path / "experiments.json"
    experiments.write_text(json.dumps(exp_show(*children, workspace=state("workspace", metrics))))
    summary = build_report(reports, tmp_path / "data", experiments=experiments,
                           report_params={"bootstrap_resamples": 200, "seeds": [0, 1, 2]},
                           current_params=BASE)
    assert summary["seed_runs"] == {0: "workspace", 1: "exp-s1", 2: "exp-s2"}
    assert summary["claims"]["000-baselines@shapes"] == INCONCLUSIVE  # cca holds, the other baselines did not run
    claims = json.loads((reports / "claims.json").read_text())
    cca = next(c for c in claims[0]["comparisons"] if c["other"] == "cca")
    assert cca["verdict"] == HOLDS and cca["queries"]["low"] > 0 and cca["seeds"]["n"] == 3
    wo_c = next(c for r in claims if r["claim"] == "000-ablations" for c in r["comparisons"] if c["other"] == "ss_wo_c")
    assert wo_c["queries"]["low"] <= 0 <= wo_c["queries"]["high"] and wo_c["verdict"] == INCONCLUSIVE
    text = (reports / "claims.md").read_text()
    assert "## 000-baselines on shapes: inconclusive" in text and "seed sweep exists: seeds 0, 1, 2" in text
    results = (reports / "results.md").read_text()
    assert "## Over training seeds" in results and "(n=3)" in results and "[claims.md](claims.md)" in results
    # an experiments file run from other params is named in the report
    build_report(reports, tmp_path / "data", experiments=experiments, report_params={"bootstrap_resamples": 50},
                 current_params={**BASE, "train": {"lr": 0.01, "epochs": 3}})
    assert "train.lr (0.001 there, 0.01 here)" in (reports / "claims.md").read_text()
    # another evaluation id or machine record alone (the same numbers from a rerun) is not other numbers
    rerun = json.loads(experiments.read_text())
    rerun[0]["data"]["metrics"]["reports/metrics/shapes/cca.json"]["data"]["evaluation_id"] = "0123456789abcdef"
    experiments.write_text(json.dumps(rerun))
    build_report(reports, tmp_path / "data", experiments=experiments, report_params={"bootstrap_resamples": 50},
                 current_params=BASE)
    assert "holds other numbers" not in (reports / "claims.md").read_text()
    # a file whose baseline holds other numbers than the metrics files (other code or machine) is named too
    stale = json.loads(experiments.read_text())
    stale[0]["data"]["metrics"]["reports/metrics/shapes/cca.json"]["data"]["ndcg_ave"] += 1.0
    experiments.write_text(json.dumps(stale))
    build_report(reports, tmp_path / "data", experiments=experiments, report_params={"bootstrap_resamples": 50},
                 current_params=BASE)
    assert "holds other numbers than the current metrics files for shapes/cca" in (reports / "claims.md").read_text()
