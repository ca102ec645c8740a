"""The `xmr` command: one subcommand per DVC stage."""
from __future__ import annotations

import typer

from stages import download, prepare
from stages import tokenize
from stages import evaluate, methods, train
from stages import report
from stages import extract, train_detector

app = typer.Typer(
    help="xmr: cross-modal retrieval pipeline. Each subcommand is one DVC stage; "
    "`dvc repro` runs them in order (download -> prepare -> extract -> tokenize -> train -> evaluate -> report).",
    no_args_is_help=True,
    add_completion=False,
)
app.command("download")(download.main)
app.command("prepare")(prepare.main)
app.command("train-detector")(train_detector.main)
app.command("extract")(extract.main)
app.command("tokenize")(tokenize.main)
app.command("train")(train.main)
app.command("evaluate")(evaluate.main)
app.command("report")(report.main)
app.command("methods")(methods.main)
