"""What `make repro` runs: every stage, each dataset's stages in a lane of their own, and the datasets
whose local folder is absent left out, saying so.

Lanes. The datasets' stage chains are independent (each dataset's download -> ... -> evaluate reads only
its own files), so after `check_params` each dataset's chain runs in its own `dvc repro` process, side by
side (`lanes` at a time, default 2: one per core, every stage using one torch thread; each lane runs
exactly its dataset's stages, `--single-item --glob '*@<ds>'`, in dvc.yaml's order), then a last
`dvc repro` runs what is left (the report). DVC releases its repository lock while a stage's command runs
and `--wait-for-lock` makes the lanes take turns for their bookkeeping, so `dvc.lock` ends the same as
after a plain `dvc repro` (`tests/test_real_data_run.py` checks `dvc status` after it). Each line a lane
prints is prefixed with its dataset.

Absent folders. DVC's `foreach: ${datasets}` is fixed by params.yaml, so a dataset read in place from a
folder beside the checkout (`coco_mini` from `../shared/coco-mini`) has stages even on a clone without that
folder. There its lane is left out, the report runs alone (`--single-item`: its upstream includes the
skipped stages), and one line says which dataset was skipped and why. No stage of the skipped dataset runs.

Run as `python -m pipeline.run_plan` (the Makefile's `repro`); `--dry-run` prints the commands only,
`--lanes N` sets the lanes (1: one after the other).
"""
from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

REPORT_STAGE = "report"
DVC = ["dvc", "--wait-for-lock", "repro"]
# A lane runs its own stages only, in dvc.yaml's order (which is the pipeline's): without --single-item DVC
# also takes the upstream `check_params` of each target and locks its output for writing, which collides
# with the other lane's read lock on that file ("is busy, it is being blocked by").
LANE = DVC + ["--single-item"]


def absent_datasets(params: dict, project: str | Path = ".") -> dict[str, str]:
    """Dataset of `datasets` -> why it cannot run here: those read in place (kind coco) whose root folder
    is absent. Datasets that download their files are never skipped (a failed download is an error)."""
    out = {}
    for name in params["datasets"]:
        entry = params["data"][name]
        if entry["kind"] == "coco" and entry["root"] and not (Path(project) / entry["root"]).is_dir():
            out[name] = f"data.{name}.root {entry['root']!r} is not a folder here"
    return out


def dataset_of(stage: str, datasets: list[str]) -> str | None:
    """The dataset of a `<stage>@<ds>` or matrix `<stage>@<ds>-<method>` stage name (None: a shared stage)."""
    item = stage.partition("@")[2]
    return next((ds for ds in sorted(datasets, key=len, reverse=True) if item == ds or item.startswith(f"{ds}-")),
                None)


def plan(params: dict, stage_names: list[str], project: str | Path = ".") -> tuple[list[dict[str, list[str]]], list[str]]:
    """`(steps, notes)`: each step maps a lane's name to its `dvc repro` command line (the lanes of a step run
    side by side, one per dataset; the steps one after the other); `notes` are the one-line notes of
    skipped datasets."""
    absent = absent_datasets(params, project)
    notes = [f"make repro: {ds} skipped ({why}; docs/datasets.md); every other dataset runs" for ds, why in absent.items()]
    datasets = list(params["datasets"])
    by_dataset = {ds: [n for n in stage_names if dataset_of(n, datasets) == ds] for ds in datasets if ds not in absent}
    shared = [n for n in stage_names if dataset_of(n, datasets) is None and n != REPORT_STAGE]
    steps = [{"shared": DVC + shared}] if shared else []
    steps.append({ds: LANE + _targets(ds, names) for ds, names in by_dataset.items() if names})
    steps.append({REPORT_STAGE: DVC + (["--single-item", REPORT_STAGE] if absent else [])})
    return [s for s in steps if s], notes


def _targets(dataset: str, names: list[str]) -> list[str]:
    """A lane's `dvc repro` targets: the pattern `*@<dataset>` when it names exactly the lane's stages. DVC
    collects a pattern in one pass over dvc.yaml, in the file's order, and each explicit target in a pass
    of its own (about 7 s each here: 5 minutes for a dataset's 46 stages)."""
    if all(n.endswith(f"@{dataset}") for n in names):
        return ["--glob", f"*@{dataset}"]
    return names


def _run_lane(cmd: list[str], prefix: str, codes: list[int]) -> None:
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)
    for line in proc.stdout:
        sys.stdout.write(f"{prefix}{line}")
        sys.stdout.flush()
    codes.append(proc.wait())


def run_step(step: dict[str, list[str]], lanes: int) -> int:
    """Run a step's lanes, `lanes` at a time; the first non-zero exit code, else 0."""
    codes: list[int] = []
    items = list(step.items())
    for start in range(0, len(items), lanes):
        batch = items[start:start + lanes]
        if len(batch) == 1:
            codes.append(subprocess.run(batch[0][1]).returncode)
            continue
        threads = [threading.Thread(target=_run_lane, args=(cmd, f"[{name}] ", codes)) for name, cmd in batch]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    return next((c for c in codes if c), 0)


def main(argv: list[str] | None = None) -> int:
    from pipeline.params import load_params

    argv = sys.argv[1:] if argv is None else argv
    lanes = int(argv[argv.index("--lanes") + 1]) if "--lanes" in argv else 2
    params = load_params("params.yaml")
    names = subprocess.run(["dvc", "stage", "list", "--name-only"], capture_output=True, text=True)
    if names.returncode != 0:
        print(f"make repro: `dvc stage list` failed: {names.stderr.strip() or names.stdout.strip()}", file=sys.stderr)
        return names.returncode
    steps, notes = plan(params, names.stdout.split())
    for note in notes:
        print(note, flush=True)
    for step in steps:
        if "--dry-run" in argv:
            print("\n".join(f"[{name}] " + " ".join(cmd) for name, cmd in step.items()))
            continue
        code = run_step(step, max(1, lanes))
        if code:
            return code
    return 0


if __name__ == "__main__":
    sys.exit(main())
