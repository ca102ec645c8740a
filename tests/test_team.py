"""Incremental reruns, experiment sweeps and team sharing, on a tiny copy of the whole pipeline
(all stages, two methods; tests/tiny_project.py).

One project is built and reproduced once per module; the tests then check what DVC re-runs after each
kind of change, that a queued lambda sweep runs on two workers and feeds the report, and that a
teammate's clone that pulls the extracted features from a shared remote (a directory, an S3 server,
an SSH server) skips extraction.
"""
import json
import time
from pathlib import Path

import pytest

from remote_servers import s3_server, sftp_server
from tiny_project import commit, create_project, dvc, edit_params, ran, run, tiny_params

DATASETS = ["shapes", "shapes_2"]
SHARED = [f"{stage}@{ds}" for ds in DATASETS for stage in ("extract", "tokenize")]  # what a team shares
# stages that rerun on every params.yaml edit: both read it whole and take seconds
ALWAYS = ("check_params", "code_fingerprints")


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """A git + DVC project with the repository's pipeline on a tiny configuration, reproduced once."""
    root = tmp_path_factory.mktemp("team")

    def tiny(params):
        tiny_params(params, DATASETS, lambda_methods=["ss"], methods=["cca"])
        params["methods"]["ss"].update(d_model=16, layers=1, heads=2, d_ff=32)
        params["methods"]["cca"].update(n_components=4)

    remote = root / "remote"
    origin = create_project(root / "alice", tiny, remote=remote)
    first = dvc(["repro"], origin).stdout
    commit(origin, "tiny pipeline")
    return {"root": root, "origin": origin, "remote": remote, "first": first}


def per_dataset(*stages: str) -> set[str]:
    """`extract@{ds}` -> {extract@shapes, extract@shapes_2}; `train_cca@{ds}` -> both datasets'."""
    return {stage.format(ds=ds) for stage in stages for ds in DATASETS}


def test_first_repro_runs_every_stage(project):
    assert ran(project["first"]) == per_dataset(
        "download@{ds}", "prepare@{ds}", "train_detector@{ds}", "extract@{ds}", "tokenize@{ds}",
        "dataset_settings@{ds}", "train_ss@{ds}", "train_cca@{ds}", "evaluate_ss@{ds}", "evaluate_cca@{ds}") | {
        "report", "check_params", "code_fingerprints"}
    assert (project["origin"] / "reports" / "metrics" / "shapes_2" / "cca.json").is_file()


def test_second_repro_runs_nothing(project):
    out = dvc(["repro"], project["origin"]).stdout
    assert ran(out) == set(), out


def test_bad_param_stops_before_dvc_removes_any_output(project):
    """A value only the stage itself would refuse stops in check_params, before DVC deletes the outputs of
    the stage that reads it (issue 18: `-S extract.num_boxes=0` used to cost the workspace its features)."""
    origin = project["origin"]
    stats = (origin / "data" / "shapes" / "extract_stats.json").read_text()
    try:
        proc = dvc(["exp", "run", "-S", "extract.num_boxes=0"], origin, check=False)
        assert proc.returncode != 0
        assert "parameter 'extract.num_boxes' must be >= 1, got 0" in proc.stdout + proc.stderr
        assert ran(proc.stdout) == {"check_params"}, proc.stdout
        assert (origin / "data" / "shapes" / "features.zarr" / "zarr.json").is_file()
        assert (origin / "data" / "shapes" / "extract_stats.json").read_text() == stats
    finally:
        restore(origin)


def restore(origin: Path) -> None:
    """Undo a test's params change and its outputs."""
    run(["git", "checkout", "--", "params.yaml", "dvc.lock"], origin)
    dvc(["checkout", "-q", "-f"], origin, check=False)


def settle(origin: Path) -> None:
    """Bring the workspace back to a reproduced state after an earlier test's change."""
    dvc(["repro"], origin)
    assert ran(dvc(["repro"], origin).stdout) == set()


def test_lambda_experiment_reruns_only_the_methods_that_read_lambda(project):
    origin = project["origin"]
    try:
        out = dvc(["exp", "run", "-S", "lambda=0.05"], origin).stdout
        # check_params and code_fingerprints rerun on any param change (seconds each); the fingerprint
        # files of the methods that do not read lambda come out unchanged, so those stay cached
        assert ran(out) == per_dataset("train_ss@{ds}", "evaluate_ss@{ds}") | {"report", *ALWAYS}, out
        shown = dvc(["exp", "show", "--json"], origin).stdout
        assert "0.05" in shown and "ndcg_ave" in shown
    finally:
        restore(origin)


def test_one_method_param_leaves_the_others_cached(project):
    origin = project["origin"]
    settle(origin)
    edit_params(origin, lambda p: p["methods"]["cca"].update(n_components=3))
    try:
        out = dvc(["repro"], origin).stdout
        assert ran(out) == per_dataset("train_cca@{ds}", "evaluate_cca@{ds}") | {"report", *ALWAYS}, out
    finally:
        restore(origin)


def test_extract_param_reruns_extraction_and_downstream(project):
    origin = project["origin"]
    settle(origin)
    edit_params(origin, lambda p: p["extract"].update(score_threshold=0.4))
    try:
        stages = ran(dvc(["repro"], origin).stdout)
        assert per_dataset("extract@{ds}", "train_ss@{ds}", "train_cca@{ds}") | {"report"} <= stages
        assert not stages & per_dataset("download@{ds}", "prepare@{ds}", "train_detector@{ds}", "tokenize@{ds}")
    finally:
        restore(origin)


def test_one_datasets_detector_reruns_that_dataset_only(project):
    origin = project["origin"]
    settle(origin)
    edit_params(origin, lambda p: p["extract"]["detectors"].update(shapes_2="shapes_frcnn"))  # was auto
    try:
        stages = ran(dvc(["repro"], origin).stdout)
        assert {"train_detector@shapes_2", "extract@shapes_2"} <= stages, stages
        # The same detector, so the same features: DVC sees that and keeps shapes_2's training cached.
        assert not {s for s in stages if "@shapes-" in s or s.endswith("@shapes")}, stages
    finally:
        restore(origin)


def test_a_thread_count_param_reruns_its_stage(project):
    """Thread counts can change the last bits of the numbers, so each is a param its stage tracks."""
    origin = project["origin"]
    settle(origin)

    def more_threads(p):
        for section in ("detector", "extract", "train"):
            p[section]["threads"] = 2

    edit_params(origin, more_threads)
    try:
        # the train/evaluate stages see params through their fingerprint files: write those first
        dvc(["repro", "--single-item", "code_fingerprints"], origin)
        changed = set(json.loads(dvc(["status", "--json"], origin).stdout))
        assert changed == per_dataset("train_detector@{ds}", "extract@{ds}", "train_ss@{ds}", "train_cca@{ds}",
                                      "evaluate_ss@{ds}", "evaluate_cca@{ds}") | {"check_params"}, changed
    finally:
        restore(origin)


def wait_for_queue(project: Path, timeout: float = 1200.0) -> str:
    """Poll `dvc queue status` until no experiment is queued or running; returns the last status table."""
    deadline = time.monotonic() + timeout
    while True:
        status = dvc(["queue", "status"], project).stdout
        if not any(word in status for word in ("Queued", "Running")):
            return status
        if time.monotonic() > deadline:
            raise TimeoutError(f"experiment queue still busy after {timeout} s:\n{status}")
        time.sleep(3)


def test_queued_lambda_sweep_runs_on_two_workers_and_feeds_the_report(project):
    origin = project["origin"]
    settle(origin)
    for value in ("0.01", "1"):
        dvc(["exp", "run", "--queue", "-S", f"lambda={value}"], origin)
    dvc(["queue", "start", "-j", "2"], origin)
    try:
        status = wait_for_queue(origin)
    finally:
        dvc(["queue", "stop"], origin, check=False)
    assert status.count("Success") == 2, status
    table = dvc(["exp", "show", "--no-pager", "--md"], origin).stdout
    assert "ndcg_ave" in table and "0.01" in table, table
    (origin / "reports" / "experiments.json").write_text(dvc(["exp", "show", "--json"], origin).stdout)
    assert ran(dvc(["repro"], origin).stdout) == {"report"}  # the sweep is a dependency of the report
    points = json.loads((origin / "reports" / "lambda_sensitivity.json").read_text())
    assert {0.01, 0.1, 1.0} <= {p["lambda"] for p in points if p["method"] == "ss" and p["dataset"] == "shapes_2"}
    assert "lambda_sensitivity.png" in (origin / "reports" / "results.md").read_text()


def test_teammate_pulls_features_and_skips_extraction(project):
    origin, root = project["origin"], project["root"]
    # Alice shares what is expensive to recompute: the features (and what they were computed from).
    dvc(["push", "--with-deps", *SHARED], origin)
    bob = root / "bob"
    run(["git", "clone", "-q", str(origin), str(bob)], root)
    dvc(["pull", "--with-deps", *SHARED], bob)
    assert (bob / "data" / "shapes" / "features.zarr").is_dir()
    assert not (bob / "models" / "shapes" / "ss").exists()
    out = dvc(["repro", "evaluate_ss@shapes"], bob).stdout  # one method and its upstream stages
    # (the code fingerprints were not pulled: a second of hashing rewrites them, the same bytes)
    assert ran(out) == {"code_fingerprints", "train_ss@shapes", "evaluate_ss@shapes"}, out
    assert "Stage 'extract@shapes' didn't change, skipping" in out


def add_remote(project: Path, name: str, remote) -> None:
    """What the team commits (`dvc remote add` + options) and what each user keeps local (secrets)."""
    dvc(["remote", "add", "-f", name, remote.url], project)
    for key, value in remote.options.items():
        dvc(["remote", "modify", name, key, value], project)
    for key, value in remote.secrets.items():
        dvc(["remote", "modify", "--local", name, key, value], project)


@pytest.mark.parametrize("kind", ["s3", "ssh"])
def test_teammate_pulls_features_through_a_server(project, kind, tmp_path):
    """The same hand-over through a real S3-compatible server and a real SSH server on 127.0.0.1."""
    origin, root = project["origin"], project["root"]
    carol = root / f"carol-{kind}"
    with (s3_server() if kind == "s3" else sftp_server(tmp_path / "sftp")) as remote:
        add_remote(origin, kind, remote)
        dvc(["push", "-r", kind, "--with-deps", *SHARED], origin)
        run(["git", "clone", "-q", str(origin), str(carol)], root)
        add_remote(carol, kind, remote)
        dvc(["pull", "-r", kind, "--with-deps", *SHARED], carol)
    assert (carol / "data" / "shapes" / "features.zarr" / "zarr.json").is_file()
    assert not (carol / "models" / "shapes" / "ss").exists()
    status = dvc(["status", "--with-deps", *SHARED], carol).stdout
    assert "Data and pipelines are up to date" in status, status
