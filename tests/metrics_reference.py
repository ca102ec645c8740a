"""Straightforward per-query reference implementations the metric tests compare against.

Written for clarity, not speed: one query at a time, a full sort, plain Python sums. The tie rule
is spelled out independently of the library: highest score first, equal scores by index.
"""
from __future__ import annotations

import math

import numpy as np


def order(scores_row) -> np.ndarray:
    s = np.asarray(scores_row, dtype=np.float32)
    return np.lexsort((np.arange(len(s)), -s))


def ndcg(scores_row, rel_row, k, discount=None) -> float:
    discount = discount or (lambda i: 1.0 / math.log2(i + 2))
    ranked = order(scores_row)
    k = min(k, len(ranked))
    ideal = sorted(rel_row, reverse=True)
    dcg = sum(float(rel_row[ranked[i]]) * discount(i) for i in range(k))
    idcg = sum(float(ideal[i]) * discount(i) for i in range(k))
    return dcg / idcg if dcg > 0 else 0.0


def average_precision(scores_row, relevant_row, k=None) -> float:
    ranked = order(scores_row)
    if k is not None:
        ranked = ranked[:k]
    hits, total = 0, 0.0
    for i, j in enumerate(ranked):
        if relevant_row[j]:
            hits += 1
            total += hits / (i + 1)
    return total / hits if hits else 0.0


def best_rank(scores_row, true_items) -> int:
    ranked = list(order(scores_row))
    return min(ranked.index(t) for t in true_items)


def recall_block(ranks, ks, direction):
    ranks = list(ranks)
    out = {f"r{k}_{direction}": 100.0 * sum(r < k for r in ranks) / len(ranks) for k in ks}
    out[f"medr_{direction}"] = math.floor(float(np.median(ranks))) + 1
    out[f"meanr_{direction}"] = sum(ranks) / len(ranks) + 1
    return out


def cosine(a, b) -> np.ndarray:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return (a.astype(np.float32) @ b.astype(np.float32).T).astype(np.float32)


def evaluate(sim, image_labels, text_labels, caption_image, ndcg_k=500, map_k=500, ks=(1, 5, 10, 20, 50, 100)):
    """Every metric of `evaluate_similarity` for one similarity matrix, query by query."""
    sim = np.asarray(sim, dtype=np.float32)
    n_img, n_txt = sim.shape
    rel = np.asarray(image_labels, dtype=np.int64) @ np.asarray(text_labels, dtype=np.int64).T
    out = {}
    per = {"i2t": (sim, rel), "t2i": (sim.T, rel.T)}
    for d, (s, r) in per.items():
        out[f"ndcg_{d}"] = 100 * np.mean([ndcg(s[q], r[q], ndcg_k) for q in range(len(s))])
        out[f"map_{d}"] = 100 * np.mean([average_precision(s[q], r[q] > 0) for q in range(len(s))])
        out[f"mapk_{d}"] = 100 * np.mean([average_precision(s[q], r[q] > 0, map_k) for q in range(len(s))])
    for name in ("ndcg", "map", "mapk"):
        out[f"{name}_ave"] = (out[f"{name}_i2t"] + out[f"{name}_t2i"]) / 2
    if caption_image is not None:
        caption_image = np.asarray(caption_image)
        i2t_ranks = [best_rank(sim[i], np.flatnonzero(caption_image == i)) for i in range(n_img)]
        t2i_ranks = [best_rank(sim[:, t], [caption_image[t]]) for t in range(n_txt)]
        out.update(recall_block(i2t_ranks, ks, "i2t"))
        out.update(recall_block(t2i_ranks, ks, "t2i"))
        if all(k in ks for k in (1, 5, 10)):
            out["rsum"] = sum(out[f"r{k}_{d}"] for d in ("i2t", "t2i") for k in (1, 5, 10))
    return out
