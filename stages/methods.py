"""`xmr methods`: the catalogue of retrieval methods (no DVC stage; imports no torch)."""
from __future__ import annotations

from pathlib import Path

import typer

from stages.common import PARAMS_OPTION, stage_errors

COLUMNS = ("method", "paper", "family", "labels", "lambda", "recipe", "description")


def catalogue(params: dict | None) -> list[dict[str, str]]:
    """One row per registered method. The recipe is the training settings the method runs with in
    `params` (shared `train` values with its `methods.<m>.train` overrides), or the schema defaults."""
    from pipeline.training.registry import METHODS, uses_lambda
    from pipeline.training.schema import TRAIN_SCHEMA, method_train_settings

    rows = []
    for name, entry in METHODS.items():
        train = method_train_settings(params, name) if params else TRAIN_SCHEMA
        recipe = ("closed form, one fit" if entry.closed_form
                  else f"{train['epochs']} epochs, lr {train['lr']:g}, batch {train['batch_size']}")
        rows.append({"method": name, "paper": entry.paper, "family": entry.family,
                     "labels": "yes" if entry.needs_labels else "no", "lambda": "yes" if uses_lambda(name) else "no",
                     "recipe": recipe, "description": entry.description})
    return rows


def markdown(rows: list[dict[str, str]]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(row[c] for c in COLUMNS) + " |" for row in rows]
    return "\n".join(lines)


@stage_errors
def main(params: Path = PARAMS_OPTION,
         defaults: bool = typer.Option(False, "--defaults", help="Show the schema's default recipes (the papers' "
                                                                 "settings) instead of those of the params file.")) -> None:
    """List every method: name, paper, family (label-wise or instance-level), whether it needs labels,
    whether it reads the top-level `lambda`, its training recipe, and a one-line description.

    The recipe is read from the params file (--params, default params.yaml) when it exists, else the
    schema defaults. Label-wise methods are selected and compared on NDCG over shared labels;
    instance-level ones on R@K / rsum over each image's own captions.
    """
    from pipeline.params import load_params

    p = None if defaults or not Path(params).is_file() else load_params(params)
    typer.echo(markdown(catalogue(p)))
