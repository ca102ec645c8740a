"""What `make repro` runs: every stage, or every stage but those of a dataset whose local folder is absent.

DVC's `foreach: ${datasets}` is fixed by params.yaml, so a dataset read in place from a folder beside the
checkout (`coco_mini` from `../shared/coco-mini`) has stages even on a clone without that folder. There
`make repro` reproduces every other stage, then the report alone (`dvc repro --single-item report`: its
upstream includes the skipped stages), and says in one line which dataset it skipped and why. Nothing
of the skipped dataset is written, so no number of it can be stale or made up; the report lists the
datasets of the run that have no metrics.

Run as `python -m pipeline.run_plan` (the Makefile's `repro`); `--dry-run` prints the commands only.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPORT_STAGE = "report"


def absent_datasets(params: dict, project: str | Path = ".") -> dict[str, str]:
    """Dataset of `datasets` -> why it cannot run here: those read in place (kind coco) whose root folder
    is absent. Datasets that download their files are never skipped (a failed download is an error)."""
    out = {}
    for name in params["datasets"]:
        entry = params["data"][name]
        if entry["kind"] == "coco" and entry["root"] and not (Path(project) / entry["root"]).is_dir():
            out[name] = f"data.{name}.root {entry['root']!r} is not a folder here"
    return out


def stage_targets(stage_names: list[str], skipped: set[str]) -> list[str]:
    """The stages to reproduce without the `skipped` datasets' stages (`<stage>@<ds>` and the matrix
    `<stage>@<ds>-<method>`) and without the report, which runs after them on its own."""
    def of_skipped(name: str) -> bool:
        item = name.partition("@")[2]
        return any(item == ds or item.startswith(f"{ds}-") for ds in skipped)

    return [n for n in stage_names if n != REPORT_STAGE and not of_skipped(n)]


def commands(params: dict, stage_names: list[str], project: str | Path = ".") -> tuple[list[list[str]], list[str]]:
    """The `dvc repro` command lines and the one-line notes of skipped datasets."""
    absent = absent_datasets(params, project)
    notes = [f"make repro: {ds} skipped ({why}; docs/datasets.md); every other dataset runs" for ds, why in absent.items()]
    if not absent:
        return [["dvc", "repro"]], notes
    targets = stage_targets(stage_names, set(absent))
    return [["dvc", "repro", *targets], ["dvc", "repro", "--single-item", REPORT_STAGE]], notes


def main(argv: list[str] | None = None) -> int:
    from pipeline.params import load_params

    argv = sys.argv[1:] if argv is None else argv
    params = load_params("params.yaml")
    names = subprocess.run(["dvc", "stage", "list", "--name-only"], capture_output=True, text=True)
    if names.returncode != 0:
        print(f"make repro: `dvc stage list` failed: {names.stderr.strip() or names.stdout.strip()}", file=sys.stderr)
        return names.returncode
    cmds, notes = commands(params, names.stdout.split())
    for note in notes:
        print(note, flush=True)
    for cmd in cmds:
        if "--dry-run" in argv:
            print(" ".join(cmd))
            continue
        result = subprocess.run(cmd)
        if result.returncode != 0:
            return result.returncode
    return 0


if __name__ == "__main__":
    sys.exit(main())
