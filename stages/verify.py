"""`xmr verify`: check the workspace's DVC outputs (and optionally a remote) against dvc.lock."""
from __future__ import annotations

from typing import Optional

import typer

from stages.common import stage_errors


@stage_errors
def main(
    remote: Optional[str] = typer.Option(None, "--remote", "-r", help="Also check this DVC remote ('default' for "
                                         "the default remote): every object dvc.lock names exists there."),
    repair: bool = typer.Option(False, "--repair", help="With --remote: delete the .dir objects of incomplete "
                                "folders from the remote, so that the next `dvc push` uploads the missing files."),
) -> None:
    """Hash every output of dvc.lock that is in the workspace as DVC does (a folder through its .dir
    listing) and refuse any difference: run it after `dvc pull`, before trusting pulled features.

    With --remote, list the remote's objects instead of trusting `dvc push` / `dvc status -c`: after a
    killed push they can report "in sync" while files are missing (treeverse/dvc#10977).
    """
    from pipeline.verify import VerifyError, verify_remote, verify_workspace

    checked = verify_workspace()
    typer.echo(f"workspace: {checked.outputs} outputs ({checked.files} files) match dvc.lock"
               + (f"; {len(checked.absent)} not in the workspace (not checked)" if checked.absent else ""))
    if remote is None:
        return
    result = verify_remote(".", None if remote == "default" else remote, repair)
    if result.missing:
        path, oids = next(iter(result.missing.items()))
        count = sum(len(v) for v in result.missing.values())
        fix = ("deleted the .dir objects of the incomplete folders: run `dvc push` again, then `xmr verify --remote "
               f"{remote}`" if result.repaired else f"run `xmr verify --remote {remote} --repair`, then `dvc push`")
        raise VerifyError(f"remote {remote}: {count} object(s) of dvc.lock missing (first: {oids[0]} of {path}); {fix}")
    typer.echo(f"remote {remote}: all {result.objects} objects of dvc.lock present")
