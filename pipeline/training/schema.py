"""Parameter schema of the `train` section and of every method's `methods.<name>` section.

Kept free of torch imports because `pipeline.params` (read by every stage) includes it; it imports
nothing from `pipeline.params` (the shared checks are in `pipeline.param_checks`).
Each method has its own section so that DVC re-runs only the methods whose parameters changed;
`lambda` stays a top-level key and is read only by the methods whose objective has a context term
(`USES_LAMBDA`). Each method's section, defaults and value rules are declared with the method
(`pipeline/methods/`); `params.yaml` holds overrides (the small values used on the embedded dataset).
"""
from __future__ import annotations

from typing import Any

from pipeline.methods import declarations
from pipeline.param_checks import Optional_, failer
from pipeline.training.recipes import (DEFAULT_RECIPE, DUAL_PATH_LR_GROUPS, DUAL_PATH_NEGATIVES, OPTION_CHOICES,
                                       RECIPE_NAMES, RECIPES, dataset_kind, recipe_train)

TRAIN_SCHEMA: dict[str, Any] = {
    # Mini-batch size (pairs of one image and one of its captions).
    "batch_size": 64,
    # Adam learning rate (paper 1e-4; official code 2e-4).
    "lr": 1e-4,
    "weight_decay": 0.0,
    # Maximal number of epochs (paper 45); one epoch visits every training caption once.
    "epochs": 45,
    # Early stopping: stop after this many epochs in a row that did not improve the validation curve by
    # more than 0.2% of the metric's range (pipeline/training/plateau.py, the report's rule; 0 = never).
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
    # Pin the CPU kernels of every `xmr` stage (detector training and extraction too) to paths every x86-64
    # CPU has, before torch loads (pipeline/machine.py PORTABLE_ENV; stages/cli.py sets them).
    "portable_kernels": False,
}

# Every declared method's section (pipeline/methods/): a method without a section in params.yaml runs on
# these defaults.
DECLARATIONS = declarations()
METHOD_SCHEMAS: dict[str, dict[str, Any]] = {name: dict(d.schema) for name, d in DECLARATIONS.items()}

# Methods whose objective reads the top-level `lambda` (those with the context loss L2).
# Shared `train` keys a method section may override (`methods.<m>.train`), so slow methods can run fewer
# epochs or another learning rate than the rest.
METHOD_TRAIN_OVERRIDES = ("epochs", "patience", "lr", "batch_size", "lr_decay_epoch", "lr_decay_factor", "optimizer",
                          "momentum", "weight_decay", "adam_betas", "grad_clip", "grad_clip_scope",
                          "select_metric", "val_limit_images")

# Every method with recipes gets `recipe: paper | official` (pipeline/training/recipes.py).
for _name in RECIPES:
    METHOD_SCHEMAS[_name]["recipe"] = DEFAULT_RECIPE


def method_train_settings(params: dict, name: str, dataset: str | None = None) -> dict:
    """The `train` section as method `name` sees it on `dataset` (precedence: pipeline/training/recipes.py)."""
    return recipe_train(params, name, dataset_kind(params, dataset), dataset)


USES_LAMBDA = frozenset(name for name, d in DECLARATIONS.items() if d.reads_lambda)

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
        for dataset, layer in (params.get("per_dataset") or {}).items():
            own = (layer.get("methods") or {}).get(name)
            if own:
                _check_method_section(name, {**section, **own}, fail, f"per_dataset.{dataset}.methods.{name}.")
        _check_recipe(params, name, section, fail)


def _check_method_section(name: str, s: dict, fail, key: str = "") -> None:
    """The value rules method `name` declares (pipeline/methods/), on its section `s`; `key` prefixes the
    names in errors (default `methods.<name>.`)."""
    key = key or f"methods.{name}."
    for rule in DECLARATIONS[name].rules:
        rule(key, s, fail)


def _check_recipe(params: dict, name: str, section: dict, fail) -> None:
    """The recipe name, the option values (written or from the recipe) and the loop values each dataset
    of the run gives this method (with its `per_dataset` settings)."""
    key = f"methods.{name}."
    from pipeline.training.recipes import dataset_layer, resolve_settings

    if "recipe" in section and section["recipe"] not in RECIPE_NAMES:
        fail(key + "recipe", " or ".join(RECIPE_NAMES), section["recipe"])
    for dataset in params.get("datasets", []) or [None]:
        own = (dataset_layer(params, dataset).get("methods") or {}).get(name, {})
        if "recipe" in own and own["recipe"] not in RECIPE_NAMES:
            fail(f"per_dataset.{dataset}.methods.{name}.recipe", " or ".join(RECIPE_NAMES), own["recipe"])
        kind = dataset_kind(params, dataset)
        resolved = resolve_settings(params, name, kind, dataset)
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
        if resolved.get("ranking_negatives") is not None and resolved["ranking_negatives"] not in DUAL_PATH_NEGATIVES:
            fail(key + "ranking_negatives", " or ".join(DUAL_PATH_NEGATIVES), resolved["ranking_negatives"])
        if "negative_pool" in resolved and resolved["negative_pool"] < 1:
            fail(key + "negative_pool", "an integer >= 1", resolved["negative_pool"])
        _check_lr_multipliers(key, resolved.get("lr_multipliers"), fail)
        weights = resolved.get("loss_weights")
        if weights is not None and (len(weights) != 3 or not all(
                isinstance(w, (int, float)) and not isinstance(w, bool) and w >= 0 for w in weights)):
            fail(key + "loss_weights", "three numbers >= 0 (ranking, visual, textual)", weights)
        _check_loop(params, name, dataset, fail)


def check_run_settings(params: dict, methods: list[str], source: str = "params.yaml") -> None:
    """Settings a method needs once it runs on a dataset, for `methods` (the run's: every declared one by
    default, so this is `xmr check-params`'s check, not the loader's): dual_path's stage I length, which the
    official recipe gives for COCO and Flickr30k only."""
    from pipeline.training.recipes import resolve_settings

    fail = failer(source)
    for dataset in params.get("datasets", []):
        kind = dataset_kind(params, dataset)
        for name in methods:
            if name in ("dual_path",) and resolve_settings(params, name, kind, dataset).get("stage1_epochs") is None:
                recipe = params["methods"][name].get("recipe")
                fail(f"methods.{name}.stage1_epochs", f"an integer >= 0 (the {recipe} recipe gives none for "
                                                      f"dataset kind {kind}; or per_dataset.{dataset}.methods.{name})",
                     None)


def _check_lr_multipliers(key: str, mult, fail) -> None:
    if mult is None:
        return
    for group, value in mult.items():
        if group not in DUAL_PATH_LR_GROUPS:
            fail(key + "lr_multipliers", f"a mapping with keys among {', '.join(DUAL_PATH_LR_GROUPS)}", mult)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
            fail(f"{key}lr_multipliers.{group}", "a number >= 0", value)


def _check_loop(params: dict, name: str, dataset: str | None, fail) -> None:
    """A decay epoch within the run and a known optimiser, for the loop values method `name` trains with on
    `dataset`; the error names where the value came from (a `per_dataset` setting, the method's `train`
    override, its recipe, or the shared `train` section)."""
    from pipeline.training.recipes import dataset_layer, recipe_values

    kind = dataset_kind(params, dataset)
    train = recipe_train(params, name, kind, dataset)
    layer = dataset_layer(params, dataset)
    own_layer = ((layer.get("methods") or {}).get(name) or {})
    own = params["methods"][name].get("train", {})
    recipe = own_layer.get("recipe", params["methods"][name].get("recipe", ""))
    _, from_recipe = recipe_values(name, recipe, kind)

    def where(key: str) -> str:
        if key in own_layer.get("train", {}):
            return f"per_dataset.{dataset}.methods.{name}.train.{key}"
        if key in own:
            return f"methods.{name}.train.{key}"
        if key in from_recipe:
            return f"methods.{name}.recipe ({recipe}, {kind}: {key})"
        if key in layer.get("train", {}):
            return f"per_dataset.{dataset}.train.{key}"
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
