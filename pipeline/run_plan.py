"""What `make repro` runs: every stage, two `dvc repro` processes side by side (one per core), and the
datasets whose local folder is absent left out, saying so.

Tasks. After the shared stages (`check_params`, `code_fingerprints`), the work is split into tasks that
each run in a `dvc repro --single-item` process of their own: one per dataset for its data stages
(download -> ... -> tokenize, in dvc.yaml's order, which is the pipeline's), then one per (dataset,
method) for the method's train and evaluate stages, which starts once its dataset's data task is done.
`lanes` tasks run at a time (default 2, fewer on a 1-CPU machine; every stage uses one torch thread, so a
machine with more cores can take more, `make repro LANES=N`, as long as the tasks' memory and, with a GPU,
its memory hold them all;
each stage is told how many run at once, `XMR_CONCURRENT_STAGES`, and takes that share of the memory
available for its feature cache, `pipeline.training.data.cache_limit_gb`), the longest
first: a method's estimated cost is its seconds per epoch in its last training history
(`reports/training/<ds>/<m>.json`, committed) times the epochs it may train now (its cap), so the slow
methods start early and the two cores finish together instead of one long method running alone at the end. Then a last `dvc repro` runs what is left (the report).
DVC releases its repository lock while a stage's command runs and `--wait-for-lock` makes the processes
take turns for their bookkeeping, so `dvc.lock` ends the same as after a plain `dvc repro`
(`tests/test_real_data_run.py` checks `dvc status` after it). Each line a task prints is prefixed with its
name (`[shapes]`, `[coco_mini/scan_t2i]`).

Absent folders. DVC's `foreach: ${datasets}` is fixed by params.yaml, so a dataset read in place from a
folder beside the checkout (`coco_mini` from `../shared/coco-mini`) has stages even on a clone without that
folder. There its tasks are left out, the report runs alone (`--single-item`: its upstream includes the
skipped stages), and one line says which dataset was skipped and why. No stage of the skipped dataset runs.

Run as `python -m pipeline.run_plan` (the Makefile's `repro`, `make repro LANES=N`); `--dry-run` prints the
tasks only, `--lanes N` sets how many run at a time (1: one after the other).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

REPORT_STAGE = "report"
SHARED = "shared"
DVC = ["dvc", "--wait-for-lock", "repro"]
# A task runs its own stages only: without --single-item DVC also takes the upstream `check_params` of each
# target and locks its output for writing, which collides with the other task's read lock on that file
# ("is busy, it is being blocked by").
LANE = DVC + ["--single-item"]
# Tasks at a time unless told (`--lanes`): the 2-core machine's cores. More is the user's choice, since
# several trainings on one GPU share its memory.
DEFAULT_LANES = 2
# The estimated seconds of a method without a training history: after every method that has one.
UNKNOWN_COST = 0.0


@dataclass(frozen=True)
class Task:
    name: str                      # the prefix of its output lines
    cmd: list[str]
    after: tuple[str, ...] = ()    # the tasks that must have succeeded before it starts
    cost: float = 0.0              # estimated seconds: among the ready tasks, the costliest starts first


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
    """The dataset of a `<stage>@<ds>` stage name (None: a shared stage)."""
    item = stage.partition("@")[2]
    return item if item in datasets else None


def method_of(stage: str, methods: list[str]) -> str | None:
    """The method of a `train_<m>@<ds>` / `evaluate_<m>@<ds>` stage (None: a data stage)."""
    name = stage.partition("@")[0]
    return next((m for m in methods if name in (f"train_{m}", f"evaluate_{m}")), None)


def training_seconds(project: str | Path, dataset: str, method: str, epochs: int) -> float:
    """`method`'s estimated training seconds on `dataset`: the mean seconds of an epoch in its last training
    history times `epochs` (UNKNOWN_COST without a readable history)."""
    path = Path(project) / "reports" / "training" / dataset / f"{method}.json"
    try:
        seconds = [float(r.get("seconds", 0.0)) for r in json.loads(path.read_text()) if isinstance(r, dict)]
    except (OSError, ValueError, TypeError, AttributeError):
        return UNKNOWN_COST
    return sum(seconds) / len(seconds) * max(1, epochs) if seconds else UNKNOWN_COST


def plan(params: dict, stage_names: list[str], project: str | Path = ".") -> tuple[list[Task], list[str]]:
    """`(tasks, notes)`: the tasks in the order they may start (see the module docstring) and the one-line
    notes of skipped datasets."""
    from pipeline.dvc_stages import run_methods
    from pipeline.training.schema import method_train_settings

    absent = absent_datasets(params, project)
    notes = [f"make repro: {ds} skipped ({why}; docs/datasets.md); every other dataset runs" for ds, why in absent.items()]
    datasets, methods = list(params["datasets"]), run_methods(params)
    shared = [n for n in stage_names if dataset_of(n, datasets) is None and n != REPORT_STAGE]
    tasks = [Task(SHARED, DVC + shared)] if shared else []
    first = (SHARED,) if shared else ()
    for ds in (d for d in datasets if d not in absent):
        names = [n for n in stage_names if dataset_of(n, datasets) == ds]
        data = [n for n in names if method_of(n, methods) is None]
        if data:
            tasks.append(Task(ds, LANE + data, first))
        for method in methods:
            own = [n for n in names if method_of(n, methods) == method]
            if own:
                tasks.append(Task(f"{ds}/{method}", LANE + own, first + ((ds,) if data else ()),
                                  training_seconds(project, ds, method,
                                                   method_train_settings(params, method, ds)["epochs"])))
    report = DVC + (["--single-item", REPORT_STAGE] if absent else [])
    tasks.append(Task(REPORT_STAGE, report, tuple(t.name for t in tasks)))
    return tasks, notes


def default_lanes() -> int:
    """`DEFAULT_LANES`, or fewer when this process may run on fewer CPUs (its affinity where the platform
    says, else the CPU count)."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # no sched_getaffinity (macOS, Windows)
        cpus = os.cpu_count() or 1
    return max(1, min(DEFAULT_LANES, cpus))


def _run_task(task: Task, prefix: bool, env: dict[str, str]) -> int:
    if not prefix:
        return subprocess.run(task.cmd, env=env).returncode
    proc = subprocess.Popen(task.cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1, env=env)
    for line in proc.stdout:
        sys.stdout.write(f"[{task.name}] {line}")
        sys.stdout.flush()
    return proc.wait()


def run_tasks(tasks: list[Task], lanes: int) -> int:
    """Run `tasks`, at most `lanes` at a time, each once all its `after` tasks succeeded; among the ready
    ones the costliest first (ties: plan order). After a failure no new task starts (those running finish);
    returns the first non-zero exit code, else 0. Every task's stages see `XMR_CONCURRENT_STAGES` = `lanes`."""
    from pipeline.training.data import CONCURRENT_STAGES

    env = {**os.environ, CONCURRENT_STAGES: str(lanes)}
    pending = list(tasks)
    done: set[str] = set()
    codes: list[int] = []
    running: dict[str, threading.Thread] = {}
    changed = threading.Condition()

    def work(task: Task) -> None:
        code = _run_task(task, prefix=task.name != REPORT_STAGE, env=env)
        with changed:
            codes.append(code)
            if code == 0:
                done.add(task.name)
            del running[task.name]
            changed.notify()

    with changed:
        while pending or running:
            ready = [t for t in pending if set(t.after) <= done] if not any(codes) else []
            for task in sorted(ready, key=lambda t: -t.cost)[:max(0, lanes - len(running))]:
                pending.remove(task)
                running[task.name] = threading.Thread(target=work, args=(task,))
                running[task.name].start()
            if not running:
                break  # nothing can start: a failure upstream
            changed.wait()
    return next((c for c in codes if c), 0)


def main(argv: list[str] | None = None) -> int:
    from pipeline.params import load_params

    argv = sys.argv[1:] if argv is None else argv
    lanes = default_lanes()
    if "--lanes" in argv:
        given = argv[argv.index("--lanes") + 1] if argv.index("--lanes") + 1 < len(argv) else ""
        if not given.isdigit() or int(given) < 1:
            print(f"make repro: --lanes (LANES) must be a whole number >= 1, got {given!r}", file=sys.stderr)
            return 2
        lanes = int(given)
    params = load_params("params.yaml")
    names = subprocess.run(["dvc", "stage", "list", "--name-only"], capture_output=True, text=True)
    if names.returncode != 0:
        print(f"make repro: `dvc stage list` failed: {names.stderr.strip() or names.stdout.strip()}", file=sys.stderr)
        return names.returncode
    tasks, notes = plan(params, names.stdout.split())
    for note in notes:
        print(note, flush=True)
    print(f"make repro: {len(tasks)} tasks, {lanes} at a time (--lanes; make repro LANES=N)", flush=True)
    if "--dry-run" in argv:
        for task in tasks:
            after = f" (after {', '.join(task.after)})" if task.after else ""
            print(f"[{task.name}] {' '.join(task.cmd)}{after}; estimated {task.cost:.0f} s")
        return 0
    return run_tasks(tasks, lanes)


if __name__ == "__main__":
    sys.exit(main())
