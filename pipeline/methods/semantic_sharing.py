"""Declarations of the Semantic Sharing family (papers/000 and its Table 1 ablations): one class,
`pipeline.models.semantic_sharing.SemanticSharing`, configured by the method name. Defaults are the
paper's (papers/000 + supplementary) or, where the paper is silent, the official code's."""
from __future__ import annotations

from typing import Any

from pipeline.methods import LABEL_WISE, Declaration, between, one_of, transformer_shape
from pipeline.param_checks import Optional_

ORDER = 0

# Inputs of the Semantic Sharing family: phi(psi1(x) + psi2(position)) per segment.
_SS_INPUT: dict[str, Any] = {
    # Width d of segments, encoder and heads (official code 1024).
    "d_model": 1024,
    "dropout": 0.1,
    # Non-linearity phi of the segment input: relu | gelu | tanh.
    "phi": "relu",
    # Bi-GRU over the word vectors before psi1 (papers/000 Sec. 3.2); false feeds word vectors directly.
    "text_gru": True,
    # Fine-tune the word-vector table (initialised from text/embeddings.npy).
    "finetune_words": True,
    # Segment input form (null = the recipe's; paper for the ablations without a recipe): paper
    # (phi(psi1(x) + psi2(position)), then LayerNorm and dropout) | official (image (psi1(x) + 1e-4 *
    # psi2(box)) / 2; text (Bi-GRU(w) + 1e-5 * a fixed random row) / 2 (psi1(w) without text_gru); no phi,
    # no LayerNorm, no dropout; pipeline/models/segments.py).
    "input_embedding": Optional_(str),
}
# The shared transformer encoder (supplementary: 6 layers, 8 heads; official code d_ff 2048).
_SS_TRANSFORMER: dict[str, Any] = {
    "layers": 6,
    "heads": 8,
    "d_ff": 2048,
    # Pre-norm blocks with a final LayerNorm as the official code; false = post-norm (BERT layout).
    "norm_first": True,
    # Feed-forward activation: relu (official code) | gelu (BERT).
    "activation": "relu",
    # The encoder's LayerNorms (null = the recipe's; standard for the ablations without a recipe):
    # standard (torch: biased variance, eps inside the root) | official (unbiased std, eps added to it).
    "layer_norm": Optional_(str),
    # Optional BERT-base checkpoint (HF BertModel state dict, .bin/.pt) to initialise the encoder
    # ("" = random init). Needs d_model 768, d_ff 3072, layers <= 12, norm_first false, gelu.
    "bert_checkpoint": "",
}
# Masked-segment context prediction (Eq. 5). Null options take the recipe's value
# (pipeline/training/recipes.py): context_loss "logits" (paper: cross-entropy on logits) or "sigmoid"
# (official: cross-entropy applied to sigmoid outputs); mask_rois true (paper: masked RoIs are replaced
# by [MASK]) or false (official: the detector class of sampled RoIs is predicted from unmasked inputs);
# lambda_scale: factor on the top-level lambda (the context weight is lambda * lambda_scale).
_SS_MASK: dict[str, Any] = {"mask_prob": 0.15, "context_loss": Optional_(str), "mask_rois": Optional_(bool),
                            "lambda_scale": Optional_(float)}
# Triplet consistency loss of the "Ours+Con" ablation.
_SS_CON: dict[str, Any] = {"con_weight": 0.1, "con_margin": 0.2}



_INPUT_RULES = (between("d_model", 1, integer=True), between("dropout", 0, 1, high_open=True),
                one_of("phi", "relu", "gelu", "tanh"), one_of("input_embedding", "paper", "official"))
_TRANSFORMER_RULES = (transformer_shape, one_of("activation", "relu", "gelu"))
_MASK_RULES = (between("mask_prob", 0, 1, low_open=True, high_open=True),)
_CON_RULES = (between("con_weight", 0), between("con_margin", 0))

_BUILDER = "pipeline.models.semantic_sharing:SemanticSharing"
_PAPER = "papers/000 (Semantic Sharing)"


def _ss(name: str, description: str, schema: dict, rules: tuple) -> Declaration:
    return Declaration(name, _BUILDER, _PAPER, LABEL_WISE, True, description, schema, rules)


_FULL = {**_SS_INPUT, **_SS_TRANSFORMER, **_SS_MASK}
_FULL_RULES = _INPUT_RULES + _TRANSFORMER_RULES + _MASK_RULES
DECLARED = [
    _ss("ss", "Semantic Sharing: shared transformer over RoIs and words, label loss + lambda * context loss",
        _FULL, _FULL_RULES),
    _ss("ss_con", "ss plus the triplet consistency loss (Ours+Con)", {**_FULL, **_SS_CON}, _FULL_RULES + _CON_RULES),
    _ss("ss_wo_r", "ablation w/o R: mean-pooled global image input and one FC", dict(_SS_INPUT), _INPUT_RULES),
    _ss("ss_wo_t", "ablation w/o T: one FC instead of the transformer", {**_SS_INPUT, **_SS_MASK},
        _INPUT_RULES + _MASK_RULES),
    _ss("ss_wo_c", "ablation w/o C: no masked-segment context prediction", {**_SS_INPUT, **_SS_TRANSFORMER},
        _INPUT_RULES + _TRANSFORMER_RULES),
    _ss("ss_wo_l", "ablation w/o L: no label prediction", _FULL, _FULL_RULES),
    _ss("st", "separate model per modality (ST / Independent)", _FULL, _FULL_RULES),
    _ss("imc", "inter/intra-modal consistency of Eq. 1 only (IMC)", {**_SS_INPUT, **_SS_TRANSFORMER},
        _INPUT_RULES + _TRANSFORMER_RULES),
]
