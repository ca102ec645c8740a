"""`xmr prepare`: a dataset's annotations -> the prepared Parquet table."""
from __future__ import annotations

from pathlib import Path

import typer

from pipeline.params import dataset_params, load_params
from stages.common import DATA_OPTION, PARAMS_OPTION, stage_errors


@stage_errors
def main(
    dataset: str = typer.Argument(..., help="Dataset name: a key under `data` in params.yaml."),
    params: Path = PARAMS_OPTION,
    data_dir: Path = DATA_OPTION,
) -> None:
    """Read a dataset into data/<dataset>/table.parquet and prepare_stats.json.

    Input: data/<dataset>/raw (shapes) or data.<dataset>.root (kind coco, with data.<dataset>.splits
    mapping train/val/test to annotation-file suffixes). Output columns: image_id, file_path, width,
    height, captions, labels, boxes, box_labels, split. Params: prepare.images_without_labels
    (keep|drop), prepare.max_captions.

    Real datasets read the files recorded in data/<dataset>/raw/manifest.json by `xmr download` (or
    the user's data.<dataset>.root / karpathy_json / images_root) and take their split from the frozen
    split file data.<dataset>.split_file (splits/*.json), writing it on first prepare:
    mirflickr (24 labels, tags as text; require_label, require_tag, tag_vocabulary, n_val, n_test,
    split_seed), nuswide (top_concepts 21, 1k tags as text, expected_pairs 195834, missing_images,
    189,834/5,000/1,000), coco2014 (Karpathy split, restval train|drop, 80 categories, 5 captions),
    flickr30k / flickr8k (Karpathy split and captions, no labels).
    """
    from pipeline.data.prepare import prepare_dataset

    p = load_params(params)
    stats = prepare_dataset(dataset, dataset_params(p, dataset, str(params)), p["prepare"], data_dir)
    typer.echo(f"{dataset}: " + ", ".join(f"{k} {v}" for k, v in stats["images"].items())
               + f" images, {stats['labels']} labels, {stats['images_without_labels']} without labels "
               f"({stats['images_without_labels_policy']}), {stats['unlisted_images']} unlisted files ignored")
