"""The `xmr` command: one subcommand per DVC stage."""
from __future__ import annotations

import typer

from stages import download, prepare

app = typer.Typer(
    help="xmr: cross-modal retrieval pipeline. Each subcommand is one DVC stage; "
    "`dvc repro` runs them in order (download -> prepare -> extract -> tokenize -> train -> evaluate -> report).",
    no_args_is_help=True,
    add_completion=False,
)
app.command("download")(download.main)
app.command("prepare")(prepare.main)
