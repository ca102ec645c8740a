"""The report's "Where the numbers came from": the machine classes of the metrics files, and the workspace's
numbers against those committed at git HEAD, next to the seed spread."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from pipeline.machine import UNRECORDED
from pipeline.reporting.collect import ReportInputError, collect_metrics
from pipeline.reporting.provenance import compare_committed, machine_classes, provenance_markdown
from pipeline.reporting.report import build_report
from pipeline.reporting.sweep import ExperimentState

A, B = "CPU A; isa AVX512; torch 2; numpy 2; threads 2/2; accelerator none", \
    "CPU B; isa AVX2; torch 2; numpy 2; threads 2/2; accelerator none"


def write(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))


def metrics(ndcg: float, machine: str | None = A, **extra) -> dict:
    out = {"ndcg_i2t": ndcg - 1, "ndcg_t2i": ndcg + 1, "ndcg_ave": ndcg, "map_ave": ndcg - 10, **extra}
    if machine is not None:
        out.update(machine_train=machine, machine_eval=machine)
    return out


def git(cwd: Path, *args: str) -> None:
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=cwd, check=True,
                   capture_output=True)


@pytest.fixture
def committed(tmp_path) -> Path:
    """A repository whose HEAD holds ss 80.0 and cca 60.0, both trained and evaluated on class A."""
    reports = tmp_path / "reports"
    write(reports / "metrics/shapes/ss.json", metrics(80.0))
    write(reports / "metrics/shapes/cca.json", metrics(60.0))
    git(tmp_path, "init", "-q")
    git(tmp_path, "add", "-A")
    git(tmp_path, "commit", "-qm", "results")
    return reports


def seed_runs(values: dict[str, list[float]]) -> dict[int, ExperimentState]:
    """Seed -> experiment state with `ndcg_ave` per method (as `sweep.seed_runs` returns them)."""
    n = len(next(iter(values.values())))
    return {seed: ExperimentState(f"s{seed}", f"r{seed}", {"seed": seed},
                                  {("shapes", m): {"ndcg_ave": v[seed]} for m, v in values.items()})
            for seed in range(n)}


def test_another_machine_class_is_compared_with_the_seed_spread(committed):
    write(committed / "metrics/shapes/ss.json", metrics(81.5, B))  # retrained on class B
    records = collect_metrics(committed / "metrics")
    result = compare_committed(records, seed_runs({"ss": [79.0, 80.0, 81.0], "cca": [60.0, 60.0, 60.0]}))
    assert result.compared == 2 and [d.method for d in result.differences] == ["ss"]
    diff = result.differences[0]
    assert (diff.workspace, diff.committed, diff.difference) == (81.5, 80.0, 1.5)
    assert diff.seed.std == pytest.approx(1.0) and (diff.machine, diff.committed_machine) == (B, A)
    text = "\n".join(provenance_markdown(machine_classes(records), result))
    assert f"- `{B}`: trained shapes: `ss`; evaluated the same." in text
    assert f"- `{A}`: trained shapes: `cca`; evaluated the same." in text
    assert "training noise of the same kind as another seed" in text
    assert "| shapes | `ss` | ndcg_ave | 81.50 | 80.00 | 1.50 | 1.00 (n=3) | 1.5 | other |" in text
    assert "cca` |" not in text  # an unchanged method has no row


def test_the_same_machine_class_points_to_a_change_and_no_sweep_is_said(committed):
    write(committed / "metrics/shapes/ss.json", metrics(75.0, A))
    records = collect_metrics(committed / "metrics")
    text = "\n".join(provenance_markdown(machine_classes(records), compare_committed(records, {})))
    assert "1 of these come from the same machine class" in text and "changed code, params or data" in text
    assert "another seed, not a change of method" not in text
    assert "| shapes | `ss` | ndcg_ave | 75.00 | 80.00 | 5.00 | – | – | same as committed |" in text
    assert "No seed sweep to compare with" in text


def test_equal_numbers_and_no_repository(committed, tmp_path):
    records = collect_metrics(committed / "metrics")
    text = "\n".join(provenance_markdown(machine_classes(records), compare_committed(records, {})))
    assert "The headline numbers of all 2 metrics files equal those committed at git HEAD." in text
    assert "differ in other measured values" not in text
    for record in records:  # what the report fills in from params.yaml is not a difference of the files
        record.values.setdefault("ndcg_k", 500)
    assert compare_committed(records, {}).other_numbers == 0
    write(committed / "metrics/shapes/cca.json", metrics(60.0, map_ave=49.0))  # same headline, other map
    assert compare_committed(collect_metrics(committed / "metrics"), {}).other_numbers == 1
    (tmp_path / ".git").rename(tmp_path / "not-git")  # no repository: nothing to compare, one line
    text = "\n".join(provenance_markdown(machine_classes(records), compare_committed(records, {})))
    assert "No committed metrics files to compare with" in text


def test_report_names_the_classes_and_old_files_without_a_record(tmp_path):
    reports = tmp_path / "reports"
    write(reports / "metrics/shapes/ss.json", metrics(80.0, A))
    write(reports / "metrics/shapes/cca.json", metrics(60.0, None))  # written before machine records
    build_report(reports, tmp_path / "data")
    text = (reports / "results.md").read_text()
    section = text.split("## Where the numbers came from", 1)[1].split("\n## ", 1)[0]
    assert f"- `{A}`: trained shapes: `ss`" in section
    assert f"- {UNRECORDED} (files written before machine records" in section and "shapes: `cca`" in section
    assert "No committed metrics files to compare with" in section  # tmp_path is no repository


def test_a_malformed_machine_field_is_refused(tmp_path):
    reports = tmp_path / "reports"
    write(reports / "metrics/shapes/ss.json", metrics(80.0, machine=None, machine_train=3))
    with pytest.raises(ReportInputError, match=r"ss\.json: field 'machine_train' must be a machine class line"):
        build_report(reports, tmp_path / "data")
