"""`xmr check-params`: every parameter through every stage's checks, before DVC removes any output.

DVC deletes a stage's outputs just before running it, so a value that only the stage itself rejects
(`extract.num_boxes: 0`) would cost the workspace its previous outputs. The `check_params` stage
runs first (every stage depends on its output) and fails before any output is touched.
"""
from __future__ import annotations

from pathlib import Path

import typer

from pipeline.io import atomic_output
from stages.common import PARAMS_OPTION, stage_errors

CHECKED_FILE = Path("data/params_checked.txt")
CHECKED_TEXT = "params.yaml passed the checks of every stage (xmr check-params)\n"


def check_all(path: Path) -> dict:
    """Load `path` (every key checked) and build each stage's settings for every dataset of the run."""
    from pipeline.detection.settings import extract_settings, train_settings
    from pipeline.metrics.config import metric_options
    from pipeline.params import dataset_params, load_params

    from pipeline.dvc_stages import run_methods
    from pipeline.training.schema import check_run_settings

    p = load_params(path)  # every key's type, range and choice
    check_run_settings(p, run_methods(p), str(path))  # what each method of the run needs on each dataset
    train_settings(p)
    for dataset in p["datasets"]:
        dataset_params(p, dataset, str(path))
        extract_settings(p, dataset)
        train_settings(p, dataset)
        metric_options(p["metrics"], dataset, str(path))
    return p


@stage_errors
def main(
    params: Path = PARAMS_OPTION,
    out: Path = typer.Option(CHECKED_FILE, "--out", help="Marker written when every check passes (a DVC "
                                                          "output every stage depends on; its text never changes)."),
) -> None:
    """Check every parameter the way each stage would, and write the marker file.

    The first DVC stage: a value any stage would refuse stops `dvc repro` / `dvc exp run -S ...` here,
    before DVC removes the outputs of the stage that reads it. A dvc.yaml beside the params file whose
    per-method stages are out of date (a new method, a changed `run`) is refused too: `xmr dvc-yaml`.
    """
    check_all(params)
    dvc_yaml = Path(params).parent / "dvc.yaml"
    if dvc_yaml.is_file():  # its per-method stages must match the declarations and these params
        from pipeline.dvc_stages import write

        write(dvc_yaml, params, check=True)
    with atomic_output(out) as tmp:
        tmp.write_text(CHECKED_TEXT)
    typer.echo(f"{params}: every parameter passed the stages' checks")
