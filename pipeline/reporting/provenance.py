"""Where the report's numbers came from: the machine classes of its metrics files, and how far they are from
the committed ones.

Each metrics file names the machine class that trained its model and the one that evaluated it
(`machine_train`, `machine_eval`: pipeline/machine.py). A rerun on the same class is bit-identical; on
another class training takes another path (the detector first), so the numbers move like they do for
another seed. When the workspace's numbers differ from those committed at git HEAD, the report puts each
method's |difference| beside the seed spread it already computes (`report.seeds`), so a reader can tell
machine noise from a change. HEAD is read with `git show`; without git, or with nothing committed, there is
nothing to compare and the section says so in one line.
"""
from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path

from pipeline.machine import EVAL_KEY, TRAIN_KEY, UNRECORDED
from pipeline.reporting.collect import MetricsRecord, ReportInputError
from pipeline.reporting.seeds import SEED_KEYS, SeedSummary, metric_over_seeds

MACHINE_KEYS = (TRAIN_KEY, EVAL_KEY)
# Keys of a metrics file that say where and by which run it was made, not what was measured.
NOT_MEASURED = (*MACHINE_KEYS, "evaluation_id")


def machine_of(record: MetricsRecord, key: str = TRAIN_KEY) -> str:
    """The machine class line of a record (`UNRECORDED` for files written before the record existed)."""
    value = record.values.get(key)
    if value is None:
        return UNRECORDED
    if not isinstance(value, str) or not value.strip():
        raise ReportInputError(f"{record.path}: field '{key}' must be a machine class line (a non-empty string, "
                               f"pipeline/machine.py), got {value!r}")
    return value


def machine_classes(records: list[MetricsRecord]) -> dict[str, dict[str, list[str]]]:
    """class line -> {"trained": [ds/method, ...], "evaluated": [...]}, classes in order of first use."""
    classes: dict[str, dict[str, list[str]]] = {}
    for record in records:
        for key, role in ((TRAIN_KEY, "trained"), (EVAL_KEY, "evaluated")):
            entry = classes.setdefault(machine_of(record, key), {"trained": [], "evaluated": []})
            entry[role].append(f"{record.dataset}/{record.method}")
    return classes


def committed_values(path: Path) -> dict | None:
    """The metrics file at `path` as committed at git HEAD; None without git, outside a repository, or when
    HEAD has no such file (a malformed committed file is refused: it would be compared wrongly)."""
    path = Path(path)
    try:
        result = subprocess.run(["git", "-C", str(path.parent), "show", f"HEAD:./{path.name}"],
                                capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    if result.returncode != 0:
        return None
    try:
        values = json.loads(result.stdout)
    except json.JSONDecodeError as exc:
        raise ReportInputError(f"{path} at git HEAD: not a readable JSON metrics file ({exc})") from exc
    if not isinstance(values, dict):
        raise ReportInputError(f"{path} at git HEAD: a metrics file must hold a JSON object")
    return values


def headline_key(a: dict, b: dict) -> str | None:
    """The first headline metric (the seed table's order) that both files hold as a number."""
    for key in SEED_KEYS:
        for name in (key, f"coco5k_{key}", f"coco1k_{key}"):
            if all(isinstance(v.get(name), (int, float)) and not isinstance(v.get(name), bool) for v in (a, b)):
                return name
    return None


@dataclass(frozen=True)
class CommittedDifference:
    """One method whose headline metric differs from the committed one."""

    dataset: str
    method: str
    key: str
    workspace: float
    committed: float
    seed: SeedSummary | None  # the seed sweep's spread of the same metric, when one was run
    machine: str              # this file's training class
    committed_machine: str    # the committed file's (UNRECORDED when it has none)

    @property
    def difference(self) -> float:
        return abs(self.workspace - self.committed)


@dataclass(frozen=True)
class Committed:
    """The workspace's metrics files against those at git HEAD."""

    compared: int                            # files found at HEAD
    differences: list[CommittedDifference]   # those whose headline metric differs
    other_numbers: int                       # those whose other measured values differ but not the headline


def compare_committed(records: list[MetricsRecord], runs: dict) -> Committed:
    """Each record against its committed version; `runs` (seed -> experiment state) gives the seed spread."""
    compared, differences, other = 0, [], 0
    for record in records:
        committed = committed_values(record.path)
        if committed is None:
            continue
        compared += 1
        current = json.loads(record.path.read_text())  # the file as written: the report fills defaults into values
        key = headline_key(current, committed)
        measured = [k for k in set(current) | set(committed) if k not in NOT_MEASURED]
        if key is not None and current[key] != committed[key]:
            seed = metric_over_seeds(runs, record.dataset, record.method, key) if runs else None
            differences.append(CommittedDifference(record.dataset, record.method, key, float(current[key]),
                                                   float(committed[key]), seed, machine_of(record),
                                                   _committed_machine(committed, record)))
        elif any(current.get(k) != committed.get(k) for k in measured):
            other += 1
    return Committed(compared, differences, other)


def _committed_machine(values: dict, record: MetricsRecord) -> str:
    value = values.get(TRAIN_KEY)
    if value is not None and not isinstance(value, str):
        raise ReportInputError(f"{record.path} at git HEAD: field '{TRAIN_KEY}' must be a string, got {value!r}")
    return value or UNRECORDED


def provenance_markdown(classes: dict[str, dict[str, list[str]]], committed: Committed | None) -> list[str]:
    """The section "Where the numbers came from": one line per machine class, then the comparison with HEAD."""
    out = ["## Where the numbers came from", "",
           "The machine class (CPU model, the instruction set torch's kernels dispatched to, torch / numpy versions, "
           "threads intra/inter-op, accelerator) decides the last bits of every sum, and from there the path "
           "training takes. A rerun on the same class is bit-identical; on another class the numbers move like "
           "they do for another seed (docs/reliability.md, \"Determinism\").", ""]
    for line, uses in classes.items():
        trained, evaluated = uses["trained"], uses["evaluated"]
        label = "not recorded (files written before machine records: rerun `dvc repro` to record it)" \
            if line == UNRECORDED else f"`{line}`"
        roles = [f"trained {_listing(trained)}" if trained else "",
                 f"evaluated {'the same' if evaluated == trained else _listing(evaluated)}" if evaluated else ""]
        out.append(f"- {label}: {'; '.join(r for r in roles if r)}.")
    out.append("")
    if committed is None or committed.compared == 0:
        return out + ["No committed metrics files to compare with (no git repository, or none at HEAD).", ""]
    if not committed.differences:
        rest = (f" ({committed.other_numbers} differ in other measured values)" if committed.other_numbers else "")
        return out + [f"The headline numbers of all {committed.compared} metrics files equal those committed at git "
                      f"HEAD{rest}.", ""]
    other_class = [d for d in committed.differences if d.machine != d.committed_machine or d.machine == UNRECORDED]
    out += [f"The workspace's headline numbers differ from those committed at git HEAD for "
            f"{len(committed.differences)} of {committed.compared} metrics files.", ""]
    if other_class:
        out += [f"{len(other_class)} of these come from another machine class than the committed ones (or a class "
                "not recorded on one side). With the same code, params and data, such a difference is training "
                "noise of the same kind as another seed, not a change of method: compare |Δ| with the seed std "
                "(a |Δ| many times the seed std points to a change of code, params or data instead).", ""]
    same = len(committed.differences) - len(other_class)
    if same:
        out += [f"{same} of these come from the same machine class as the committed ones: a rerun there is "
                "bit-identical, so their difference comes from changed code, params or data.", ""]
    rows = ["| dataset | method | metric | workspace | committed | \\|Δ\\| | seed std | \\|Δ\\| / std "
            "| machine class |",
            "|---|---|---|---|---|---|---|---|---|"]
    for d in committed.differences:
        std = f"{d.seed.std:.2f} (n={d.seed.n})" if d.seed and d.seed.n > 1 else "–"
        ratio = f"{d.difference / d.seed.std:.1f}" if d.seed and d.seed.n > 1 and d.seed.std > 0 else "–"
        machine = "same as committed" if d.machine == d.committed_machine and d.machine != UNRECORDED else "other"
        rows.append(f"| {d.dataset} | `{d.method}` | {d.key} | {d.workspace:.2f} | {d.committed:.2f} | "
                    f"{d.difference:.2f} | {std} | {ratio} | {machine} |")
    out += rows + [""]
    if not any(d.seed and d.seed.n > 1 for d in committed.differences):
        out += ["No seed sweep to compare with (`report.seeds`; section \"Over training seeds\"): the seed std is "
                "what tells machine noise from a real change.", ""]
    return out


def _listing(items: list[str], shown: int = 6) -> str:
    """`ds/method` items grouped by dataset: "shapes: cca, ss; coco_mini: 20 methods"."""
    by_dataset: dict[str, list[str]] = {}
    for item in items:
        dataset, method = item.split("/", 1)
        by_dataset.setdefault(dataset, []).append(method)
    return "; ".join(f"{ds}: {', '.join(f'`{m}`' for m in ms)}" if len(ms) <= shown else f"{ds}: {len(ms)} methods"
                     for ds, ms in by_dataset.items())
