"""`xmr dataset-settings <ds>`: the settings sized for one dataset, as the file its train stages track.

DVC can track a params key only when params.yaml holds it, and `per_dataset.<ds>` is optional (a real
dataset usually has none). This stage writes the dataset's validated entry ({} when it has none) to
`data/<ds>/settings.json`; every train stage of the dataset depends on that file, so editing
`per_dataset.shapes` reruns the shapes methods only (the other datasets' files keep their bytes).
"""
from __future__ import annotations

from pathlib import Path

import typer

from stages.common import PARAMS_OPTION, stage_errors

SETTINGS_FILE = "data/{dataset}/settings.json"


@stage_errors
def main(dataset: str = typer.Argument(..., help="A dataset name under `data` in params.yaml."),
         params: Path = PARAMS_OPTION,
         out: Path = typer.Option(None, "--out", help="Output file (default data/<dataset>/settings.json).")) -> None:
    """Write `per_dataset.<dataset>` of the params file (checked; {} when absent) as JSON."""
    from pipeline.io import write_json
    from pipeline.params import dataset_params, load_params
    from pipeline.training.recipes import dataset_layer

    p = load_params(params)
    dataset_params(p, dataset, str(params))
    path = out or Path(SETTINGS_FILE.format(dataset=dataset))
    write_json(path, {"dataset": dataset, "per_dataset": dataset_layer(p, dataset)})
    typer.echo(f"{path}: settings sized for {dataset}")
