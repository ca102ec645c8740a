"""`xmr dvc-yaml`: write (or check) dvc.yaml's per-method train/evaluate stages and the report stage."""
from __future__ import annotations

from pathlib import Path

import typer

from stages.common import PARAMS_OPTION, stage_errors


@stage_errors
def main(params: Path = PARAMS_OPTION,
         dvc_yaml: Path = typer.Option(Path("dvc.yaml"), "--dvc-yaml", help="The dvc.yaml to write or check."),
         check: bool = typer.Option(False, "--check", help="Only check: exit 2 when the file is out of date.")) -> None:
    """Write each method's `train_<m>` / `evaluate_<m>` stages (deps: the import closure of its code inside
    pipeline/ and stages/) and the report stage, after the marker line of dvc.yaml. Run it after adding a
    method or changing `run` or the `methods` sections present in params.yaml; `xmr check-params` refuses a
    stale dvc.yaml."""
    from pipeline.dvc_stages import write

    changed = write(dvc_yaml, params, check=check)
    typer.echo(f"{dvc_yaml}: {'rewritten' if changed else 'up to date'}")
