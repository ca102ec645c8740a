"""`xmr code-fingerprints`: write each method's code fingerprints, the code dependency of its stages."""
from __future__ import annotations

from pathlib import Path

import typer

from stages.common import stage_errors


@stage_errors
def main(root: Path = typer.Option(Path("."), "--root", help="The project folder (holding pipeline/ and stages/).")) -> None:
    """Write data/code/<command>_<method>.txt for every declared method and both commands (train,
    evaluate): one `<md5>  <path>` line per project file the command runs for that method, and the values
    of the params.yaml keys it reads. Each train/evaluate stage of dvc.yaml depends on its file instead of
    on the files and params themselves, so editing one method's module or settings reruns that method only
    (pipeline/dvc_stages.py says why)."""
    from pipeline.dvc_stages import CODE_DIR, write_fingerprints

    written = write_fingerprints(root)
    typer.echo(f"{root / CODE_DIR}: {len(written)} code fingerprints")
