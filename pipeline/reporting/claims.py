"""The papers' claims that our runs can test, each with its evidence and a verdict: `reports/claims.md`.

A claim is a set of comparisons "method A is higher (or lower) than B on metric k". Each comparison
has up to two pieces of evidence:
- over test queries: the paired bootstrap interval of A - B (`intervals.DatasetIntervals.difference`),
  i.e. would another test set of this size change the sign, for these trained models;
- over seeds: the t interval of the mean of A - B, seed by seed (`seeds.difference_over_seeds`), i.e.
  would another training run change the sign. Present only when the report has a seed sweep.
Verdict of a comparison: **holds** when every available interval lies on the claimed side of 0;
**does not hold** when some interval lies entirely on the other side; **inconclusive** otherwise
(an interval contains 0) or without evidence. A claim holds when all its comparisons hold, does not
hold when one does not, and is inconclusive otherwise (also when one of its methods did not run).
Every claim is checked on each dataset of the run on its own (`shapes`, `coco_mini`, ...): the verdicts
are per dataset, never pooled, since each dataset's test set and sizes differ.

The lambda claim (papers/001 Figure 3) is a shape: flat for small lambda, a sharp drop at the largest.
Our sweep points have no per-query files, so its noise scale is the seed sweep's standard deviation s of
`ss`'s NDCG Ave: two single runs differ by more than 1.96 * sqrt(2) * s about 5% of the time by chance.
Flat: the small-lambda points (lambda <= 0.1, the paper's value) span no more than that band. Sharp drop:
the largest lambda is below the small-lambda mean by more than the band. Without a seed sweep (no s),
fewer than two small-lambda points or no larger lambda, it is inconclusive.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from pipeline.metrics.bootstrap import Estimate
from pipeline.reporting.collect import MetricsRecord
from pipeline.reporting.intervals import DatasetIntervals
from pipeline.reporting.seeds import SeedSummary, difference_over_seeds, metric_over_seeds
from pipeline.reporting.sweep import ExperimentState

HOLDS, FAILS, INCONCLUSIVE, NOT_TESTED = "holds", "does not hold", "inconclusive", "not tested"
SMALL_LAMBDA = 0.1  # papers/001: "we set lambda = 0.1" for FLICKR25K / NUS-WIDE, at the end of the flat part
KEY_NAMES = {"ndcg_ave": "NDCG Ave", "rsum": "rsum", "f1_image": "image Micro-F1 (at 0.5)"}


@dataclass(frozen=True)
class Comparison:
    """`method` is claimed higher (`direction` +1) or lower (-1) than `other` on metric `key`."""

    method: str
    other: str
    key: str
    direction: int = 1


@dataclass(frozen=True)
class Claim:
    id: str
    paper: str
    statement: str
    comparisons: tuple[Comparison, ...] = ()
    lambda_method: str = ""  # set for the lambda-shape claim instead of comparisons


TABLE1_BASELINES = ("cca", "lcfs", "jfssl", "dcca", "dscmr", "scml", "vilbert")
ABLATIONS = ("st", "imc", "ss_wo_r", "ss_wo_t", "ss_wo_c", "ss_wo_l", "ss_con")

CLAIMS = (
    Claim("000-baselines", "papers/000 Table 1",
          "Semantic Sharing (`ss`) beats every Table-1 baseline (NDCG Ave).",
          tuple(Comparison("ss", b, "ndcg_ave") for b in TABLE1_BASELINES)),
    Claim("000-ablations", "papers/000 Table 1",
          "`ss` beats each of its ablations and variants (NDCG Ave).",
          tuple(Comparison("ss", a, "ndcg_ave") for a in ABLATIONS)),
    Claim("001-lambda", "papers/001 Figure 3",
          "Retrieval (NDCG Ave of `ss`) is flat for small lambda and drops sharply for large lambda.",
          lambda_method="ss"),
    Claim("001-consistency-f1", "papers/001 Figure 1, Table 1",
          "The consistency loss lowers the image classifier's Micro-F1 (`ss_con` below `ss`).",
          (Comparison("ss_con", "ss", "f1_image", -1),)),
    Claim("002-consistency", "papers/002 Tables 1-3",
          "The semantic-consistency model beats SCAN i2t and SCAN t2i (rsum).",
          (Comparison("scan_consistency", "scan_i2t", "rsum"), Comparison("scan_consistency", "scan_t2i", "rsum"))),
    Claim("003-stage2", "papers/003 Tables 1 and 3",
          "Stage II (instance loss + ranking loss) beats stage I (instance loss only) (rsum).",
          (Comparison("dual_path", "dual_path_stage1", "rsum"),)),
)


@dataclass
class Evidence:
    """One comparison on one dataset."""

    comparison: Comparison
    value: float | None = None  # A - B on the current results
    queries: Estimate | None = None
    seeds: SeedSummary | None = None
    verdict: str = NOT_TESTED
    note: str = ""


@dataclass
class ClaimResult:
    claim: Claim
    dataset: str
    verdict: str
    evidence: list[Evidence] = field(default_factory=list)
    lambda_rows: list[tuple[float, float]] = field(default_factory=list)  # (lambda, NDCG Ave)
    note: str = ""


def interval_verdict(low: float, high: float, direction: int) -> str:
    """Where an interval of `A - B` lies relative to 0, for a claim that A - B has sign `direction`."""
    low, high = sorted((direction * low, direction * high))
    if low > 0:
        return HOLDS
    if high < 0:
        return FAILS
    return INCONCLUSIVE


def combine(verdicts: list[str]) -> str:
    """All hold -> holds; any does not hold -> does not hold; nothing tested -> not tested. A comparison
    that could not be made (a method not run) leaves the claim inconclusive: "beats every" needs all."""
    if all(v == NOT_TESTED for v in verdicts):
        return NOT_TESTED
    if FAILS in verdicts:
        return FAILS
    return HOLDS if all(v == HOLDS for v in verdicts) else INCONCLUSIVE


def compare(comparison: Comparison, dataset: str, records: dict[str, MetricsRecord],
            intervals: DatasetIntervals | None, runs: dict[int, ExperimentState]) -> Evidence:
    evidence = Evidence(comparison)
    a, b = records.get(comparison.method), records.get(comparison.other)
    missing = [m for m, r in ((comparison.method, a), (comparison.other, b)) if r is None or comparison.key not in r.values]
    if missing:
        evidence.note = f"no {comparison.key} for {', '.join(f'`{m}`' for m in missing)} on {dataset}"
        return evidence
    evidence.value = float(a.values[comparison.key]) - float(b.values[comparison.key])
    verdicts = []
    if intervals and comparison.method in intervals.arrays and comparison.other in intervals.arrays:
        evidence.queries = intervals.difference(comparison.method, comparison.other, comparison.key)
        verdicts.append(interval_verdict(evidence.queries.low, evidence.queries.high, comparison.direction))
    if runs:
        evidence.seeds = difference_over_seeds(runs, dataset, comparison.method, comparison.other, comparison.key)
        if evidence.seeds is not None and evidence.seeds.n >= 2:
            verdicts.append(interval_verdict(evidence.seeds.low, evidence.seeds.high, comparison.direction))
    if not verdicts:
        evidence.note, evidence.verdict = "no per-query file and no seed sweep: no interval", INCONCLUSIVE
    else:
        evidence.verdict = FAILS if FAILS in verdicts else (HOLDS if all(v == HOLDS for v in verdicts)
                                                              else INCONCLUSIVE)
    return evidence


def lambda_shape(claim: Claim, dataset: str, points: list[dict], runs: dict[int, ExperimentState]) -> ClaimResult:
    """The flat-then-drop shape of NDCG Ave against lambda (see the module docstring)."""
    rows = sorted((p["lambda"], p["ndcg_ave"]) for p in points
                  if p["dataset"] == dataset and p["method"] == claim.lambda_method)
    result = ClaimResult(claim, dataset, INCONCLUSIVE, lambda_rows=rows)
    if not rows:
        result.verdict, result.note = NOT_TESTED, f"no lambda sweep point of `{claim.lambda_method}` on {dataset}"
        return result
    small = [v for lam, v in rows if lam <= SMALL_LAMBDA]
    large = [(lam, v) for lam, v in rows if lam > SMALL_LAMBDA]
    spread = metric_over_seeds(runs, dataset, claim.lambda_method, "ndcg_ave") if runs else None
    if len(small) < 2 or not large:
        result.note = (f"needs at least two points at lambda <= {SMALL_LAMBDA:g} and one above "
                       f"(have {len(small)} and {len(large)})")
        return result
    if spread is None or spread.n < 2:
        result.note = "no seed sweep: no noise scale to tell flat from falling"
        return result
    band = 1.96 * math.sqrt(2.0) * spread.std
    span = max(small) - min(small)
    top_lambda, top_value = large[-1]
    drop = sum(small) / len(small) - top_value
    flat, dropped = span <= band, drop > band
    result.verdict = HOLDS if flat and dropped else FAILS
    result.note = (f"noise band 1.96·√2·s = {band:.2f} (s = {spread.std:.2f}, the std of `{claim.lambda_method}`'s "
                   f"NDCG Ave over {spread.n} seeds); span of the {len(small)} points at lambda <= {SMALL_LAMBDA:g}: "
                   f"{span:.2f} ({'flat' if flat else 'not flat'}); lambda {top_lambda:g} is {drop:+.2f} below their "
                   f"mean ({'a sharp drop' if dropped else 'no drop beyond the band'})")
    return result


def check_claims(records: list[MetricsRecord], intervals: dict[str, DatasetIntervals], runs: dict[int, ExperimentState],
                 lambda_points: list[dict]) -> list[ClaimResult]:
    """Every claim on every dataset of the records."""
    results = []
    for dataset in sorted({r.dataset for r in records}):
        by_method = {r.method: r for r in records if r.dataset == dataset}
        for claim in CLAIMS:
            if claim.lambda_method:
                results.append(lambda_shape(claim, dataset, lambda_points, runs))
                continue
            evidence = [compare(c, dataset, by_method, intervals.get(dataset), runs) for c in claim.comparisons]
            results.append(ClaimResult(claim, dataset, combine([e.verdict for e in evidence]), evidence))
    return results


def _interval(low: float, high: float, digits: int) -> str:
    return f"[{low:+.{digits}f}, {high:+.{digits}f}]"


def claims_markdown(results: list[ClaimResult], seeds: list[int], notes: list[str] | None = None,
                    rising: set[str] = frozenset()) -> str:
    """`reports/claims.md`: a summary table, then each claim's evidence; `rising` methods get the ↗ mark."""
    from pipeline.reporting.tables import RISING_MARK, markdown_table

    def name(method: str) -> str:
        return f"`{method}`" + (f" {RISING_MARK}" if method in rising else "")

    seed_text = (f"seeds {', '.join(map(str, seeds))} (t interval of the mean of the seed-by-seed differences)"
                 if seeds else "none here (`report.seeds` is empty)")
    out = ["# The papers' claims, checked on our runs", "",
           "Generated by `xmr report`; do not edit by hand. Each comparison is a difference A − B with a 95% "
           "interval over the test queries (paired bootstrap over test images: another test set) and one over "
           f"training seeds where a seed sweep exists: {seed_text}. "
           "**holds**: every interval lies on the claimed side of 0; **does not hold**: an interval lies entirely "
           "on the other side; **inconclusive**: an interval contains 0. A claim holds only when each of its "
           "comparisons holds. Every claim is checked on each dataset on its own: a verdict speaks for that "
           "dataset's test set (a test set of a few dozen images gives wide intervals, which mostly contain 0). "
           "See docs/results.md, \"How to read the intervals and the verdicts\".", ""]
    if rising:
        notes = [f"{RISING_MARK}: the method's validation curve was still rising at its last epoch (results.md, "
                 "\"Convergence\"): its number measures how far it got in its epochs, not what it reaches."] + (notes or [])
    out += [f"- {n}" for n in notes or []] + ([""] if notes else [])
    out += [markdown_table(["Claim", "Source", "Dataset", "Verdict"],
                           [[r.claim.statement, r.claim.paper, r.dataset, f"**{r.verdict}**"] for r in results]), ""]
    for result in results:
        out += [f"## {result.claim.id} on {result.dataset}: {result.verdict}", "", result.claim.statement, ""]
        if result.claim.lambda_method:
            if result.lambda_rows:
                out += [markdown_table(["lambda", "NDCG Ave"], [[f"{lam:g}", f"{v:.2f}"] for lam, v in result.lambda_rows]), ""]
            out += [result.note, ""]
            continue
        rows = []
        for e in result.evidence:
            c = e.comparison
            digits = 3 if c.key.startswith("f1") else 2
            rows.append([f"{name(c.method)} − {name(c.other)}", KEY_NAMES.get(c.key, c.key),
                         "higher" if c.direction > 0 else "lower",
                         "–" if e.value is None else f"{e.value:+.{digits}f}",
                         _interval(e.queries.low, e.queries.high, digits) if e.queries else "–",
                         (f"{e.seeds.mean:+.{digits}f} ± {e.seeds.std:.{digits}f} (n={e.seeds.n}) "
                          f"{_interval(e.seeds.low, e.seeds.high, digits)}") if e.seeds else "–",
                         e.verdict + (f" ({e.note})" if e.note else "")])
        out += [markdown_table(["Comparison", "Metric", "Claimed", "Difference", "95% over queries",
                                "Over seeds: mean ± std, 95%", "Verdict"], rows), ""]
    return "\n".join(out)


def claims_json(results: list[ClaimResult]) -> list[dict]:
    """The verdicts and numbers of `claims.md`, machine-readable."""
    def est(e):
        return None if e is None else {"low": e.low, "high": e.high}

    return [{"claim": r.claim.id, "paper": r.claim.paper, "dataset": r.dataset, "verdict": r.verdict, "note": r.note,
             "lambda_points": [list(p) for p in r.lambda_rows],
             "comparisons": [{"method": e.comparison.method, "other": e.comparison.other, "key": e.comparison.key,
                              "direction": e.comparison.direction, "difference": e.value, "queries": est(e.queries),
                              "seeds": None if e.seeds is None else {"mean": e.seeds.mean, "std": e.seeds.std,
                                                                      "n": e.seeds.n, "low": e.seeds.low,
                                                                      "high": e.seeds.high},
                              "verdict": e.verdict, "note": e.note} for e in r.evidence]}
            for r in results]
