"""Declarations of SCAN (papers/002) and its semantic-consistency variant: one class,
`pipeline.models.scan.SCAN`, configured by the method name."""
from __future__ import annotations

from typing import Any

from pipeline.methods import INSTANCE_LEVEL, Declaration, between
from pipeline.param_checks import Optional_

ORDER = 10

# SCAN (papers/002): region FC + Bi-GRU width d, triplet margin 0.2 (hardest negatives), inverse
# softmax temperatures lambda1 (regions attend words, F^V) / lambda2 (words attend regions, F^S) 9,
# lambda_con null = the recipe's (1.0 on Flickr30k; 0.3 on COCO, Flickr8k and other kinds). attention_memory_mb
# bounds the working tensors of one scoring block at evaluation (raise it on a GPU).
# Null options take the recipe's value: attention_activation relu (papers) | leaky_relu (official, slope
# 0.1); aggregation of the region/word relevances mean (Eq. 6/8) | lse (LogSumExp with inverse
# temperature lse_temperature, SCAN's best i-t rows); negatives distinct_images (captions of the same
# image are not negatives) | diagonal (official: only the positive pair is excluded); word_init word2vec
# (text/embeddings.npy) | random (official: U(-0.1, 0.1)). lambda1/lambda2 null = the recipe's.
_SCAN: dict[str, Any] = {"d_model": 1024, "finetune_words": True, "margin": 0.2, "attention_memory_mb": 512.0,
                         "attention_activation": Optional_(str), "aggregation": Optional_(str),
                         "lse_temperature": Optional_(float), "negatives": Optional_(str),
                         "word_init": Optional_(str)}
_RULES = (between("d_model", 1, integer=True), between("lambda1", 0, low_open=True),
          between("lambda2", 0, low_open=True), between("attention_memory_mb", 0, low_open=True),
          between("margin", 0), between("lambda_con", 0))
_BUILDER = "pipeline.models.scan:SCAN"

DECLARED = [
    Declaration("scan_i2t", _BUILDER, "papers/002 (SCAN)", INSTANCE_LEVEL, False,
                "stacked cross attention, regions attend words, hardest-negative triplet loss",
                {**_SCAN, "lambda1": Optional_(float)}, _RULES),
    Declaration("scan_t2i", _BUILDER, "papers/002 (SCAN)", INSTANCE_LEVEL, False,
                "stacked cross attention, words attend regions, hardest-negative triplet loss",
                {**_SCAN, "lambda2": Optional_(float)}, _RULES),
    Declaration("scan_consistency", _BUILDER, "papers/002 (SCAN + semantic consistency)", INSTANCE_LEVEL, False,
                "both SCAN directions summed plus their consistency term",
                {**_SCAN, "lambda1": Optional_(float), "lambda2": Optional_(float), "lambda_con": Optional_(float)},
                _RULES),
]
