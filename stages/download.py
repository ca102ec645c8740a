"""`xmr download`: materialise a dataset's raw files."""
from __future__ import annotations

from pathlib import Path

import typer

from pipeline.data.download import download_dataset
from pipeline.params import dataset_params, load_params
from stages.common import DATA_OPTION, PARAMS_OPTION, stage_errors


@stage_errors
def main(
    dataset: str = typer.Argument(..., help="Dataset name: a key under `data` in params.yaml (default: shapes)."),
    params: Path = PARAMS_OPTION,
    data_dir: Path = DATA_OPTION,
) -> None:
    """Download (or, for the embedded `shapes` dataset, generate) a dataset into data/<dataset>/raw.

    shapes: images with 1-4 objects from 24 classes (6 shapes x 4 colours), boxes, labels and 5 captions
    per image, in MS-COCO layout (annotations/captions_<split>.json, instances_<split>.json,
    <split>/<id>.png). Params: data.<dataset> (n_images, n_val, n_test, image_size, min/max_objects,
    min/max_object_size, captions_per_image, clutter, seed). Deterministic for a seed.
    """
    p = load_params(params)
    counts = download_dataset(dataset, dataset_params(p, dataset, str(params)), data_dir)
    typer.echo(f"{dataset}: " + ", ".join(f"{k} {v}" for k, v in counts.items()) + " images")
