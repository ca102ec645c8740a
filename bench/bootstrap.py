"""Benchmark: the report's whole bootstrap (every interval and every difference) on a `shapes`-sized test set.

Per-query files are made by `evaluate_similarity` on synthetic embeddings of the embedded dataset's test
split (200 images, 5 captions each, 24 labels, recall_ks 1..100), one file per method of params.yaml
(19), with classifier counts for the Semantic Sharing family, then:
  vectorised  `pipeline.reporting.intervals.dataset_intervals` + `differences_table`: what `xmr report` runs
  naive       the same intervals and differences by a loop over resamples: expand the drawn images into
              their queries, then each metric with the library's per-sample code
              (`pipeline.metrics.bootstrap.reference_statistic`, which the tests check against too)
Both use the same drawn indices; the naive loop can be timed on the first `--naive-resamples`
resamples and scaled linearly (each resample costs the same). Prints a Markdown section;
`--record FILE` appends it.

    python bench/bootstrap.py [--resamples 1000] [--naive-resamples 100] [--record reports/benchmarks.md]
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

from pipeline.metrics import evaluate_similarity
from pipeline.metrics.bootstrap import reference_statistic
from pipeline.metrics.per_query import write_per_query
from pipeline.dvc_stages import run_methods
from pipeline.params import load_params
from pipeline.reporting.collect import collect_metrics
from pipeline.reporting.intervals import DIFFERENCE_KEYS, interval_keys, dataset_intervals, differences_table
from record import emit  # bench/record.py: print and append to reports/benchmarks.md

ROOT = Path(__file__).resolve().parents[1]
CLASSIFIER = ("ss", "ss_con", "ss_wo_t", "ss_wo_r", "ss_wo_c", "st", "imc")


def make_reports(root: Path, methods: list[str], n_img: int = 200, per_image: int = 5, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    labels = (rng.random((n_img, 24)) < 0.1).astype(np.uint8)
    caption_image = rng.permutation(np.repeat(np.arange(n_img), per_image))
    img = rng.normal(size=(n_img, 64)).astype(np.float32) + 2 * labels @ rng.normal(size=(24, 64)).astype(np.float32)
    for i, method in enumerate(methods):
        txt = img[caption_image] + (0.5 + 0.1 * i) * rng.normal(size=(len(caption_image), 64)).astype(np.float32)
        logits = {}
        if method in CLASSIFIER:
            logits = dict(image_logits=rng.normal(size=(n_img, 24)), text_logits=rng.normal(size=(len(txt), 24)))
        per: dict = {}
        metrics = evaluate_similarity((img, txt), labels, None, caption_image, per_query=per, device="cpu", **logits)
        (root / "metrics" / "shapes").mkdir(parents=True, exist_ok=True)
        (root / "metrics" / "shapes" / f"{method}.json").write_text(json.dumps(metrics))
        write_per_query(root / "per_query" / "shapes" / f"{method}.npz", per)


def naive_statistic(arrays: dict, drawn: np.ndarray, key: str, queries_of: dict) -> float:
    rows = {d: np.concatenate([queries_of[d][u] for u in drawn]) for d in ("i2t", "t2i")}
    return reference_statistic(arrays, rows, key)


def naive(records, intervals, n_resamples: int, reference: str) -> None:
    """Every interval and every difference to `reference`, one resample at a time."""
    iv = intervals["shapes"]
    drawn_all = iv.bootstrap.indices[""][:n_resamples]
    first = next(iter(iv.arrays.values()))
    queries_of = {d: [np.flatnonzero(first[f"unit_{d}"] == u) for u in range(int(first["n_units"]))]
                  for d in ("i2t", "t2i")}
    for record in records:
        arrays = iv.arrays[record.method]
        keys = interval_keys(record.values)
        dist = {k: np.array([naive_statistic(arrays, drawn, k, queries_of) for drawn in drawn_all]) for k in keys}
        np.percentile(np.stack(list(dist.values())), [2.5, 97.5], axis=1)
        if record.method != reference:
            ref = iv.arrays[reference]
            for k in DIFFERENCE_KEYS:
                if k in record.values:
                    other = np.array([naive_statistic(ref, drawn, k, queries_of) for drawn in drawn_all])
                    np.percentile(dist[k] - other, [2.5, 97.5])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--resamples", type=int, default=1000)
    ap.add_argument("--naive-resamples", type=int, default=100)
    ap.add_argument("--record", type=Path)
    args = ap.parse_args()
    p = load_params(ROOT / "params.yaml")
    methods = run_methods(p)
    reference = p["report"]["reference_method"]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        make_reports(root, methods)
        records = collect_metrics(root / "metrics")
        start = time.perf_counter()
        intervals = dataset_intervals(records, root / "per_query", args.resamples, 0)
        table = differences_table(intervals["shapes"], reference, records)
        fast = time.perf_counter() - start
        assert table is not None
        n_intervals = sum(len(r.intervals) for r in records)
        n_differences = (len(table.splitlines()) - 2) * (table.splitlines()[0].count("|") - 2)
        start = time.perf_counter()
        naive(records, intervals, args.naive_resamples, reference)
        slow = (time.perf_counter() - start) * args.resamples / args.naive_resamples
    lines = [f"## Bootstrap intervals of the report (`bench/bootstrap.py`)", "",
             f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
             f"{datetime.date.today().isoformat()}. `shapes`-sized test set (200 images, 1,000 captions), "
             f"{len(methods)} methods, {n_intervals} intervals and {n_differences} paired differences, "
             f"{args.resamples} resamples; load average {os.getloadavg()[0]:.1f} (a shared machine).", "",
             "| implementation | seconds | ratio |", "|---|---|---|",
             f"| vectorised (`dataset_intervals` + `differences_table`, what `xmr report` runs) | {fast:.2f} | 1.0 |",
             f"| naive loop over resamples (timed on {args.naive_resamples}, scaled to {args.resamples}) | "
             f"{slow:.1f} | {slow / fast:.0f}x |", ""]
    text = "\n".join(lines)
    emit(text, args.record)


if __name__ == "__main__":
    main()
