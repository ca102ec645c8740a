"""Parameter sections `methods.<name>` of the Table-1 baselines (torch-free; read by pipeline.params).

Defaults are the papers' (or their official code's) where these state a value; where they are silent
the comment says so and names the value chosen here. Training settings shared with every gradient
method (batch size, learning rate, epochs) live in the `train` section, not here.
"""
from __future__ import annotations

from typing import Any

from pipeline.param_checks import Optional_

# Inputs of the linear methods: the mean of the 36 RoI features, and a caption feature (papers/000:
# "we pre-extract deep embeddings for linear methods").
_LINEAR: dict[str, Any] = {
    # Caption feature: "mean" (mean of the caption's word vectors, text/embeddings.npy) or "bow" (word
    # counts over the vocabulary, divided by the caption length).
    "text_features": "mean",
    # Training (image, caption) pairs used for fitting; 0 = all, otherwise a random subset drawn with `seed`.
    "max_pairs": 0,
}

# Caption encoder of the gradient baselines: "mean" (mean word vector), "cnn" (Kim-2014 sentence CNN
# over the word vectors: widths 3/4/5, 100 filters each, max over time).
_TEXT: dict[str, Any] = {"text_encoder": "mean", "finetune_words": False}

BASELINE_SCHEMAS: dict[str, dict[str, Any]] = {
    "cca": {
        **_LINEAR,
        # Canonical components kept (Hotelling gives none; 10 as DCCA's experiments).
        "n_components": 10,
        # "sklearn": scikit-learn's CCA (NIPALS: a pseudo-inverse and power iterations per component);
        # "svd": the closed-form solution (eigendecomposition of the whitened cross-covariance), much
        # faster on many pairs; both give the same canonical directions up to NIPALS' tolerance.
        "solver": "sklearn",
        # scikit-learn NIPALS iterations per component and its tolerance (scikit-learn's defaults).
        "max_iter": 500,
        "tol": 1e-6,
        # Ridge added to both (standardised) covariances by the "svd" solver.
        "reg": 1e-4,
    },
    "lcfs": {
        **_LINEAR,
        # Weights of the trace norm of the projected data [X_a U, X_b V] and of the l21 norms of U and V.
        # The paper tunes both on validation data and gives no values; these (on the per-pair scale of
        # lcfs.py) were the best of a small grid on the embedded data's validation split.
        "lambda_trace": 0.01,
        "lambda_l21": 1e-4,
        # Half-quadratic iterations (the paper iterates to convergence; 20 suffice here).
        "iterations": 20,
        # Smoothing of the half-quadratic weights (avoids division by zero rows / singular values).
        "hq_eps": 1e-4,
    },
    "jfssl": {
        **_LINEAR,
        # Weights of the l21 norms and of the multimodal graph term: tuned in the paper, no values
        # given; these (per-pair scale of jfssl.py) from a small grid on the embedded validation split.
        "lambda_l21": 1e-4,
        "lambda_graph": 1e-3,
        # Neighbours of the intra-modality kNN graph.
        "knn": 10,
        # Graph weights (null = the recipe's): xmr (0/1 kNN and shares-a-label edges, blocks rescaled to
        # mean degree 1) | public_port (heat kernel exp(-d / heat_t) over the knn neighbours, cross block
        # Y Y^T / max, no rescaling; the port's own heat_t is 0.5).
        "graph": Optional_(str),
        "heat_t": 0.5,
        "iterations": 20,
        "hq_eps": 1e-4,
    },
    "dcca": {
        **_TEXT,
        # Hidden layers of each view's network and the output width o (common DCCA ports: 1024-1024-1024, o = 10).
        "hidden": [1024, 1024, 1024],
        "out_dim": 10,
        # Hidden non-linearity: sigmoid (ports) | relu | tanh.
        "activation": "sigmoid",
        # Covariance regularisers r1 = r2 (added to the diagonal), as the ports' 1e-4.
        "reg": 1e-4,
        # Correlation of the top-k canonical pairs; 0 = all o (the paper's total correlation).
        "top_k": 0,
        # Momentum of the running covariances that give the final linear CCA (the paper fits CCA on
        # the training outputs after training; here it is estimated from the mini-batches).
        "stats_momentum": 0.05,
        # How the final linear CCA is fitted: "one_pass" (the paper and the public port: on the training
        # outputs, in one pass over the training pairs after each epoch's training) or "running" (the
        # running mini-batch covariances above, no extra pass).
        "final_cca": "one_pass",
    },
    "dscmr": {
        **_TEXT,
        # Paper: word2vec + sentence CNN for text.
        "text_encoder": "cnn",
        "finetune_words": True,
        # Official code: one FC(2048)+ReLU per modality, a shared FC to the 1024-d common space, a
        # shared linear label predictor.
        "hidden": 2048,
        "common_dim": 1024,
        # J = J1 + alpha * J2 + beta * J3 (official code: alpha 1e-3, beta 1e-1).
        "alpha": 1e-3,
        "beta": 0.1,
        # S of J2 (null = the recipe's, pipeline/training/recipes.py): "shares_label" (paper) or
        # "label_count" (official code: y_i . y_j).
        "label_similarity": Optional_(str),
    },
    "scml": {
        **_TEXT,
        # The paper does not describe its text input; trained word vectors learn much faster here.
        "finetune_words": True,
        # Width of each modality's input layer and of the unified network (not given; assumption).
        "hidden": 1024,
        # Learning rate of the inner (sequential, per-modality) SGD steps of the meta-update (assumption).
        "inner_lr": 0.1,
        # Order of the modality tasks in each meta-step: image_text | text_image | alternate.
        "order": "alternate",
    },
    "vilbert": {
        # ViLBERT base: BERT-base text stream (768-d, 12 heads, 3072 FF, GELU); one width for both streams here.
        "d_model": 768,
        "heads": 12,
        "d_ff": 3072,
        "activation": "gelu",
        "dropout": 0.1,
        # Single-stream (self-attention) layers per stream before the co-attention (assumption: 6).
        "layers": 6,
        # Co-attentional blocks (ViLBERT: 6); each but the last is followed by a self-attention layer per stream.
        "co_layers": 6,
        "finetune_words": True,
        # "alignment": ViLBERT's retrieval fine-tuning (softmax over the true caption and `negatives`
        # distractors); "label": binary cross-entropy on pairs, target = the pair shares a label.
        "objective": "alignment",
        "negatives": 3,
        # (image, caption) pairs per co-attention forward pass when scoring (memory bound).
        "pair_chunk": 16384,
    },
}

_CHOICES = {
    "text_features": ("mean", "bow"),
    "text_encoder": ("mean", "cnn"),
    "order": ("image_text", "text_image", "alternate"),
    "objective": ("alignment", "label"),
    "solver": ("sklearn", "svd"),
}
_POSITIVE_INTS = ("n_components", "max_iter", "iterations", "knn", "out_dim", "hidden", "common_dim",
                  "co_layers", "negatives", "pair_chunk")
_NON_NEGATIVE = ("max_pairs", "lambda_trace", "lambda_l21", "lambda_graph", "reg", "top_k", "alpha", "beta")


def check_baseline_section(key: str, s: dict, fail) -> None:
    """Range checks of a baseline's section (a value rule of its declaration, pipeline/methods/baselines.py):
    `key` prefixes the names in errors (`methods.<name>.`), `fail(key, expected, value)` raises ParamError."""
    for k, options in _CHOICES.items():
        if k in s and s[k] not in options:
            fail(key + k, " or ".join(options), s[k])
    for k in _POSITIVE_INTS:
        if k in s:
            values = s[k] if isinstance(s[k], list) else [s[k]]
            if isinstance(s[k], list) and not values:
                fail(key + k, "a non-empty list of integers >= 1", s[k])
            if any(v < 1 for v in values):
                fail(key + k, "integers >= 1" if isinstance(s[k], list) else "an integer >= 1", s[k])
    for k in _NON_NEGATIVE:
        if k in s and not s[k] >= 0:
            fail(key + k, ">= 0", s[k])
    for k in ("tol", "hq_eps", "inner_lr", "heat_t"):
        if k in s and not s[k] > 0:
            fail(key + k, "> 0", s[k])
    if "stats_momentum" in s and not 0 < s["stats_momentum"] <= 1:
        fail(key + "stats_momentum", "in (0, 1]", s["stats_momentum"])
    if "final_cca" in s and s["final_cca"] not in ("one_pass", "running"):
        fail(key + "final_cca", "one_pass or running", s["final_cca"])
    if "activation" in s and "hidden" in s and s["activation"] not in ("sigmoid", "relu", "tanh"):
        fail(key + "activation", "sigmoid, relu or tanh", s["activation"])
    if "top_k" in s and s["top_k"] > s["out_dim"]:
        fail(key + "top_k", f"at most out_dim ({s['out_dim']})", s["top_k"])
