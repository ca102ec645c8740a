"""The `xmr` command: one subcommand per DVC stage."""
from __future__ import annotations

import os

import typer

from stages import download, prepare
from stages import tokenize
from stages import evaluate, train
from stages import report
from stages import extract, train_detector
from stages import check_params
from stages.common import DEBUG_ENV

app = typer.Typer(
    help="xmr: cross-modal retrieval pipeline. Each subcommand is one DVC stage; "
    "`dvc repro` runs them in order (download -> prepare -> extract -> tokenize -> train -> evaluate -> report).",
    no_args_is_help=True,
    add_completion=False,
)


@app.callback()
def options(debug: bool = typer.Option(False, "--debug", help="Show the full traceback of any error "
                                       "(also XMR_DEBUG=1) instead of a one-line message.")) -> None:
    if debug:
        os.environ[DEBUG_ENV] = "1"


app.command("check-params")(check_params.main)
app.command("download")(download.main)
app.command("prepare")(prepare.main)
app.command("train-detector")(train_detector.main)
app.command("extract")(extract.main)
app.command("tokenize")(tokenize.main)
app.command("train")(train.main)
app.command("evaluate")(evaluate.main)
app.command("report")(report.main)
