"""Retrieval and classification metrics: label-wise NDCG and mAP, instance-level R@K, Micro-F1.

`evaluate_similarity` is the entry point the `evaluate` stage calls; the modules hold one metric
each (ndcg, average_precision, recall, classification), the shared tie rule (ranking), the score
inputs (scoring) and the evaluation protocols (protocols); per_query holds the per-query values the
`evaluate` stage saves, bootstrap the paired intervals the report draws from them.
"""
from pipeline.metrics.average_precision import average_precision
from pipeline.metrics.classification import micro_f1
from pipeline.metrics.config import metric_options
from pipeline.metrics.errors import MetricInputError
from pipeline.metrics.evaluate import evaluate_similarity, protocol_view, score_direction
from pipeline.metrics.ndcg import ndcg_at_k
from pipeline.metrics.rankings import read_rankings, top_retrievals, write_rankings
from pipeline.metrics.recall import recall_summary, rsum

__all__ = [
    "MetricInputError", "average_precision", "evaluate_similarity", "metric_options", "micro_f1", "ndcg_at_k",
    "protocol_view", "read_rankings", "recall_summary", "rsum", "score_direction", "top_retrievals",
    "write_rankings",
]
