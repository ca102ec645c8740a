"""`xmr methods`: the catalogue of retrieval methods (no DVC stage; imports no torch)."""
from __future__ import annotations

from pathlib import Path

import typer

from stages.common import PARAMS_OPTION, stage_errors

COLUMNS = ("method", "paper", "family", "labels", "lambda", "recipe", "training", "description")


def catalogue(params: dict | None, dataset: str | None = None) -> list[dict[str, str]]:
    """One row per registered method. `recipe`: the method's `methods.<m>.recipe` (paper / official,
    pipeline/training/recipes.py; "-" for methods without one); `training`: the loop settings it runs with
    on `dataset` (default: the first of `datasets`) in `params` (shared `train` values, the recipe's for the
    dataset's kind, `per_dataset` and `methods.<m>.train` overrides), or the schema defaults."""
    from pipeline.training.recipes import DEFAULT_RECIPE, has_recipes, resolve_settings
    from pipeline.training.registry import METHODS, uses_lambda
    from pipeline.training.schema import TRAIN_SCHEMA, method_train_settings

    if params and dataset is None and params["datasets"]:
        dataset = params["datasets"][0]
    rows = []
    for name, entry in METHODS.items():
        train = method_train_settings(params, name, dataset) if params else TRAIN_SCHEMA
        training = ("closed form, one fit" if entry.closed_form
                    else f"{_length(train)}, lr {train['lr']:g}, batch {train['batch_size']}")
        if not entry.closed_form:
            training += _loop_behaviours(train)
        recipe = "-"
        if has_recipes(name):
            recipe = resolve_settings(params, name, None, dataset)["recipe"] if params else DEFAULT_RECIPE
        rows.append({"method": name, "paper": entry.paper, "family": entry.family,
                     "labels": "yes" if entry.needs_labels else "no", "lambda": "yes" if uses_lambda(name) else "no",
                     "recipe": recipe, "training": training, "description": entry.description})
    return rows


def _length(train: dict) -> str:
    """`12 epochs`, or with early stopping `up to 12 epochs, patience 2`."""
    if train["patience"] > 0:
        return f"up to {train['epochs']} epochs, patience {train['patience']}"
    return f"{train['epochs']} epochs"


def _loop_behaviours(train: dict) -> str:
    """The loop settings a recipe may change on every dataset, where they differ from the defaults."""
    text = ""
    if train.get("lr_decay_epoch"):
        text += f", x{train['lr_decay_factor']:g} from epoch {train['lr_decay_epoch'] + 1}"
    betas = list(train.get("adam_betas", [0.9, 0.999]))
    if train.get("optimizer", "adam") == "adam" and betas != [0.9, 0.999]:
        text += f", Adam betas ({betas[0]:g}, {betas[1]:g})"
    if train.get("grad_clip_scope") == "text" and train.get("grad_clip"):
        text += ", clips text only"
    if train.get("select_metric") == "train_loss":
        text += ", selects on train loss"
    if train.get("val_limit_images"):
        text += f", validates on {train['val_limit_images']} images"
    return text


def markdown(rows: list[dict[str, str]]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(row[c] for c in COLUMNS) + " |" for row in rows]
    return "\n".join(lines)


@stage_errors
def main(params: Path = PARAMS_OPTION,
         defaults: bool = typer.Option(False, "--defaults", help="Show the schema's defaults (default recipe, the "
                                                                 "papers' loop sizes) instead of the params file's."),
         dataset: str = typer.Option(None, "--dataset", help="The dataset whose settings (`per_dataset`, its "
                                                             "kind's recipe values) the training column shows; "
                                                             "default: the first of `datasets`.")) -> None:
    """List every method: name, paper, family (label-wise or instance-level), whether it needs labels,
    whether it reads the top-level `lambda`, its recipe (paper / official: docs/fidelity.md), its training
    loop settings, and a one-line description.

    A method without a `methods.<m>` section in the params file runs on its declared defaults, shown here.
    Both are read from the params file (--params, default params.yaml) when it exists, else the
    schema defaults. Label-wise methods are selected and compared on NDCG over shared labels;
    instance-level ones on R@K / rsum over each image's own captions.
    """
    from pipeline.params import load_params

    from pipeline.params import dataset_params

    p = None if defaults or not Path(params).is_file() else load_params(params)
    if p is not None and dataset is not None:
        dataset_params(p, dataset, str(params))
    typer.echo(markdown(catalogue(p, dataset)))
