"""`xmr extract`: region features of every image of a prepared table -> data/<dataset>/features.zarr."""
from __future__ import annotations

from pathlib import Path

import typer

from pipeline.data.table import read_table, table_path
from pipeline.io import disk_errors_name, output_lock, write_json
from pipeline.params import dataset_params, load_params
from stages.common import DATA_OPTION, PARAMS_OPTION, stage_errors

MODELS_OPTION = typer.Option(Path("models"), "--models-dir", help="Root of trained models (models/<dataset>/detector/).")


@stage_errors
def main(
    dataset: str = typer.Argument(..., help="Dataset name: a key under `data` in params.yaml."),
    params: Path = PARAMS_OPTION,
    data_dir: Path = DATA_OPTION,
    models_dir: Path = MODELS_OPTION,
    progress: bool = typer.Option(True, help="Show a progress bar."),
) -> None:
    """Detect regions in every image of data/<dataset>/table.parquet and store 36 RoIs per image.

    Detector (extract.detectors.<dataset>; weights extract.weights.<name>):
    shapes_frcnn (models/<dataset>/detector/ from `xmr train-detector`), butd_r101_c4 (bottom-up-attention
    ResNet-101 C4, 2048-d, from data/downloads/weights/bua-caffe-frcn-r101-k36.pth or a
    faster_rcnn_from_caffe.pkl named in extract.weights.butd_r101_c4), frcnn_r50_fpn_v2_coco (torchvision
    COCO weights, 1024-d); `xmr download weights` fetches both with their registry hashes.

    RoIs (papers/001): per-class NMS (extract.nms, relaxed by nms_step up to nms_max if too few
    survive), keep scores > extract.score_threshold, fill up to extract.num_boxes by score.

    Output data/<dataset>/features.zarr (Zarr v3, row i = table row i): features [N,36,D]
    (extract.dtype), boxes, positions (x1/W, y1/H, x2/W, y2/H, area/WH), scores, classes, image_size,
    valid; and data/<dataset>/extract_stats.json. Params: extract.* (batch_size, chunk_size, workers,
    device, autocast, threads, proposals, min_size, max_size, on_bad_image error|skip, image_modes convert|strict).
    An interrupted run resumes from its last complete chunk; under torchrun each rank writes its own chunks.
    """
    from pipeline.detection.detectors import load_detector
    from pipeline.detection.extract import extract_features
    from pipeline.detection.settings import extract_settings
    from pipeline.detection.store import partial_path

    p = load_params(params)
    dataset_params(p, dataset, str(params))
    settings = extract_settings(p, dataset)
    if settings.threads:
        import torch

        torch.set_num_threads(settings.threads)
    table = read_table(table_path(data_dir, dataset))
    detector = load_detector(settings, dataset, models_dir, p["download"])
    out = Path(data_dir) / dataset / "features.zarr"
    with output_lock(out):
        with disk_errors_name(partial_path(out)):  # where the store is written until it is complete
            stats = extract_features(table, out, detector, settings, progress=progress)
        run = stats["run"]
        if not stats["complete"]:
            typer.echo(f"{dataset}: rank {run['rank']} wrote {run['images']} images; store not finished yet")
            return
        write_json(Path(data_dir) / dataset / "extract_stats.json",
                   {k: v for k, v in stats.items() if k != "run"} | {"detector": detector.name,
                                                                       "weights_sha256": detector.weights_sha256})
    typer.echo(f"{dataset}: {stats['valid_images']}/{stats['images']} images -> {out} "
               f"({detector.name}, {detector.feature_dim}-d, {settings.selection.num_boxes} RoIs; "
               f"{stats['skipped_images']} skipped; {run['images']} extracted this run at "
               f"{run['images_per_s']} img/s on {run['device']})")
