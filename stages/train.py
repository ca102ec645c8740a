"""`xmr train <dataset> <method>`: train one retrieval method and keep its best-validation model."""
from __future__ import annotations

from pathlib import Path

import typer

from pipeline.io import output_lock
from pipeline.params import dataset_params, load_params
from stages.common import DATA_OPTION, PARAMS_OPTION, stage_errors

MODELS_OPTION = typer.Option(Path("models"), "--models-dir", help="Root of the model outputs (models/<dataset>/<method>/).")
REPORTS_OPTION = typer.Option(Path("reports"), "--reports-dir", help="Root of the reports (reports/training/...).")


@stage_errors
def main(
    dataset: str = typer.Argument(..., help="Dataset name: a key under `data` in params.yaml."),
    method: str = typer.Argument(..., help="Method name: a key under `methods` in params.yaml; "
                                           "`xmr methods` lists them all."),
    params: Path = PARAMS_OPTION,
    data_dir: Path = DATA_OPTION,
    models_dir: Path = MODELS_OPTION,
    reports_dir: Path = REPORTS_OPTION,
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show progress bars."),
) -> None:
    """Train METHOD on DATASET; a killed run resumes from its last finished epoch.

    `xmr methods` lists every method with its paper, family, label needs, lambda use and recipe.

    Inputs: data/<dataset>/table.parquet, data/<dataset>/features.zarr, data/<dataset>/text/.
    Outputs: models/<dataset>/<method>/model.pt + config.json (the epoch with the best validation
    metric: label-wise NDCG, or rsum for a dataset without labels; or the lowest training loss with
    `select_metric: train_loss`, the Semantic Sharing official recipe), last.pt (resumable state),
    reports/training/<dataset>/<method>.json (per-epoch loss and validation metrics, a DVC plot).
    Params: train.* (batch_size, lr, epochs, patience, grad_clip, device, amp, select_metric, ...),
    methods.<method>.*, seed, metrics.*, and lambda for the methods with a context loss
    (ss, ss_con, ss_wo_t, ss_wo_l, st).
    Several GPUs: `torchrun --nproc-per-node N $(which xmr) train <dataset> <method>` trains
    data-parallel (DDP); rank 0 validates and writes the outputs.
    """
    from pipeline.training.registry import check_method

    p = load_params(params)  # names are checked before torch and the data are loaded
    dataset_params(p, dataset, str(params))
    check_method(method)
    from pipeline.training.data import RetrievalData
    from pipeline.training.loop import train_method
    from pipeline.training.scoring import describe_selection

    data = RetrievalData.open(data_dir, dataset, cache_splits=("train", "val"),
                              cache_gb=p["train"]["cache_features_gb"], progress=progress, log=typer.echo)
    with output_lock(models_dir / dataset / method):
        result = train_method(method, p, data, models_dir / dataset / method,
                              reports_dir / "training" / dataset / f"{method}.json", dataset=dataset, progress=progress)
    how = "stopped early" if result.stopped_early else "done"
    typer.echo(f"{dataset}/{method}: {result.epochs_done} epochs ({how}; resumed after {result.resumed_at}); "
               f"best {describe_selection(result.select_key, result.best_value)} at epoch {result.best_epoch}")
