"""The `metrics` section of params.yaml: defaults and every check, run when params are loaded (torch-free).

   ndcg_k        NDCG@k cut-off (official code: 500), clamped to the gallery size
   map_k         mAP@k cut-off, 0 = off;  map_full: also mAP over the whole ranking (a full sort)
   recall_ks     the K of R@K (rsum needs 1, 5 and 10)
   f1_threshold  Micro-F1 predicts a label when sigmoid(logit) >= f1_threshold
   chunk_size    queries per chunk, 0 = derived from memory_mb (working memory of one chunk)
   t2i_discount  'standard' or 'official_coco' (the official code's t2i COCO discount, see ndcg.py)
   datasets      per dataset name (the key under `data`): {protocols: [all|coco5k|coco1k, ...],
                 dedup_texts: bool}; unlisted datasets use protocols [all] and no de-duplication.
                 Defaults for the names of docs/datasets.md: coco -> [coco5k, coco1k]; mirflickr, nuswide (tag
                 texts) -> dedup_texts
"""
from __future__ import annotations

from typing import Any

from pipeline.param_checks import AnyMapping, ParamError, failer

T2I_DISCOUNTS = ("standard", "official_coco")
PROTOCOLS = ("all", "coco5k", "coco1k")
DATASET_KEYS = ("protocols", "dedup_texts")

METRICS_SCHEMA: dict[str, Any] = {
    "ndcg_k": 500,
    "map_k": 500,
    "map_full": True,
    "recall_ks": [1, 5, 10, 20, 50, 100],
    "f1_threshold": 0.5,
    "chunk_size": 0,
    "memory_mb": 512,
    "t2i_discount": "standard",
    "datasets": AnyMapping({"coco": {"protocols": ["coco5k", "coco1k"]},
                            "mirflickr": {"dedup_texts": True}, "nuswide": {"dedup_texts": True}}),
}


def dataset_entry(metrics: dict, dataset: str, source: str = "params.yaml") -> tuple[list[str], bool]:
    """`(protocols, dedup_texts)` of `metrics.datasets.<dataset>`, checked; defaults when unlisted."""
    entry = metrics.get("datasets", {}).get(dataset, {})
    where = f"{source}: parameter 'metrics.datasets.{dataset}"
    if not isinstance(entry, dict):
        raise ParamError(f"{where}' must be a mapping with keys {DATASET_KEYS}")
    unknown = sorted(set(entry) - set(DATASET_KEYS))
    if unknown:
        raise ParamError(f"{where}.{unknown[0]}' is unknown (expected one of: {', '.join(DATASET_KEYS)})")
    protocols = entry.get("protocols", ["all"])
    if isinstance(protocols, str):
        protocols = [protocols]
    if not isinstance(protocols, list) or not protocols or any(p not in PROTOCOLS for p in protocols):
        raise ParamError(f"{where}.protocols' must be a non-empty list of {PROTOCOLS}, got {protocols!r}")
    dedup = entry.get("dedup_texts", False)
    if not isinstance(dedup, bool):
        raise ParamError(f"{where}.dedup_texts' must be true or false, got {dedup!r}")
    return list(protocols), dedup


def check_metrics_params(metrics: dict, source: str = "params.yaml") -> None:
    """Value checks of the type-checked `metrics` section; raises ParamError naming the key."""
    fail = failer(source)
    if metrics["t2i_discount"] not in T2I_DISCOUNTS:
        fail("metrics.t2i_discount", " or ".join(T2I_DISCOUNTS), metrics["t2i_discount"])
    if not 0 < metrics["f1_threshold"] < 1:
        fail("metrics.f1_threshold", "in (0, 1)", metrics["f1_threshold"])
    if metrics["ndcg_k"] < 1:
        fail("metrics.ndcg_k", "an integer >= 1", metrics["ndcg_k"])
    for key in ("map_k", "chunk_size"):
        if metrics[key] < 0:
            fail(f"metrics.{key}", "an integer >= 0", metrics[key])
    if metrics["memory_mb"] < 1:
        fail("metrics.memory_mb", "an integer >= 1", metrics["memory_mb"])
    if not metrics["recall_ks"] or any(k < 1 for k in metrics["recall_ks"]):
        fail("metrics.recall_ks", "a non-empty list of integers >= 1", metrics["recall_ks"])
    for name in metrics["datasets"]:
        dataset_entry(metrics, name, source)
