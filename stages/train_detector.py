"""`xmr train-detector`: train the small Faster R-CNN of the embedded dataset on its ground-truth boxes."""
from __future__ import annotations

from pathlib import Path

import typer

from pipeline.data.table import read_table, table_path
from pipeline.io import write_json
from pipeline.params import dataset_params, load_params
from stages.common import DATA_OPTION, PARAMS_OPTION, stage_errors

MODELS_OPTION = typer.Option(Path("models"), "--models-dir", help="Root of model outputs (models/<dataset>/detector/).")
REPORTS_OPTION = typer.Option(Path("reports"), "--reports-dir", help="Root of reports (reports/detector/<dataset>.json, <dataset>_history.json).")


@stage_errors
def main(
    dataset: str = typer.Argument(..., help="Dataset name: a key under `data` in params.yaml (the embedded `shapes`)."),
    params: Path = PARAMS_OPTION,
    data_dir: Path = DATA_OPTION,
    models_dir: Path = MODELS_OPTION,
    reports_dir: Path = REPORTS_OPTION,
    progress: bool = typer.Option(True, help="Show a progress bar."),
) -> None:
    """Train shapes_frcnn on the train split's boxes and box_labels of data/<dataset>/table.parquet.

    A dataset whose extraction uses a downloaded detector (extract.detectors.<dataset>
    other than shapes_frcnn) trains nothing: the stage checks the weights' SHA-256 and records the
    detector in models/<dataset>/detector/pretrained.json, so extraction re-runs if they change.

    Output: models/<dataset>/detector/ (model.pt, config.json with class names and validation metrics)
    reports/detector/<dataset>.json (DVC metrics: recall of ground-truth boxes by detections with
    score >= detector.eval_score at IoU >= 0.5 on the val split, class-aware and class-agnostic; precision)
    and reports/detector/<dataset>_history.json (the loss every 10 iterations, a DVC plot).
    Params: detector.* (iterations, batch_size, lr, weight_decay, warmup, width,
    representation, proposals, checkpoint_every, eval_score, threads), seed. CPU, a few minutes;
    a killed run resumes from models/<dataset>/.detector.resume.pt.
    """
    from pipeline.detection.detectors import pretrained_record
    from pipeline.detection.settings import extract_settings, train_settings
    from pipeline.detection.train import train_shapes_detector

    p = load_params(params)
    dataset_params(p, dataset, str(params))
    out = Path(models_dir) / dataset / "detector"
    extract = extract_settings(p, dataset)
    if extract.detector != "shapes_frcnn":
        record = pretrained_record(extract, p["download"])
        write_json(out / "pretrained.json", record)
        write_json(Path(reports_dir) / "detector" / f"{dataset}.json", {})  # nothing measured; the record is in out
        write_json(Path(reports_dir) / "detector" / f"{dataset}_history.json", [])
        typer.echo(f"{dataset}: uses the downloaded {record['detector']} (sha256 {record['weights_sha256'][:12]}...); "
                   "nothing to train")
        return
    settings = train_settings(p, dataset)
    if settings.threads:
        import torch

        torch.set_num_threads(settings.threads)
    table = read_table(table_path(data_dir, dataset))
    report = train_shapes_detector(table, out, settings, seed=p["seed"],
                                   resume_file=Path(models_dir) / dataset / ".detector.resume.pt", progress=progress)
    m = report["metrics"]
    # A DVC metrics file holds measurements only (settings and seed are params, in the model's own record);
    # the loss history is a DVC plot beside it.
    write_json(Path(reports_dir) / "detector" / f"{dataset}.json",
               {k: v for k, v in m.items() if k not in ("iou_threshold", "score_threshold", "split")})
    write_json(Path(reports_dir) / "detector" / f"{dataset}_history.json", report["history"])
    typer.echo(f"{dataset}: detector -> {out}; {m['split']} recall@0.5 {m['recall']:.3f} "
               f"(class-agnostic {m['recall_class_agnostic']:.3f}), precision {m['precision']:.3f}, "
               f"{report['train_seconds_this_run']} s this run (resumed at iteration {report['resumed_at']})")
