"""`xmr evaluate <dataset> <method>`: score the trained model on the test split."""
from __future__ import annotations

from pathlib import Path

import typer

from pipeline.params import dataset_params, load_params
from stages.common import DATA_OPTION, PARAMS_OPTION, stage_errors
from stages.train import MODELS_OPTION, REPORTS_OPTION


@stage_errors
def main(
    dataset: str = typer.Argument(..., help="Dataset name: a key under `data` in params.yaml."),
    method: str = typer.Argument(..., help="Method name: a method declared in pipeline/methods/ (`xmr methods` "
                                           "lists them)."),
    params: Path = PARAMS_OPTION,
    data_dir: Path = DATA_OPTION,
    models_dir: Path = MODELS_OPTION,
    reports_dir: Path = REPORTS_OPTION,
    split: str = typer.Option("test", "--split", help="Split to score (test; val for datasets without a test split)."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show progress bars."),
) -> None:
    """Load models/<dataset>/<method>/ (the selected epoch) and score the test split.

    `xmr methods` lists every method with its paper, family, label needs, lambda use and recipe.

    Inputs: the model, data/<dataset>/{table.parquet, features.zarr, text/}.
    Outputs: reports/metrics/<dataset>/<method>.json (every metric of pipeline.metrics: label-wise
    NDCG@k and mAP, R@K, rsum, the shared classifier's Micro-F1 per modality when the method has
    one, plus the selected training epoch and the machine classes that trained and scored the model,
    `machine_train` / `machine_eval`: pipeline/machine.py),
    reports/per_query/<dataset>/<method>.npz (each query's NDCG, AP, rank and classifier counts: the
    report's bootstrap intervals) and
    reports/rankings/<dataset>/<method>.npz (top-10 captions per test image and top-10 images per
    test caption). A pairwise method's score matrix (SCAN) is computed in blocks with the time left shown;
    a killed run keeps the finished blocks in reports/.partial/<dataset>/<method>/ and resumes from them.
    Params: metrics.* (k values, protocols per dataset), train.device,
    train.eval_batch_size, train.amp, train.threads.
    """
    from pipeline.training.model_files import require_model
    from pipeline.training.registry import check_method

    p = load_params(params)  # names and the model are checked before torch and the data are loaded
    dataset_params(p, dataset, str(params))
    check_method(method)
    require_model(models_dir / dataset / method, dataset, method)  # finished: its completion record
    import numpy as np

    from pipeline.completion import RECORD_FILE
    from pipeline.io import write_json
    from pipeline.machine import machine_metrics, machine_record
    from pipeline.metrics import write_rankings
    from pipeline.metrics.evaluation_set import EVALUATION_ID, evaluation_id
    from pipeline.metrics.per_query import write_per_query
    from pipeline.training.checkpoint import check_inputs, load_model
    from pipeline.training.data import RetrievalData
    from pipeline.training.loop import resolve_device
    from pipeline.training.partial_scores import discard
    from pipeline.training.scoring import classify_split, metrics_file, score_split, split_metrics, split_rankings

    import torch

    settings = p["train"]
    if settings["threads"]:  # as in training: the thread count can change the last bits of the scores
        torch.set_num_threads(settings["threads"])
    data = RetrievalData.open(data_dir, dataset, cache_splits=(split,), cache_gb=settings["cache_features_gb"],
                              progress=progress, log=typer.echo)
    device = resolve_device(settings["device"])
    model, config = load_model(models_dir / dataset / method, method, data.info, device)
    check_inputs(models_dir / dataset / method, config, data.inputs)
    amp = settings["amp"] and device.type == "cuda"
    partial_dir = reports_dir / ".partial" / dataset / method  # a killed run resumes its finished score blocks
    partial_key = {"model": (models_dir / dataset / method / RECORD_FILE).read_text(), "split": split}
    scores = score_split(model, data, split, metrics_params=p["metrics"], dataset=dataset,
                         batch_size=settings["eval_batch_size"], device=device, amp=amp, progress=progress,
                         partial_key=(partial_dir, partial_key))
    probabilities = classify_split(model, data, scores.items, batch_size=settings["eval_batch_size"],
                                   device=device, amp=amp)
    per_query: dict = {}
    metrics = split_metrics(scores, data, metrics_params=p["metrics"], dataset=dataset, device=device,
                            progress=progress, probabilities=probabilities, per_query=per_query)
    metrics = metrics_file(metrics)  # measurements only (no params, gallery sizes or protocol names)
    metrics.update(_f1_tuned_and_topk(model, data, split, scores.items, probabilities, settings, device, amp))
    metrics["selected_epoch"] = int(config.get("epoch", 0))
    # where the numbers came from: the machine class that trained the model and the one that scored it
    metrics.update(machine_metrics(config.get("machine"), machine_record(device)))
    top = split_rankings(scores, 10, device=device)
    captions = scores.items.captions
    caption_index = np.asarray(getattr(data.text, "caption_index", np.zeros(len(data.caption_rows))))[captions]
    # One id on the three outputs: the report refuses a set from two evaluations (a kill between the writes)
    evaluation = evaluation_id(models_dir / dataset / method, data.inputs, split, p["metrics"])
    metrics[EVALUATION_ID] = evaluation
    write_rankings(reports_dir / "rankings" / dataset / f"{method}.npz", scores.items.image_rows,
                   data.caption_rows[captions], caption_index, top["i2t_top"], top["t2i_top"], evaluation=evaluation)
    write_per_query(reports_dir / "per_query" / dataset / f"{method}.npz", {**per_query, EVALUATION_ID: evaluation})
    write_json(reports_dir / "metrics" / dataset / f"{method}.json", metrics)
    discard(partial_dir)
    shown = [k for k in metrics if k.endswith(("ndcg_i2t", "ndcg_t2i", "ndcg_ave", "map_ave", "rsum"))]
    typer.echo(f"{dataset}/{method} ({split}): " + ", ".join(f"{k} {metrics[k]:.2f}" for k in shown))
    if data.without_captions(split):
        typer.echo(f"{dataset}: {data.without_captions(split)} {split} images without any caption were left out "
                   f"(no image-text pair; docs/fidelity.md)")


def _f1_tuned_and_topk(model, data, split: str, items, probabilities, settings: dict, device, amp: bool) -> dict:
    """Micro-F1 at a threshold tuned on the validation split and at top-k (pipeline/metrics/f1_variants.py);
    nothing for a method without a classifier, a dataset without labels, or when scoring the validation
    split itself (the threshold is never tuned on the split it is applied to)."""
    if probabilities is None or not data.info.num_labels or split == "val":
        return {}
    from pipeline.metrics.f1_variants import f1_three_ways
    from pipeline.training.scoring import classify_split

    val_items = data.split_items("val")
    if len(val_items.image_rows) == 0:
        return {}
    val_probs = classify_split(model, data, val_items, batch_size=settings["eval_batch_size"], device=device, amp=amp)
    out = {}
    for i, (modality, rows_of) in enumerate((("image", lambda it: it.image_rows),
                                            ("text", lambda it: data.caption_rows[it.captions]))):
        val = (val_probs[i], data.labels[rows_of(val_items)])
        test = (probabilities[i], data.labels[rows_of(items)])
        out.update(f1_three_ways(val, test, modality))
    return out
