"""Options and error handling shared by every stage command."""
from __future__ import annotations

import errno
import functools
import logging
import os
import signal
import threading
import warnings
from pathlib import Path

import typer

PARAMS_OPTION = typer.Option(Path("params.yaml"), "--params", "-p", help="Parameters file (validated; unknown keys are errors).")
DATA_OPTION = typer.Option(Path("data"), "--data-dir", help="Root of the data outputs (data/<dataset>/...).")
DEBUG_ENV = "XMR_DEBUG"


def debug_enabled() -> bool:
    """`xmr --debug ...` or XMR_DEBUG=1: errors show their full traceback instead of one line."""
    return os.environ.get(DEBUG_ENV, "").strip().lower() not in ("", "0", "false", "no")


# Exit status of a stage stopped by Ctrl-C or SIGTERM (128 + SIGINT, as a shell reports it).
INTERRUPTED = 130


def stop_on_sigterm() -> None:
    """SIGTERM (a scheduler, `kill`, DVC stopping a run) stops a stage the way Ctrl-C does: one line, the
    resumable state kept."""
    def interrupt(signum, frame):
        raise KeyboardInterrupt

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, interrupt)


MAX_LINE = 1000  # a message quoting a hostile value (a 10 MB path or seed) is cut, not printed whole


def _cut(message: str) -> str:
    return "\n".join(line if len(line) <= MAX_LINE else f"{line[:MAX_LINE]}... ({len(line)} characters)"
                     for line in message.splitlines() or [""])


def _fail(message: str, exc: BaseException):
    typer.secho(f"error: {_cut(message)}", err=True, fg=typer.colors.RED)
    raise typer.Exit(code=2) from exc


def stage_errors(func):
    """Turn bad input and disk errors into one line and exit code 2 instead of a traceback.

    Bad input is the library's ValueError (with its subclasses: params, annotations, stores, ...) and
    FileNotFoundError; a disk error is an OSError such as ENOSPC, EACCES, EROFS or EIO, reported with
    the path and what to do. Anything else (a KeyError, a TypeError, ...) is a bug in xmr and keeps its
    traceback. Ctrl-C and SIGTERM stop with one line and exit code 130. With --debug (or XMR_DEBUG=1)
    every error keeps its traceback.
    """

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        from pipeline.io import ADVICE, DISK_ERRNOS, OutputLocked

        try:
            return func(*args, **kwargs)
        except (ValueError, FileNotFoundError, OutputLocked) as exc:
            if debug_enabled():
                raise
            _fail(str(exc), exc)
        except OSError as exc:
            if exc.errno == errno.ENAMETOOLONG and not debug_enabled():  # a path param of megabytes
                _fail(f"{exc.filename or '(path unknown)'}: file name too long; check the path parameters", exc)
            if debug_enabled() or exc.errno not in DISK_ERRNOS:
                raise
            where = exc.filename or "(path unknown)"
            _fail(f"{where}: {exc.strerror or os.strerror(exc.errno)}; {ADVICE[exc.errno]}", exc)
        except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM (`stop_on_sigterm`)
            if debug_enabled():
                raise
            # zarr's reads still in flight on its event-loop thread are dropped: not worth a warning, nor the
            # "Future exception was never retrieved" its cancelled batch logs through asyncio's logger when the
            # interpreter collects it at exit (seen under load: a traceback after the one line)
            warnings.filterwarnings("ignore", message="coroutine .* was never awaited", category=RuntimeWarning)
            logging.getLogger("asyncio").disabled = True
            typer.secho("interrupted: stopped here; finished work is kept, and running the same command again "
                        "resumes from it", err=True, fg=typer.colors.YELLOW)
            raise typer.Exit(code=INTERRUPTED) from exc

    return wrapper
