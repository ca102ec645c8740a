"""Options and error handling shared by every stage command."""
from __future__ import annotations

import functools
from pathlib import Path

import typer

PARAMS_OPTION = typer.Option(Path("params.yaml"), "--params", "-p", help="Parameters file (validated; unknown keys are errors).")
DATA_OPTION = typer.Option(Path("data"), "--data-dir", help="Root of the data outputs (data/<dataset>/...).")


def stage_errors(func):
    """Turn the library's input errors into a one-line message and exit code 2 instead of a traceback."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except (ValueError, FileNotFoundError, KeyError) as exc:
            typer.secho(f"error: {exc}", err=True, fg=typer.colors.RED)
            raise typer.Exit(code=2) from exc

    return wrapper
