"""The `metrics` section of params.yaml turned into `evaluate_similarity` keyword arguments.

The section's keys and their checks are in `pipeline.metrics.schema` (run when params are loaded).
"""
from __future__ import annotations

from pipeline.metrics.schema import dataset_entry


def metric_options(metrics_params: dict, dataset: str, source: str = "params.yaml") -> dict:
    """Keyword arguments for `evaluate_similarity` for `dataset` (plus `dedup_texts`, which the
    caller turns into `text_keys`)."""
    protocols, dedup = dataset_entry(metrics_params, dataset, source)
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
