"""The `xmr` command: one subcommand per DVC stage, plus `xmr methods` (the method catalogue).

Subcommands are imported when they are called (the group below), so `xmr train <ds> <wrong name>`
answers before the modules of the other stages (pyarrow, torch, ...) are loaded.
"""
from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path


def run_the_copys_code() -> None:
    """In a queued DVC experiment, re-run this command on the experiment's own copy of the code.

    DVC runs a queued experiment in a copy of the workspace under `.dvc/tmp/exps/` (DVC_ROOT names the
    project), but the `xmr` script imports the installed package: with `pip install -e .`, the workspace's
    code as it is when the experiment runs, not as it was queued. A method edited after `dvc exp run
    --queue` would then train under the queued commit's name. The new process puts the copy first on
    `sys.path`, so the code that runs is the code the experiment records."""
    here = Path.cwd().resolve()
    root = os.environ.get("DVC_ROOT")
    if (not root or Path(root).resolve() == here or not (here / "stages" / "cli.py").is_file()
            or Path(__file__).resolve().parents[1] == here):
        return
    sys.stdout.flush()
    start = f"import sys; sys.path.insert(0, {str(here)!r}); from stages.cli import app; app(prog_name='xmr')"
    os.execv(sys.executable, [sys.executable, "-c", start, *sys.argv[1:]])


run_the_copys_code()

import typer  # noqa: E402
from typer.core import TyperGroup  # noqa: E402

from stages.common import DEBUG_ENV, stop_on_sigterm  # noqa: E402

# Command name -> the module whose `main` implements it (in the order `xmr --help` lists them).
COMMANDS = {
    "check-params": "stages.check_params", "download": "stages.download", "prepare": "stages.prepare", "train-detector": "stages.train_detector",
    "extract": "stages.extract", "tokenize": "stages.tokenize", "dataset-settings": "stages.dataset_settings",
    "train": "stages.train",
    "evaluate": "stages.evaluate", "report": "stages.report", "methods": "stages.methods",
    "dvc-yaml": "stages.dvc_yaml", "code-fingerprints": "stages.code_fingerprints", "verify": "stages.verify",
}


def portable_kernels_asked(args: list[str]) -> bool:
    """Whether the params file of a command line (`--params`, default params.yaml) sets
    `train.portable_kernels: true`; read with yaml alone, before torch. An unreadable file is left to the
    stage's own check, which names the problem."""
    from pathlib import Path

    import yaml

    path = "params.yaml"
    for i, arg in enumerate(args):
        if arg == "--params" and i + 1 < len(args):
            path = args[i + 1]
        elif arg.startswith("--params="):
            path = arg.split("=", 1)[1]
    try:
        params = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return False
    train = params.get("train") if isinstance(params, dict) else None
    return isinstance(train, dict) and train.get("portable_kernels") is True


class LazyStages(TyperGroup):
    """A click group that builds a subcommand from its module only when it is asked for."""

    def resolve_command(self, ctx, args):
        if args and args[0] in COMMANDS and portable_kernels_asked(args[1:]):
            from pipeline.machine import pin_portable_kernels

            pin_portable_kernels()  # before the stage's module (and torch) is imported
        return super().resolve_command(ctx, args)

    def list_commands(self, ctx) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx, name: str):
        if name not in COMMANDS:
            return None
        single = typer.Typer(add_completion=False)
        single.command(name)(importlib.import_module(COMMANDS[name]).main)
        return typer.main.get_command(single)


app = typer.Typer(
    cls=LazyStages,
    help="xmr: cross-modal retrieval pipeline. Each subcommand is one DVC stage; "
    "`dvc repro` runs them in order (download -> prepare -> extract -> tokenize -> train -> evaluate -> report). "
    "`xmr methods` lists the retrieval methods.",
    no_args_is_help=True,
    add_completion=False,
)


@app.callback()
def options(debug: bool = typer.Option(False, "--debug", help="Show the full traceback of any error "
                                       "(also XMR_DEBUG=1) instead of a one-line message.")) -> None:
    if debug:
        os.environ[DEBUG_ENV] = "1"
    stop_on_sigterm()
