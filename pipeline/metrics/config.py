"""The `metrics` section of params.yaml turned into `evaluate_similarity` keyword arguments."""
from __future__ import annotations

from pipeline.metrics.errors import MetricInputError
from pipeline.metrics.evaluate import T2I_DISCOUNTS
from pipeline.metrics.protocols import PROTOCOLS

# The `metrics` section of params.yaml (defaults in pipeline.params.SCHEMA):
#   ndcg_k        NDCG@k cut-off (official code: 500), clamped to the gallery size
#   map_k         mAP@k cut-off, 0 = off;  map_full: also mAP over the whole ranking (a full sort)
#   recall_ks     the K of R@K (rsum needs 1, 5 and 10)
#   f1_threshold  Micro-F1 predicts a label when sigmoid(logit) >= f1_threshold
#   chunk_size    queries per chunk, 0 = derived from memory_mb (working memory of one chunk)
#   t2i_discount  'standard' or 'official_coco' (the official code's t2i COCO discount, see ndcg.py)
#   datasets      per dataset name (the key under `data`): {protocols: [all|coco5k|coco1k, ...],
#                 dedup_texts: bool}; unlisted datasets use protocols [all] and no de-duplication.
#                 Defaults for the README's names: coco -> [coco5k, coco1k]; mirflickr, nuswide (tag
#                 texts) -> dedup_texts
DATASET_KEYS = ("protocols", "dedup_texts")


def metric_options(metrics_params: dict, dataset: str, source: str = "params.yaml") -> dict:
    """Keyword arguments for `evaluate_similarity` for `dataset` (plus `dedup_texts`, which the
    caller turns into `text_keys`)."""
    entry = metrics_params.get("datasets", {}).get(dataset, {})
    where = f"{source}: parameter 'metrics.datasets.{dataset}"
    if not isinstance(entry, dict):
        raise MetricInputError(f"{where}' must be a mapping with keys {DATASET_KEYS}")
    unknown = sorted(set(entry) - set(DATASET_KEYS))
    if unknown:
        raise MetricInputError(f"{where}.{unknown[0]}' is unknown (expected one of: {', '.join(DATASET_KEYS)})")
    protocols = entry.get("protocols", ["all"])
    if isinstance(protocols, str):
        protocols = [protocols]
    if not isinstance(protocols, list) or not protocols or any(p not in PROTOCOLS for p in protocols):
        raise MetricInputError(f"{where}.protocols' must be a non-empty list of {PROTOCOLS}, got {protocols!r}")
    dedup = entry.get("dedup_texts", False)
    if not isinstance(dedup, bool):
        raise MetricInputError(f"{where}.dedup_texts' must be true or false, got {dedup!r}")
    if metrics_params["t2i_discount"] not in T2I_DISCOUNTS:
        raise MetricInputError(f"{source}: parameter 'metrics.t2i_discount' must be one of {T2I_DISCOUNTS}, "
                               f"got {metrics_params['t2i_discount']!r}")
    if not 0 < metrics_params["f1_threshold"] < 1:
        raise MetricInputError(f"{source}: parameter 'metrics.f1_threshold' must lie in (0, 1)")
    return {
        "protocol": protocols,
        "ndcg_k": metrics_params["ndcg_k"],
        "map_k": metrics_params["map_k"],
        "map_full": metrics_params["map_full"],
        "recall_ks": list(metrics_params["recall_ks"]),
        "f1_threshold": metrics_params["f1_threshold"],
        "chunk_size": metrics_params["chunk_size"] or None,
        "memory_mb": metrics_params["memory_mb"],
        "t2i_discount": metrics_params["t2i_discount"],
        "dedup_texts": dedup,
    }
