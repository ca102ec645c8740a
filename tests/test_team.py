"""Incremental reruns and team sharing, on a tiny copy of the whole pipeline (all stages, two methods).

One project is built and reproduced once per module; the tests then check what DVC re-runs after each
kind of change, and that a teammate's clone that pulls the extracted features from a shared remote
skips extraction and trains.
"""
import shutil
from pathlib import Path

import pytest
import yaml

from conftest import REPO, tiny_shapes_params
from test_cli import BIN, run

TINY = {
    "run": {"lambda_methods": ["ss"], "methods": ["cca"]},
    "detector": {"iterations": 6, "batch_size": 2, "checkpoint_every": 3},
    "extract": {"batch_size": 8, "workers": 0},
    "text": {"w2v_epochs": 1},
    "train": {"epochs": 1},
}


def dvc(args, cwd, check=True):
    return run([BIN / "dvc", *args], cwd, check=check)


def ran(output: str) -> set[str]:
    """Names of the stages a `dvc repro` / `dvc exp run` output says it ran."""
    return {line.split("'")[1] for line in output.splitlines() if line.startswith("Running stage '")}


def write_params(project: Path, edit) -> None:
    path = project / "params.yaml"
    params = yaml.safe_load(path.read_text())
    edit(params)
    path.write_text(yaml.safe_dump(params, sort_keys=False))


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """A git + DVC project with the repository's pipeline on a tiny configuration, reproduced once."""
    root = tmp_path_factory.mktemp("team")
    origin = root / "alice"
    origin.mkdir()
    for name in ("dvc.yaml", "pipeline", "stages", "splits", ".dvcignore", ".gitignore"):
        src = REPO / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, origin / name,
                                                           **({"ignore": shutil.ignore_patterns("__pycache__")} if src.is_dir() else {}))

    def tiny(params):
        params["data"]["shapes"].update(tiny_shapes_params(n_images=40, n_val=8, n_test=8))
        for section, values in TINY.items():
            params[section].update(values)
        params["methods"]["ss"].update(d_model=16, layers=1, heads=2, d_ff=32)
        params["methods"]["cca"].update(n_components=4)

    shutil.copy(REPO / "params.yaml", origin / "params.yaml")
    write_params(origin, tiny)
    run(["git", "init", "-q", "-b", "main"], origin)
    run(["git", "config", "user.email", "ci@example.invalid"], origin)
    run(["git", "config", "user.name", "ci"], origin)
    dvc(["init", "-q"], origin)
    dvc(["config", "core.analytics", "false"], origin)
    remote = root / "remote"
    dvc(["remote", "add", "-d", "shared", str(remote)], origin)
    first = dvc(["repro"], origin).stdout
    run(["git", "add", "-A"], origin)
    run(["git", "commit", "-q", "-m", "tiny pipeline"], origin)
    return {"root": root, "origin": origin, "remote": remote, "first": first}


def test_first_repro_runs_every_stage(project):
    stages = ran(project["first"])
    for stage in ("download@shapes", "prepare@shapes", "train_detector@shapes", "extract@shapes", "tokenize@shapes",
                  "train_lambda@shapes-ss", "train@shapes-cca", "evaluate_lambda@shapes-ss", "evaluate@shapes-cca",
                  "report"):
        assert stage in stages
    assert (project["origin"] / "reports" / "metrics" / "shapes" / "cca.json").is_file()


def test_second_repro_runs_nothing(project):
    out = dvc(["repro"], project["origin"]).stdout
    assert ran(out) == set(), out


def test_lambda_experiment_reruns_only_the_methods_that_read_lambda(project):
    out = dvc(["exp", "run", "-S", "lambda=0.05"], project["origin"]).stdout
    assert ran(out) == {"train_lambda@shapes-ss", "evaluate_lambda@shapes-ss", "report"}, out
    shown = dvc(["exp", "show", "--json"], project["origin"]).stdout
    assert "0.05" in shown and "ndcg_ave" in shown
    run(["git", "checkout", "--", "params.yaml", "dvc.lock"], project["origin"])
    dvc(["checkout", "-q", "-f"], project["origin"], check=False)


def settle(origin: Path) -> None:
    """Bring the workspace back to a reproduced state after an earlier test's experiment."""
    dvc(["repro"], origin)
    assert ran(dvc(["repro"], origin).stdout) == set()


def test_one_method_param_leaves_the_others_cached(project):
    origin = project["origin"]
    settle(origin)
    write_params(origin, lambda p: p["methods"]["cca"].update(n_components=3))
    try:
        out = dvc(["repro"], origin).stdout
        assert ran(out) == {"train@shapes-cca", "evaluate@shapes-cca", "report"}, out
    finally:
        run(["git", "checkout", "--", "params.yaml", "dvc.lock"], origin)
        dvc(["checkout", "-q", "-f"], origin, check=False)


def test_detector_param_reruns_extraction_and_downstream(project):
    origin = project["origin"]
    settle(origin)
    write_params(origin, lambda p: p["extract"].update(score_threshold=0.4))
    try:
        out = dvc(["repro"], origin).stdout
        stages = ran(out)
        assert {"extract@shapes", "train_lambda@shapes-ss", "train@shapes-cca", "report"} <= stages, out
        assert not stages & {"download@shapes", "prepare@shapes", "train_detector@shapes", "tokenize@shapes"}
    finally:
        run(["git", "checkout", "--", "params.yaml", "dvc.lock"], origin)
        dvc(["checkout", "-q", "-f"], origin, check=False)


def test_teammate_pulls_features_and_skips_extraction(project):
    origin, root = project["origin"], project["root"]
    # Alice shares what is expensive to recompute: the features (and what they were computed from).
    dvc(["push", "--with-deps", "extract@shapes", "tokenize@shapes"], origin)
    bob = root / "bob"
    run(["git", "clone", "-q", str(origin), str(bob)], root)
    dvc(["pull", "--with-deps", "extract@shapes", "tokenize@shapes"], bob)
    assert (bob / "data" / "shapes" / "features.zarr").is_dir()
    assert not (bob / "models" / "shapes" / "ss").exists()
    out = dvc(["repro"], bob).stdout
    stages = ran(out)
    assert "extract@shapes" not in stages and "train_detector@shapes" not in stages
    assert {"train_lambda@shapes-ss", "train@shapes-cca"} <= stages
    assert "Stage 'extract@shapes' didn't change, skipping" in out
