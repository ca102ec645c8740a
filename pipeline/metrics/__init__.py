"""Retrieval and classification metrics: label-wise NDCG and mAP, instance-level R@K, Micro-F1.

`evaluate_similarity` is the entry point the `evaluate` stage calls; the modules hold one metric
each (ndcg, average_precision, recall, classification), the shared tie rule (ranking), the score
inputs (scoring), the evaluation protocols (protocols) and the params section (schema, torch-free).
The names below are imported on first use, so that `pipeline.metrics.schema` (read when params are
loaded) does not import torch. `average_precision` is not among them: importing its module binds the
package attribute of that name to the module, so the function is imported from
`pipeline.metrics.average_precision` itself.
per_query holds the per-query values the `evaluate` stage saves, bootstrap the paired intervals the
report draws from them.
"""
import importlib

_EXPORTS = {
    "micro_f1": "classification", "metric_options": "config",
    "MetricInputError": "errors", "evaluate_similarity": "evaluate", "protocol_view": "evaluate",
    "score_direction": "evaluate", "ndcg_at_k": "ndcg", "read_rankings": "rankings", "top_retrievals": "rankings",
    "write_rankings": "rankings", "recall_summary": "recall", "rsum": "recall",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'pipeline.metrics' has no attribute {name!r}")
    return getattr(importlib.import_module(f"pipeline.metrics.{_EXPORTS[name]}"), name)
