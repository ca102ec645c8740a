"""`xmr download`: materialise a dataset's raw files, or fetch an asset (word vectors, detector weights)."""
from __future__ import annotations

from pathlib import Path

import typer

from pipeline.params import dataset_params, load_params
from stages.common import DATA_OPTION, PARAMS_OPTION, stage_errors


@stage_errors
def main(
    dataset: str = typer.Argument(..., help="A key under `data` in params.yaml (default: shapes), or an asset "
                                            "of the registry: word2vec, weights."),
    params: Path = PARAMS_OPTION,
    data_dir: Path = DATA_OPTION,
) -> None:
    """Download (or, for the embedded `shapes` dataset, generate) a dataset into data/<dataset>/raw.

    shapes: images with 1-4 objects from 24 classes (6 shapes x 4 colours), boxes, labels and 5 captions
    per image, in MS-COCO layout (annotations/captions_<split>.json, instances_<split>.json,
    <split>/<id>.png). Params: data.<dataset> (n_images, n_val, n_test, image_size, min/max_objects,
    min/max_object_size, captions_per_image, clutter, seed). Deterministic for a seed.

    Real datasets (kind mirflickr, nuswide, coco2014, flickr30k, flickr8k): the files listed for the kind
    in pipeline/data/registry.yaml are downloaded into download.dir/<source>/ (resuming interrupted
    transfers, checking size and sha256; unpublished hashes are recorded in download.lock_file on
    first download and enforced afterwards) and archives are extracted safely into
    download.dir/<source>/extracted/. data/<dataset>/raw/manifest.json records what was fetched.
    Sources the user provides (data.<dataset>.root, karpathy_json) are skipped; NUS-WIDE and Flickr
    images always come from the user (images_root). Kind coco (a COCO-layout folder read in place from
    data.<dataset>.root, e.g. coco_mini) fetches nothing: the folder is checked and its annotation files'
    sha256 recorded in the manifest, which prepare checks.

    Assets: `xmr download word2vec` (GoogleNews-vectors-negative300.bin.gz) and `xmr download weights`
    (torchvision Faster R-CNN v2 COCO, bua-caffe-frcn-r101-k36.pth, faster_rcnn_from_caffe.pkl) into
    download.dir/<asset>/.

    Params: download.dir, registry, lock_file, mirrors (<source>: [base URLs] replacing the registry's),
    retries, retry_wait, timeout, progress.
    """
    from pipeline.data import registry
    from pipeline.data.download import download_asset, download_dataset

    p = load_params(params)
    if dataset not in p["data"] and dataset in registry.assets(registry.load_registry(p["download"]["registry"])):
        info = download_asset(dataset, p["download"])
        for name, f in info["files"].items():
            typer.echo(f"{dataset}: {f['path']} (sha256 {f['sha256']}, {f['hash_checked_against']})")
        return
    counts = download_dataset(dataset, dataset_params(p, dataset, str(params)), data_dir, p["download"])
    kind = dataset_params(p, dataset, str(params))["kind"]
    if kind == "shapes":
        typer.echo(f"{dataset}: " + ", ".join(f"{k} {v}" for k, v in counts.items()) + " images")
    elif kind == "coco":
        typer.echo(f"{dataset}: read in place from {p['data'][dataset]['root']} (nothing to download; "
                   + ", ".join(f"{k}/ {v} files" for k, v in counts.items())
                   + f"); annotation hashes in {data_dir / dataset / 'raw' / 'manifest.json'}")
    else:
        typer.echo(f"{dataset}: " + (", ".join(f"{k} {v} files" for k, v in counts.items()) or "nothing to download")
                   + f"; manifest in {data_dir / dataset / 'raw' / 'manifest.json'}")
