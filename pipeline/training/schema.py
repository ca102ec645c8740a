"""Parameter schema of the `train` section and of every method's `methods.<name>` section.

Kept free of torch imports because `pipeline.params` (read by every stage) includes it; it imports
nothing from `pipeline.params` (the shared checks are in `pipeline.param_checks`).
Each method has its own section so that DVC re-runs only the methods whose parameters changed;
`lambda` stays a top-level key and is read only by the methods whose objective has a context term
(`USES_LAMBDA`). Defaults are the paper's (papers/000 + supplementary) or, where the paper is
silent, the official code's; `params.yaml` holds the small values used on the embedded dataset.
"""
from __future__ import annotations

from typing import Any

from pipeline.models.baselines.params import BASELINE_SCHEMAS, check_baseline_section
from pipeline.param_checks import AnyMapping, Optional_, failer
from pipeline.training.recipes import (DEFAULT_RECIPE, OPTION_CHOICES, RECIPE_NAMES, RECIPES, dataset_kind,
                                       recipe_train)

TRAIN_SCHEMA: dict[str, Any] = {
    # Mini-batch size (pairs of one image and one of its captions).
    "batch_size": 64,
    # Adam learning rate (paper 1e-4; official code 2e-4).
    "lr": 1e-4,
    "weight_decay": 0.0,
    # Maximal number of epochs (paper 45); one epoch visits every training caption once.
    "epochs": 45,
    # Early stopping: stop after this many epochs without a better validation metric (0 = never).
    "patience": 0,
    # Learning rate multiplied by lr_decay_factor from this epoch on (1-based: 15 = the 16th epoch
    # trains at the decayed rate, as SCAN's `lr_update 15`); 0 = constant.
    "lr_decay_epoch": 0,
    "lr_decay_factor": 0.1,
    # "adam" or "sgd_nesterov" (SGD with Nesterov momentum `momentum`, the dual-path official code).
    "optimizer": "adam",
    "momentum": 0.9,
    # Adam's (beta1, beta2): torch's default; DSCMR's official code (0.5, 0.999).
    "adam_betas": [0.9, 0.999],
    # Gradient-norm clipping (0 = off) over `grad_clip_scope`: "all" parameters, or "text" (the
    # parameters only the text path uses, a method's `text_parameters()`: the Semantic Sharing official
    # code clips its text encoder only; an error at load for a method without such a group).
    "grad_clip": 2.0,
    "grad_clip_scope": "all",
    # "auto" (cuda when available, else cpu), "cpu", "cuda" or "cuda:<index>".
    "device": "auto",
    # bfloat16 autocast on CUDA (ignored on CPU).
    "amp": True,
    # Items per forward pass when encoding validation/test items.
    "eval_batch_size": 256,
    # Validation metric for model selection: "auto" = label-wise NDCG when the dataset has labels,
    # rsum otherwise; or any key of pipeline.metrics' result; or "train_loss": the epoch with the lowest
    # mean training loss (the Semantic Sharing official code keeps the lowest mini-batch loss).
    "select_metric": "auto",
    # Validate on the first N images of the val split (in table order) and their captions; 0 = all
    # (SCAN's official COCO validation: the first 1,000 dev images).
    "val_limit_images": 0,
    # Region features are held in memory (float16) when they need at most this many GiB; null: what the
    # machine has available when the stage starts, minus a margin (a quarter, at least 2 GiB).
    "cache_features_gb": Optional_(float),
    # Stop with an error when an epoch's mean loss exceeds this multiple of the first steps' loss.
    "diverge_ratio": 20.0,
    # CPU threads for torch (0 = torch's default).
    "threads": 0,
}

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
# Dual-path instance loss (papers/003): 2048-d embedding (fc-bn-relu-fc heads), dropout 0.75,
# text CNN over 32 tokens with ResNet-50 stage depths/widths, ranking margin 1 with one sampled
# negative per anchor ("hardest" for VSE++ mining), stage II weights (rank, visual, textual) 1/1/1
# (stage I: 0/1/1 for `stage1_epochs` epochs; the paper stops stage I at convergence).
# stage1_freeze: "pretrained" freezes the ImageNet backbone in stage I (paper; nothing on RoI
# features), "image_path" the whole image path. image_backbone "resnet50" trains end to end from
# pixels and needs resnet_weights (torchvision state dict) and image_table (table.parquet).
_DUAL_PATH: dict[str, Any] = {
    "embed_dim": 2048, "dropout": 0.75, "text_length": 32, "position_shift": True,
    "text_blocks": [3, 4, 6, 3], "text_widths": [256, 512, 1024, 2048], "finetune_words": True,
    # ranking_negatives (null = the recipe's): sampled | hardest | hardest_of_pool (official: an image
    # anchor takes the hardest of `negative_pool` random texts of other images, a text anchor a random
    # in-batch image); loss_weights null = the recipe's (official COCO 2 : 1 : 0.1).
    "margin": 1.0, "ranking_negatives": Optional_(str), "negative_pool": 256, "loss_weights": Optional_(list),
    # head (null = the recipe's): paper (fc-bn-relu-fc) | official (image fc-bn-relu-fc-bn-relu; text CNN
    # with wide first blocks, max pool, fc-bn-relu). lr_multipliers (null = the recipe's; {} = all 1):
    # {backbone, words, new} factors on the learning rate. test_flip (null = the recipe's): mirror averaging
    # of evaluated images, image_backbone resnet50 only.
    "head": Optional_(str), "lr_multipliers": Optional_(AnyMapping), "test_flip": Optional_(bool),
    # stage1_epochs null = the recipe's (official: COCO 90, Flickr30k 240; none elsewhere: write it).
    # ranking_scale null = the recipe's: factor on the ranking loss, xmr's mean over the batch's anchors
    # (official 0.5: its RankLoss sums over half the batch's anchors, divided by the whole batch).
    "stage1_epochs": Optional_(int), "stage1_freeze": "pretrained", "ranking_scale": Optional_(float),
    "image_backbone": "roi", "resnet_weights": "", "image_table": "", "image_size": 224,
}

METHOD_SCHEMAS: dict[str, dict[str, Any]] = {
    "ss": {**_SS_INPUT, **_SS_TRANSFORMER, **_SS_MASK},
    "ss_con": {**_SS_INPUT, **_SS_TRANSFORMER, **_SS_MASK, **_SS_CON},
    "ss_wo_r": {**_SS_INPUT},
    "ss_wo_t": {**_SS_INPUT, **_SS_MASK},
    "ss_wo_c": {**_SS_INPUT, **_SS_TRANSFORMER},
    "ss_wo_l": {**_SS_INPUT, **_SS_TRANSFORMER, **_SS_MASK},
    "st": {**_SS_INPUT, **_SS_TRANSFORMER, **_SS_MASK},
    "imc": {**_SS_INPUT, **_SS_TRANSFORMER},
    "scan_i2t": {**_SCAN, "lambda1": Optional_(float)},
    "scan_t2i": {**_SCAN, "lambda2": Optional_(float)},
    "scan_consistency": {**_SCAN, "lambda1": Optional_(float), "lambda2": Optional_(float),
                         "lambda_con": Optional_(float)},
    "dual_path": dict(_DUAL_PATH),
    # Stage I throughout (papers/003's "Stage I" rows): the same section as dual_path (params.yaml writes it
    # as a YAML merge of dual_path's, so one source of truth); `stage1_epochs` is not read.
    "dual_path_stage1": dict(_DUAL_PATH),
    **BASELINE_SCHEMAS,  # Table-1 baselines: cca lcfs jfssl dcca dscmr scml vilbert (pipeline/models/baselines/params.py)
}

# Methods whose objective reads the top-level `lambda` (those with the context loss L2).
# Shared `train` keys a method section may override (`methods.<m>.train`), so slow methods can run fewer
# epochs or another learning rate than the rest.
METHOD_TRAIN_OVERRIDES = ("epochs", "lr", "batch_size", "lr_decay_epoch", "lr_decay_factor", "optimizer",
                          "momentum", "weight_decay", "adam_betas", "grad_clip", "grad_clip_scope",
                          "select_metric", "val_limit_images")

# Every method with recipes gets `recipe: paper | official` (pipeline/training/recipes.py).
for _name in RECIPES:
    METHOD_SCHEMAS[_name]["recipe"] = DEFAULT_RECIPE


def method_train_settings(params: dict, name: str, dataset: str | None = None) -> dict:
    """The `train` section as method `name` sees it on `dataset`: shared values, then its recipe's
    values for the dataset's kind, then its own `methods.<name>.train` overrides."""
    return recipe_train(params, name, dataset_kind(params, dataset))


USES_LAMBDA = frozenset(name for name, schema in METHOD_SCHEMAS.items() if "mask_prob" in schema)

# Methods with a text-only parameter group (`text_parameters()`), hence `train.grad_clip_scope: text`:
# the Semantic Sharing family (`pipeline/models/semantic_sharing.py`; a test keeps both lists equal).
TEXT_CLIP_METHODS = frozenset(name for name, schema in METHOD_SCHEMAS.items() if "text_gru" in schema)
GRAD_CLIP_SCOPES = ("all", "text")

_DEVICES = ("auto", "cpu", "cuda")


def check_training_params(params: dict, source: str = "params.yaml") -> None:
    """Range checks the type-based schema cannot express; raises ParamError naming the key."""
    fail = failer(source)

    lam = params["lambda"]
    if not lam >= 0 or lam != lam or lam == float("inf"):
        fail("lambda", "a finite number >= 0", lam)
    train = params["train"]
    for key in ("batch_size", "epochs", "eval_batch_size"):
        if train[key] < 1:
            fail(f"train.{key}", "an integer >= 1", train[key])
    for key in ("patience", "threads"):
        if train[key] < 0:
            fail(f"train.{key}", "an integer >= 0", train[key])
    if not train["lr"] > 0:
        fail("train.lr", "> 0", train["lr"])
    if train["cache_features_gb"] is not None and not train["cache_features_gb"] >= 0:
        fail("train.cache_features_gb", ">= 0 or null (what the machine has available)", train["cache_features_gb"])
    for key in ("weight_decay", "grad_clip"):
        if not train[key] >= 0:
            fail(f"train.{key}", ">= 0", train[key])
    if not train["diverge_ratio"] > 1:
        fail("train.diverge_ratio", "> 1", train["diverge_ratio"])
    device = train["device"]
    if device not in _DEVICES and not (device.startswith("cuda:") and device[5:].isdigit()):
        fail("train.device", "auto, cpu, cuda or cuda:<index>", device)
    for name, section in params["methods"].items():
        _check_method_section(name, section, fail)
        _check_recipe(params, name, section, fail)


def _check_method_section(name: str, s: dict, fail) -> None:
    key = f"methods.{name}."
    if "d_model" in s and s["d_model"] < 1:
        fail(key + "d_model", "an integer >= 1", s["d_model"])
    if "dropout" in s and not 0 <= s["dropout"] < 1:
        fail(key + "dropout", "in [0, 1)", s["dropout"])
    if "phi" in s and s["phi"] not in ("relu", "gelu", "tanh"):
        fail(key + "phi", "relu, gelu or tanh", s["phi"])
    if s.get("input_embedding") is not None and s["input_embedding"] not in OPTION_CHOICES["input_embedding"]:
        fail(key + "input_embedding", " or ".join(OPTION_CHOICES["input_embedding"]), s["input_embedding"])
    if "mask_prob" in s and not 0 < s["mask_prob"] < 1:
        fail(key + "mask_prob", "in (0, 1)", s["mask_prob"])
    if "layers" in s:
        for sub in ("layers", "heads", "d_ff"):
            if s[sub] < 1:
                fail(key + sub, "an integer >= 1", s[sub])
        if s["d_model"] % s["heads"]:
            fail(key + "heads", f"a divisor of d_model ({s['d_model']})", s["heads"])
        if s["activation"] not in ("relu", "gelu"):
            fail(key + "activation", "relu or gelu", s["activation"])
    check_baseline_section(name, s, fail)
    if name.startswith("scan_"):
        _check_scan_section(key, s, fail)
    if name in DUAL_PATH_METHODS:
        _check_dual_path_section(key, s, fail)
    if "con_weight" in s:
        if not s["con_weight"] >= 0:
            fail(key + "con_weight", ">= 0", s["con_weight"])
        if not s["con_margin"] >= 0:
            fail(key + "con_margin", ">= 0", s["con_margin"])


def _check_scan_section(key: str, s: dict, fail) -> None:
    for k in ("lambda1", "lambda2", "attention_memory_mb"):
        if s.get(k) is not None and not s[k] > 0:
            fail(key + k, "> 0", s[k])
    for k in ("margin", "lambda_con"):
        if s.get(k) is not None and not s[k] >= 0:
            fail(key + k, ">= 0", s[k])


# Choices of the dual-path section (papers/003; `pipeline/models/dual_path.py`).
DUAL_PATH_METHODS = ("dual_path", "dual_path_stage1")
DUAL_PATH_NEGATIVES = ("sampled", "hardest", "hardest_of_pool")
DUAL_PATH_FREEZE = ("pretrained", "image_path")
DUAL_PATH_BACKBONES = ("roi", "resnet50")
DUAL_PATH_LR_GROUPS = ("backbone", "words", "new")


def _check_dual_path_section(key: str, s: dict, fail) -> None:
    for k in ("embed_dim", "text_length", "image_size"):
        if s[k] < 1:
            fail(key + k, "an integer >= 1", s[k])
    if not s["text_blocks"] or len(s["text_blocks"]) != len(s["text_widths"]):
        fail(key + "text_widths", f"a non-empty list as long as text_blocks ({s['text_blocks']})", s["text_widths"])
    if any(b < 1 for b in s["text_blocks"]) or any(w < 1 for w in s["text_widths"]):
        fail(key + "text_blocks", "positive block counts with positive text_widths", s["text_blocks"])
    if not s["margin"] >= 0:
        fail(key + "margin", ">= 0", s["margin"])
    if s["stage1_epochs"] is not None and s["stage1_epochs"] < 0:
        fail(key + "stage1_epochs", "an integer >= 0", s["stage1_epochs"])
    if s["stage1_freeze"] not in DUAL_PATH_FREEZE:
        fail(key + "stage1_freeze", " or ".join(DUAL_PATH_FREEZE), s["stage1_freeze"])
    if s["image_backbone"] not in DUAL_PATH_BACKBONES:
        fail(key + "image_backbone", " or ".join(DUAL_PATH_BACKBONES), s["image_backbone"])
    if s.get("test_flip") and s["image_backbone"] != "resnet50":
        fail(key + "test_flip", "false or null when image_backbone is roi (RoI features have no mirror image)",
             s["test_flip"])
    if s["image_backbone"] == "resnet50":
        for k in ("resnet_weights", "image_table"):
            if not s[k]:
                fail(key + k, "a file path when image_backbone is resnet50 (ImageNet weights / the prepared table)",
                     s[k])


def _check_recipe(params: dict, name: str, section: dict, fail) -> None:
    """The recipe name, the option values (written or from the recipe) and the loop values each dataset
    gives this method."""
    key = f"methods.{name}."
    if "recipe" in section and section["recipe"] not in RECIPE_NAMES:
        fail(key + "recipe", " or ".join(RECIPE_NAMES), section["recipe"])
    from pipeline.training.recipes import resolve_settings

    kinds = {dataset_kind(params, d) for d in params.get("datasets", [])} or {None}
    for kind in sorted(kinds, key=str):
        resolved = resolve_settings(params, name, kind)
        for opt, choices in OPTION_CHOICES.items():
            value = resolved.get(opt) if name in RECIPES else None
            if value is None:
                continue
            if choices is not None and value not in choices:
                fail(key + opt, " or ".join(choices), value)
        for opt in ("lse_temperature", "lambda1", "lambda2", "lambda_scale"):
            if resolved.get(opt) is not None and not resolved[opt] > 0:
                fail(key + opt, "> 0", resolved[opt])
        for opt in ("lambda_con", "ranking_scale"):
            if resolved.get(opt) is not None and not resolved[opt] >= 0:
                fail(key + opt, ">= 0", resolved[opt])
        if name == "dual_path" and resolved.get("stage1_epochs") is None and name in _run_methods(params):
            fail(key + "stage1_epochs", f"an integer >= 0 (the {section.get('recipe')} recipe gives none for "
                                        f"dataset kind {kind})", None)
        if resolved.get("ranking_negatives") is not None and resolved["ranking_negatives"] not in DUAL_PATH_NEGATIVES:
            fail(key + "ranking_negatives", " or ".join(DUAL_PATH_NEGATIVES), resolved["ranking_negatives"])
        if "negative_pool" in resolved and resolved["negative_pool"] < 1:
            fail(key + "negative_pool", "an integer >= 1", resolved["negative_pool"])
        _check_lr_multipliers(key, resolved.get("lr_multipliers"), fail)
        weights = resolved.get("loss_weights")
        if weights is not None and (len(weights) != 3 or not all(
                isinstance(w, (int, float)) and not isinstance(w, bool) and w >= 0 for w in weights)):
            fail(key + "loss_weights", "three numbers >= 0 (ranking, visual, textual)", weights)
        _check_loop(params, name, kind, fail)


def _run_methods(params: dict) -> set[str]:
    """The methods params.yaml's `run` lists trains (none when it has no `run` section)."""
    run = params.get("run") or {}
    return {*run.get("methods", []), *run.get("lambda_methods", [])}


def _check_lr_multipliers(key: str, mult, fail) -> None:
    if mult is None:
        return
    for group, value in mult.items():
        if group not in DUAL_PATH_LR_GROUPS:
            fail(key + "lr_multipliers", f"a mapping with keys among {', '.join(DUAL_PATH_LR_GROUPS)}", mult)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
            fail(f"{key}lr_multipliers.{group}", "a number >= 0", value)


def _check_loop(params: dict, name: str, kind: str | None, fail) -> None:
    """A decay epoch within the run and a known optimiser, for the loop values method `name` trains with on
    a dataset of kind `kind`; the error names where the value came from (the method's `train` override,
    its recipe, or the shared `train` section)."""
    from pipeline.training.recipes import method_train_overrides, recipe_values

    train = recipe_train(params, name, kind)
    own = params["methods"][name].get("train", {})
    _, from_recipe = recipe_values(name, params["methods"][name].get("recipe", ""), kind)

    def where(key: str) -> str:
        if kind is not None and key in own.get(kind, {}):
            return f"methods.{name}.train.{kind}.{key}"
        if key in method_train_overrides(params["methods"][name], kind):
            return f"methods.{name}.train.{key}"
        if key in from_recipe:
            return f"methods.{name}.recipe ({params['methods'][name]['recipe']}, {kind}: {key})"
        return f"train.{key}"

    if train["optimizer"] not in ("adam", "sgd_nesterov"):
        fail(where("optimizer"), "adam or sgd_nesterov", train["optimizer"])
    decay = train["lr_decay_epoch"]
    if decay < 0:
        fail(where("lr_decay_epoch"), "an integer >= 0 (0 = no decay)", decay)
    if decay >= train["epochs"] > 0 and decay > 0:
        fail(where("lr_decay_epoch"), f"before the last epoch (epochs {train['epochs']} for method {name}; "
                                      f"later decays no epoch)", decay)
    if not 0 < train["lr_decay_factor"] <= 1:
        fail(where("lr_decay_factor"), "in (0, 1]", train["lr_decay_factor"])
    if not 0 <= train["momentum"] < 1:
        fail(where("momentum"), "in [0, 1)", train["momentum"])
    betas = train["adam_betas"]
    if len(betas) != 2 or not all(isinstance(b, (int, float)) and not isinstance(b, bool) and 0 <= b < 1
                                  for b in betas):
        fail(where("adam_betas"), "two numbers in [0, 1) (beta1, beta2)", betas)
    scope = train["grad_clip_scope"]
    if scope not in GRAD_CLIP_SCOPES:
        fail(where("grad_clip_scope"), " or ".join(GRAD_CLIP_SCOPES), scope)
    if scope == "text" and name not in TEXT_CLIP_METHODS:
        fail(where("grad_clip_scope"), f"all (method {name} has no text-only parameter group; text is for "
                                       f"{', '.join(sorted(TEXT_CLIP_METHODS))})", scope)
    if not train["grad_clip"] >= 0:
        fail(where("grad_clip"), ">= 0", train["grad_clip"])
    if train["val_limit_images"] < 0:
        fail(where("val_limit_images"), "an integer >= 0 (0 = every val image)", train["val_limit_images"])
