"""Benchmark: chunked, vectorised NDCG@k (pipeline.metrics) against per-query reference loops.

Every implementation gets the same precomputed float32 similarity matrix and multi-hot labels
(MIRFlickr-like: 24 labels, ~15% density). References, one query at a time:
  reference  the per-query reference of the tests (tests/metrics_reference.py: full sort, Python sums)
  official   the official evaluation's shape: argsort of the row, then a Python loop over the k ranks
  numpy      argsort of the row, sorted ideal relevances, dots with the discounts
(the relevance matrix of the references is computed once, outside the timed loops).
All sort stably on the negated scores (equal scores by index, the library's tie rule), so results
must agree to 1e-9. Slow references can be timed on the first `--reference-queries` queries and
scaled linearly (each query costs the same). Prints a Markdown section; `--record FILE` appends it.

    python bench/metrics.py --queries 2000 --gallery 20000 --k 500 [--device cuda] [--record reports/benchmarks.md]
"""
from __future__ import annotations

import sys


import argparse
import datetime
import math
import platform
import time
from pathlib import Path

import numpy as np
import torch

from pipeline.metrics import evaluate_similarity, score_direction
from pipeline.metrics.scoring import make_source, resolve_device

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import metrics_reference  # the tests' per-query reference


def reference_loop(sim: np.ndarray, rel: np.ndarray, k: int) -> np.ndarray:
    return np.array([metrics_reference.ndcg(sim[q], rel[q], k) for q in range(len(sim))])


def official_style(sim: np.ndarray, rel: np.ndarray, k: int) -> np.ndarray:
    rel = rel.astype(np.float64)
    out = np.zeros(len(sim))
    for q in range(len(sim)):
        ranked = np.argsort(-sim[q], kind="stable")[:k]
        gains = rel[q][ranked]
        ideal = np.sort(rel[q])[::-1][:k]
        dcg = idcg = 0.0
        for i in range(len(ranked)):
            dcg += gains[i] / math.log2(i + 2)
            idcg += ideal[i] / math.log2(i + 2)
        out[q] = dcg / idcg if dcg > 0 else 0.0
    return out


def numpy_per_query(sim: np.ndarray, rel_all: np.ndarray, k: int) -> np.ndarray:
    discount = 1.0 / np.log2(np.arange(k) + 2.0)
    out = np.zeros(len(sim))
    for q in range(len(sim)):
        rel = rel_all[q].astype(np.float64)
        ranked = np.argsort(-sim[q], kind="stable")[:k]
        dcg = rel[ranked] @ discount[:len(ranked)]
        idcg = np.sort(rel)[::-1][:k] @ discount[:len(ranked)]
        out[q] = dcg / idcg if dcg > 0 else 0.0
    return out


def timed(fn):
    """`(value, wall seconds, CPU seconds of this process)`: on a shared machine the CPU time of a
    single-threaded loop is the steadier number."""
    wall, cpu = time.perf_counter(), time.process_time()
    value = fn()
    return value, time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--queries", type=int, default=2000)
    parser.add_argument("--gallery", type=int, default=20000)
    parser.add_argument("--k", type=int, default=500)
    parser.add_argument("--labels", type=int, default=24)
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when present)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads for the chunked path")
    parser.add_argument("--memory-mb", type=float, default=512)
    parser.add_argument("--reference-queries", type=int, default=None,
                        help="queries timed for the slow loops (scaled to all queries); default all")
    parser.add_argument("--machine", default=None, help="machine description for the record")
    parser.add_argument("--record", default=None, help="append the Markdown section to this file")
    args = parser.parse_args()

    if args.threads:
        torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    sim = rng.standard_normal((args.queries, args.gallery), dtype=np.float32)
    labels_q = (rng.random((args.queries, args.labels)) < 0.15).astype(np.float32)
    labels_g = (rng.random((args.gallery, args.labels)) < 0.15).astype(np.float32)
    device = resolve_device(args.device)
    pairs = make_source(sim).pairs(np.arange(args.queries), np.arange(args.gallery), device)
    lq, lg = torch.from_numpy(labels_q).to(device), torch.from_numpy(labels_g).to(device)

    def ours():
        per = score_direction(pairs, "i2t", query_labels=lq, gallery_labels=lg, truth=None, ndcg_k=args.k,
                              map_k=0, map_full=False, memory_mb=args.memory_mb, device=device)
        if device.type == "cuda":
            torch.cuda.synchronize()
        return per["ndcg"]

    ours()  # warm-up (allocator, kernels)
    fast, t_fast, c_fast = timed(ours)
    n_ref = min(args.reference_queries or args.queries, args.queries)
    rel = (labels_q[:n_ref].astype(np.int64) @ labels_g.T.astype(np.int64))
    rows = []
    for name, fn in (("per-query reference of the tests (`tests/metrics_reference.py`)",
                      lambda: reference_loop(sim[:n_ref], rel, args.k)),
                     ("per-query official-style loop (argsort + Python loop over k)",
                      lambda: official_style(sim[:n_ref], rel, args.k)),
                     ("per-query numpy loop (argsort per row, vectorised sums)",
                      lambda: numpy_per_query(sim[:n_ref], rel, args.k))):
        values, seconds, cpu = timed(fn)
        scale = args.queries / n_ref
        rows.append((name, seconds * scale, cpu * scale, float(np.abs(fast[:n_ref] - values).max())))

    # the complete entry point (NDCG, whole-ranking mAP, mAP@k, R@K) on the same matrix, for reference
    caption_image = rng.integers(0, args.queries, args.gallery)
    caption_image[: args.queries] = np.arange(args.queries)
    _, t_full, c_full = timed(lambda: evaluate_similarity(sim, labels_q, labels_g, caption_image, ndcg_k=args.k,
                                                  map_k=args.k, device=device, memory_mb=args.memory_mb))

    machine = args.machine or f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"
    scaled = f" (timed on the first {n_ref} queries, scaled to {args.queries})" if n_ref != args.queries else ""
    lines = [
        f"## Metrics: chunked NDCG@{args.k}, {args.queries:,} queries x {args.gallery:,} gallery items (`bench/metrics.py`)",
        "",
        f"Machine: {machine}. Date: {datetime.date.today().isoformat()}. Device `{device}`; `python bench/metrics.py --queries {args.queries} "
        f"--gallery {args.gallery} --k {args.k}{' --threads %d' % args.threads if args.threads else ''}"
        f"{' --reference-queries %d' % n_ref if scaled else ''}` "
        f"(one run, the same precomputed float32 similarity matrix for all).",
        "",
        "| implementation | wall (s) | CPU (s) | chunked is faster by (wall / CPU) | max abs difference |",
        "|---|---|---|---|---|",
        f"| chunked, vectorised (`pipeline.metrics.score_direction`, torch threads: {torch.get_num_threads()}) "
        f"| {t_fast:.3f} | {c_fast:.3f} | - | - |",
    ]
    lines += [f"| {name}{scaled} | {seconds:.2f} | {cpu:.2f} | {seconds / t_fast:.1f}x / {cpu / c_fast:.1f}x | {diff:.1e} |"
              for name, seconds, cpu, diff in rows]
    lines += [
        "",
        f"Complete `evaluate_similarity` on the same matrix (both directions; NDCG, mAP over the whole ranking "
        f"via a full stable sort, mAP@{args.k}, R@K): {t_full:.2f} s wall, {c_full:.2f} s CPU.",
        "",
    ]
    text = "\n".join(lines)
    print(text)
    ok = all(diff <= 1e-9 for *_, diff in rows)
    print(f"results equal to 1e-9: {ok}")
    if args.record:
        with open(args.record, "a") as f:
            f.write("\n" + text)
    if not ok:
        raise SystemExit("results differ by more than 1e-9")


if __name__ == "__main__":
    main()
