"""`xmr report`: every metrics file -> reports/results.md with the papers' tables, plots and pages."""
from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Optional

import typer

from pipeline.io import atomic_output
from pipeline.params import load_params
from stages.common import DATA_OPTION, PARAMS_OPTION, stage_errors


@stage_errors
def main(
    params: Path = PARAMS_OPTION,
    data_dir: Path = DATA_OPTION,
    reports_dir: Path = typer.Option(Path("reports"), "--reports-dir", help="Root of the report inputs and outputs."),
    models_dir: Path = typer.Option(Path("models"), "--models-dir", help="Root of the trained models: a method "
                                    "whose directory there is unfinished (no complete.json) is refused."),
    experiments: Optional[Path] = typer.Option(
        None, "--experiments",
        help="`dvc exp show --json` output holding the lambda and seed sweeps (default "
        "<reports-dir>/experiments.json; skipped when absent). Experiments that differ from the baseline in "
        "anything but one of lambda / seed are refused, naming the params."),
    dvc_exp_show: bool = typer.Option(
        False, "--dvc-exp-show",
        help="Run `dvc exp show --json` first and save it as the experiments file. Not inside `dvc repro` "
        "(it holds the repository lock)."),
) -> None:
    """Write reports/results.md: the papers/000 Table 1 layout (methods x datasets, I2T / T2I / Ave NDCG)
    with the published numbers beside ours, every label-wise metric (NDCG, mAP, mAP@k), Recall@K tables
    beside papers/002 and 003, the Micro-F1 table beside the supplementary, the lambda-sensitivity plot,
    training curves and links to the qualitative pages.

    Every number of ours carries a 95% bootstrap interval over the test images, and each method's
    difference to report.reference_method its own paired interval. With a seed sweep in the experiments
    file (report.seeds), every headline metric also gets mean ± std over seeds. reports/claims.md checks
    the papers' claims (papers/000 Table 1, papers/001 lambda and consistency, papers/002, papers/003)
    with a verdict each: holds, does not hold, inconclusive.

    Inputs: reports/metrics/<ds>/<method>.json (required), reports/per_query/<ds>/<method>.npz (the
    intervals), reports/training/<ds>/<method>.json,
    reports/rankings/<ds>/<method>.npz with data/<ds>/table.parquet and its images, the experiments file.
    Outputs: reports/results.md, reports/plots/*.png, reports/lambda_sensitivity.json (DVC plot data:
    NDCG vs lambda), reports/qualitative/<ds>/<method>.html. Params: lambda (the current value),
    report.qualitative_queries, report.thumbnail_px, report.lambda_methods,
    report.bootstrap_resamples, report.bootstrap_seed, report.reference_method.
    """
    from pipeline.completion import require_complete
    from pipeline.reporting.report import build_report

    p = load_params(params)
    experiments = experiments or reports_dir / "experiments.json"
    if dvc_exp_show:
        result = subprocess.run(["dvc", "exp", "show", "--json"], capture_output=True, text=True)
        if result.returncode != 0:
            raise ValueError(f"`dvc exp show --json` failed: {result.stderr.strip() or result.stdout.strip()}")
        with atomic_output(experiments) as tmp:
            tmp.write_text(result.stdout)
    for metrics_file in sorted((reports_dir / "metrics").glob("*/*.json")):
        model_dir = models_dir / metrics_file.parent.name / metrics_file.stem
        if model_dir.is_dir():  # its metrics must come from a finished model
            require_complete(model_dir, rerun=f"finish `xmr train {model_dir.parent.name} {model_dir.name}` "
                                              f"and `xmr evaluate` it")
    import yaml

    written = yaml.safe_load(params.read_text()) or {}
    # a dataset taken out of the `datasets` list leaves its metrics files behind: they are not results
    listed = p["datasets"] if "datasets" in written else None
    summary = build_report(reports_dir, data_dir, experiments=experiments, current_lambda=p["lambda"],
                           report_params=p["report"], metrics_params=p["metrics"],
                           current_params=written, datasets=listed,
                           recipes={m: s["recipe"] for m, s in p["methods"].items() if "recipe" in s})
    verdicts = list(summary["claims"].values())
    typer.echo(f"report: {summary['metrics_files']} metrics files, {len(summary['training_plots'])} training "
               f"plots, {summary['lambda_curves']} lambda curves, {len(summary['qualitative_pages'])} qualitative "
               f"pages, {len(summary['seed_runs'])} seeds, claims: "
               f"{', '.join(f'{verdicts.count(v)} {v}' for v in dict.fromkeys(verdicts)) or 'none'} "
               f"-> {reports_dir / 'results.md'}, {reports_dir / 'claims.md'}")
