"""Training recipes: one key per method (`methods.<m>.recipe`) selecting a whole set of option values.

Torch-free (read by `pipeline.params` at load and by `xmr methods`).

- `paper`: what the method's paper writes.
- `official`: what the official code does (`../shared/notes/reference.md`, "Official training recipes
  and behaviours"), with per-dataset values where the official scripts differ by dataset. Evident bugs
  and selection on the test set are never copied (`docs/fidelity.md` lists them).

A recipe value is either a plain value or a mapping `{dataset kind: value, "*": value}`; `"*"` is the
value for every other kind.

Settings sized for one dataset live in `per_dataset.<dataset name>` (`train` loop keys and
`methods.<m>` options with their own `train`), so that the embedded `shapes` set keeps its short loops
and small models while a real dataset gets its recipe's values. This is the one place that says how
the values combine (highest first):
1. `per_dataset.<ds>.methods.<m>` (an option, or a loop key under its `train`): this method on this dataset;
2. `methods.<m>` (an option key that is not null) or `methods.<m>.train`: this method on every dataset;
3. the recipe's value for the dataset's kind;
4. `per_dataset.<ds>.train`: the loop of every method on this dataset where its recipe sets none (the
   dataset's own `train` section);
5. the shared `train` section (loop keys; the papers' sizes) / the schema default.
Recipe `train` values are keyed by dataset kind. Loop *sizes* (epochs, batch, lr, decay epoch) are
given only for the datasets the official scripts name (COCO, Flickr30k, Flickr8k, ...): on any other kind
the loop keeps the `train` section's sizes, so the official recipe changes behaviours there, not
training time. Loop *behaviours* (Adam betas, the clipping scope, the selection metric) sit under `"*"`
and apply on every kind (a named kind's value wins over `"*"`).
Kind `coco2014` (the Karpathy COCO download) reads the `coco` values.

The top-level `lambda` stays the sweep knob (`dvc exp run -S lambda=...`): a method reading it weighs
its context loss by `lambda * lambda_scale`, where `lambda_scale` is the recipe's per-dataset factor
(paper: 0.1 on COCO so that the default lambda 0.1 gives the paper's 0.01, 1 elsewhere; official:
0.005, so that lambda 0.1 gives the official code's 0.0005). A sweep multiplies every dataset's weight
by the same ratio.
"""
from __future__ import annotations

from typing import Any

RECIPE_NAMES = ("paper", "official")

_SS_PAPER = {"context_loss": "logits", "mask_rois": True, "lambda_scale": {"coco": 0.1, "*": 1.0},
             "input_embedding": "paper", "layer_norm": "standard"}
# Official loop behaviours on every kind: clipping of the text path only, and the model kept is the
# epoch of the lowest training loss (xmr: the epoch's mean loss; the official code a mini-batch's).
_SS_OFFICIAL = {"context_loss": "sigmoid", "mask_rois": False, "lambda_scale": 0.005, "input_embedding": "official",
                "layer_norm": "official",
                "train": {"*": {"grad_clip_scope": "text", "select_metric": "train_loss"}}}

# SCAN's official scripts (README of kuanghuei/SCAN; the consistency code for Flickr8k): lr, epochs,
# decay epoch and batch per dataset; COCO validates on the first 1,000 dev images.
_SCAN_TRAIN = {
    "flickr30k": {"lr": 2e-4, "epochs": 30, "lr_decay_epoch": 15, "batch_size": 128},
    "coco": {"lr": 5e-4, "epochs": 20, "lr_decay_epoch": 10, "batch_size": 128, "val_limit_images": 1000},
    "flickr8k": {"lr": 2e-4, "epochs": 20, "lr_decay_epoch": 10, "batch_size": 128},
}
_SCAN_PAPER = {"attention_activation": "relu", "aggregation": "mean", "negatives": "distinct_images",
               "word_init": "word2vec", "lambda1": 9.0, "lambda2": 9.0}
_SCAN_OFFICIAL = {"attention_activation": "leaky_relu", "negatives": "diagonal", "word_init": "random",
                  "lambda1": 9.0, "lambda2": 9.0, "train": _SCAN_TRAIN}
# Semantic consistency weight: 0.3 on Flickr8k and COCO, 1.0 on Flickr30k, in the paper (papers/002 Sec. 4.4)
# and in the official scripts (`mse_lambda` of script/tune_{f8k,coco,f30k}_t-i-AVG_vsesc.sh).
_LAMBDA_CON = {"flickr30k": 1.0, "*": 0.3}

# Dual-path official per-layer learning-rate multipliers (layumi/Image-Text-Embedding, `coco_word2_pool.m`
# and `coco_word2_Rankloss.m`): the word table 1e-3; the ImageNet ResNet-50 0 in stage I (frozen: xmr's
# stage1_freeze) and 1e-3 in stage II (the code alternates 1e-3 / 2e-2 over the backbone's parameter
# list, 1e-4 for conv1: xmr uses one factor); every new layer 1.
_DUAL_PATH_MULTIPLIERS = {"backbone": 1e-3, "words": 1e-3, "new": 1.0}
# The dual-path choices a recipe sets (`pipeline/models/dual_path.py` must match them).
DUAL_PATH_LR_GROUPS = ("backbone", "words", "new")
DUAL_PATH_NEGATIVES = ("sampled", "hardest", "hardest_of_pool")
# Dual-path official schedules, lr 0.1 throughout stage I, then stage II at 0.1 and x0.1 after `stage2_decay`
# of its epochs: COCO stage I 90 epochs (`train_coco_word2_1_pool.m`), stage II [0.1 x 15, 0.01 x 5, 0.001 x 1]
# (`train_coco_Rankloss_shift_hard.m`; xmr's loop decays once, so its 21st epoch runs at 0.01); Flickr30k stage
# I 240 epochs (`train_flickr_word2_1_pool.m`), stage II [0.1 x 40, 0.01 x 20] (`train_flickr_word_Rankloss_
# shift_hard.m`).
_DUAL_PATH_SCHEDULE = {"coco": {"stage1_epochs": 90, "stage2_epochs": 21, "stage2_decay": 15},
                       "flickr30k": {"stage1_epochs": 240, "stage2_epochs": 60, "stage2_decay": 40}}
_DUAL_PATH_KINDS = tuple(_DUAL_PATH_SCHEDULE)

# Dataset kinds of real data (every kind but the embedded `shapes`): DSCMR's official scripts train on
# other datasets (Wikipedia, Pascal Sentence, NUS-WIDE-10k, XMediaNet), all at batch 100.
_REAL_KINDS = ("coco", "flickr30k", "flickr8k", "mirflickr", "nuswide")

RECIPES: dict[str, dict[str, dict[str, Any]]] = {
    **{name: {"paper": _SS_PAPER, "official": _SS_OFFICIAL} for name in ("ss", "ss_con", "ss_wo_t", "ss_wo_l", "st")},
    # Best published SCAN rows: i-t with LogSumExp (lambda_lse 5 Flickr30k / 20 COCO, lambda_softmax 4);
    # t-i AVG with lambda_softmax 9.
    "scan_i2t": {"paper": {**_SCAN_PAPER, "lse_temperature": 6.0},
                 "official": {**_SCAN_OFFICIAL, "aggregation": "lse", "lambda1": 4.0,
                              "lse_temperature": {"flickr30k": 5.0, "coco": 20.0, "*": 6.0}}},
    "scan_t2i": {"paper": {**_SCAN_PAPER, "lse_temperature": 6.0},
                 "official": {**_SCAN_OFFICIAL, "aggregation": "mean", "lse_temperature": 6.0}},
    "scan_consistency": {"paper": {**_SCAN_PAPER, "lse_temperature": 6.0, "lambda_con": _LAMBDA_CON},
                         "official": {**_SCAN_OFFICIAL, "aggregation": "mean", "lse_temperature": 6.0,
                                      "lambda_con": _LAMBDA_CON}},
    # Dual-path: stage-II weights 1 : 1 : 1 in the paper; the official scripts 2 : 1 : 0.1 on COCO and
    # 0 : 1 : 0.1 on Flickr30k. The official ranking loss sums over half the batch's anchors while
    # MatConvNet divides every gradient by the whole batch: ranking_scale 0.5 on xmr's mean over all anchors.
    # The official optimiser (SGD + Nesterov, lr 0.1, weight decay 1e-4, batch 32), its per-layer
    # multipliers (relative to that lr 0.1, so only with it) and its schedule (stage I then stage II, lr
    # x0.1 once in stage II) on the datasets its scripts train; the official head layout on every dataset;
    # test-time flip in both (papers/003 Sec. 5 and the code), applied with image_backbone resnet50 only.
    "dual_path": {
        "paper": {"ranking_negatives": "sampled", "loss_weights": [1.0, 1.0, 1.0], "head": "paper",
                  "test_flip": True, "ranking_scale": 1.0},
        "official": {"ranking_negatives": "hardest_of_pool", "head": "official", "test_flip": True,
                     "ranking_scale": 0.5,
                     "lr_multipliers": {**{kind: _DUAL_PATH_MULTIPLIERS for kind in _DUAL_PATH_KINDS}, "*": None},
                     "loss_weights": {"coco": [2.0, 1.0, 0.1], "flickr30k": [0.0, 1.0, 0.1], "*": [1.0, 1.0, 1.0]},
                     "stage1_epochs": {**{k: v["stage1_epochs"] for k, v in _DUAL_PATH_SCHEDULE.items()}, "*": None},
                     "train": {kind: {"optimizer": "sgd_nesterov", "lr": 0.1, "weight_decay": 1e-4, "batch_size": 32,
                                      "epochs": v["stage1_epochs"] + v["stage2_epochs"],
                                      "lr_decay_epoch": v["stage1_epochs"] + v["stage2_decay"]}
                               for kind, v in _DUAL_PATH_SCHEDULE.items()}},
    },
    # DSCMR: the paper's single-label S (same class) read as "shares a label"; the official code's
    # label product y_i . y_j (counts). Official optimiser settings (main.py): Adam lr 1e-4, betas (0.5, 0.999),
    # batch 100; lr and batch are loop sizes, so on the real-data kinds only.
    "dscmr": {"paper": {"label_similarity": "shares_label"},
              "official": {"label_similarity": "label_count",
                           "train": {"*": {"adam_betas": [0.5, 0.999]},
                                     **{kind: {"batch_size": 100, "lr": 1e-4} for kind in _REAL_KINDS}}}},
    # JFSSL has no authors' code: "official" is the public port the Semantic Sharing baselines ran
    # (heat-kernel kNN and label-product weights, no rescaling); "paper" xmr's reading of the paper's graph.
    "jfssl": {"paper": {"graph": "xmr"}, "official": {"graph": "public_port"}},
}
# dual_path_stage1 is dual_path held in stage I: the same recipes.
RECIPES["dual_path_stage1"] = RECIPES["dual_path"]

# The recipe each method trains with unless `methods.<m>.recipe` says otherwise: the official code
# (what produced the published numbers) for every method that has one.
DEFAULT_RECIPE = "official"

# Option keys a recipe may set, with their choices (None: numeric, checked by its own rule).
OPTION_CHOICES: dict[str, tuple[str, ...] | None] = {
    "context_loss": ("logits", "sigmoid"),
    "mask_rois": None,
    "lambda_scale": None,
    "attention_activation": ("relu", "leaky_relu"),
    "aggregation": ("mean", "lse"),
    "lse_temperature": None,
    "negatives": ("distinct_images", "diagonal"),
    "word_init": ("word2vec", "random"),
    "label_similarity": ("shares_label", "label_count"),
    "head": ("paper", "official"),
    "test_flip": None,
    "lr_multipliers": None,
    "graph": ("xmr", "public_port"),
    "input_embedding": ("paper", "official"),
    "layer_norm": ("standard", "official"),
    "lambda_con": None,
    "ranking_scale": None,
    "stage1_epochs": None,
}

# Kinds that read another kind's recipe values (the same dataset in another layout).
_KIND_ALIASES = {"coco2014": "coco"}


def has_recipes(name: str) -> bool:
    return name in RECIPES


def for_kind(value: Any, kind: str | None) -> Any:
    """A recipe value for dataset kind `kind` (None: the `"*"` value)."""
    kind = _KIND_ALIASES.get(kind, kind)
    if isinstance(value, dict) and "*" in value:
        return value.get(kind, value["*"]) if kind is not None else value["*"]
    return value


def recipe_values(name: str, recipe: str, kind: str | None) -> tuple[dict[str, Any], dict[str, Any]]:
    """`(method options, train values)` of method `name`'s `recipe` for dataset kind `kind`."""
    table = RECIPES.get(name, {}).get(recipe, {})
    options = {k: for_kind(v, kind) for k, v in table.items() if k != "train"}
    loops = table.get("train", {})
    kind = _KIND_ALIASES.get(kind, kind)
    train = {**loops.get("*", {}), **(loops.get(kind, {}) if kind is not None else {})}
    return options, train


def dataset_layer(params: dict, dataset: str | None) -> dict:
    """`per_dataset.<dataset>`: the settings sized for that dataset ({} when it has none)."""
    if dataset is None:
        return {}
    return (params.get("per_dataset") or {}).get(dataset) or {}


def _layer_method(params: dict, name: str, dataset: str | None) -> dict:
    return (dataset_layer(params, dataset).get("methods") or {}).get(name) or {}


def resolve_settings(params: dict, name: str, kind: str | None = None, dataset: str | None = None) -> dict:
    """`methods.<name>` with `per_dataset.<dataset>.methods.<name>` over it and every null option filled
    from its recipe for dataset kind `kind`."""
    layer = _layer_method(params, name, dataset)
    section = {k: v for k, v in {**params["methods"][name], **layer}.items() if k != "train"}
    options, _ = recipe_values(name, section.get("recipe", ""), kind)
    for key, value in options.items():
        if key in section and section[key] is None:
            section[key] = value
    return section


def recipe_train(params: dict, name: str, kind: str | None = None, dataset: str | None = None) -> dict:
    """The loop settings method `name` trains with on `dataset` (of kind `kind`), in the order of the
    module docstring: `train`, `per_dataset.<dataset>.train`, the recipe's values for `kind`, the method's
    own `methods.<m>.train`, then `per_dataset.<dataset>.methods.<m>.train`."""
    section = params["methods"].get(name, {})
    recipe = _layer_method(params, name, dataset).get("recipe", section.get("recipe", ""))
    _, train = recipe_values(name, recipe, kind)
    return {**params["train"], **dataset_layer(params, dataset).get("train", {}), **train,
            **section.get("train", {}), **_layer_method(params, name, dataset).get("train", {})}


def dataset_kind(params: dict, dataset: str | None) -> str | None:
    if dataset is None or dataset not in params.get("data", {}):
        return None
    return params["data"][dataset]["kind"]
