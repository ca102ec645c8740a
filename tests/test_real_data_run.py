"""Real data in the main job (issue 23): coco_mini's stages, the report on any dataset, the skip of an
absent local folder."""
from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import yaml

from pipeline.data.download import download_dataset
from pipeline.data.prepare import prepare_dataset
from pipeline.data.splits import SplitError, read_split, write_split
from pipeline.data.table import TableError, read_table, write_table
from pipeline.detection.settings import train_settings
from pipeline.metrics import top_retrievals, write_rankings
from pipeline.params import DATASET_SCHEMAS, ParamError, load_params, validate
from pipeline.reporting.report import build_report
from pipeline.run_plan import DVC, LANE, REPORT_STAGE, Task, plan, run_tasks
from pipeline.training.schema import method_train_settings

ROOT = Path(__file__).resolve().parents[1]
PREP = {"images_without_labels": "keep", "max_captions": 5}


def shipped_params() -> dict:
    return load_params(ROOT / "params.yaml")


def test_shipped_params_run_coco_mini_with_its_kinds_recipe_and_shapes_with_its_short_loops():
    params = shipped_params()
    assert params["datasets"] == ["shapes", "coco_mini"]
    for method in ("scan_i2t", "scan_t2i", "scan_consistency"):
        shapes = method_train_settings(params, method, "shapes")
        coco = method_train_settings(params, method, "coco_mini")
        assert shapes["patience"] == 2 and shapes["epochs"] == params["per_dataset"]["shapes"]["train"]["epochs"]
        # the official COCO loop, its 20 epochs the cap for early stopping (docs/fidelity.md "Training length")
        assert (coco["epochs"], coco["lr_decay_epoch"], coco["batch_size"], coco["lr"]) == (20, 10, 128, 5e-4)
        assert coco["patience"] == 2
    assert train_settings(params, "coco_mini").image_size == 320  # detector.datasets.coco_mini
    assert train_settings(params, "shapes").image_size == 0 and train_settings(params, "shapes").iterations == 600


def test_a_datasets_detector_override_is_checked_and_names_its_key():
    # (the per-dataset loop overrides, `per_dataset.<ds>`, are checked in tests/test_dataset_settings.py)
    with pytest.raises(ParamError, match=r"detector\.datasets\.d\.image_size"):
        validate({"detector": {"datasets": {"d": {"image_size": 8}}}})
    with pytest.raises(ParamError, match=r"detector\.datasets\.d\.iteration'"):
        validate({"detector": {"datasets": {"d": {"iteration": 8}}}})


def test_local_coco_download_records_the_folder_and_prepare_holds_out_val_from_train(coco_mini, tmp_path):
    dparams = shipped_params()["data"]["coco_mini"] | {"root": str(coco_mini)}
    counts = download_dataset("coco_mini", dparams, tmp_path)
    assert counts == {"train2017": 80, "val2017": 159}
    manifest = json.loads((tmp_path / "coco_mini/raw/manifest.json").read_text())
    assert set(manifest["annotations"]) == {"captions_train2017.json", "instances_train2017.json",
                                            "captions_val2017.json", "instances_val2017.json"}
    stats = prepare_dataset("coco_mini", dparams, PREP, tmp_path)
    assert stats["images"] == {"train": 60, "val": 20, "test": 79}
    table = read_table(tmp_path / "coco_mini/table.parquet")
    split = np.asarray(table.column("split").to_pylist())
    ids = np.asarray(table.column("image_id").to_pylist())
    train_ids = {a["id"] for a in json.loads((coco_mini / "annotations/instances_train2017.json").read_text())["images"]}
    assert set(ids[split == "test"]).isdisjoint(train_ids)  # test = val2017, never seen in training
    assert set(ids[split != "test"]) == train_ids
    again = prepare_dataset("coco_mini", dparams | {"split_seed": 0}, PREP, tmp_path / "again")
    assert again["images"] == stats["images"]
    other = prepare_dataset("coco_mini", dparams | {"split_seed": 1}, PREP, tmp_path / "other")
    other_val = set(np.asarray(read_table(tmp_path / "other/coco_mini/table.parquet").column("image_id"))[
        np.asarray(read_table(tmp_path / "other/coco_mini/table.parquet").column("split").to_pylist()) == "val"])
    assert other["images"]["val"] == 20 and other_val != set(ids[split == "val"])


def test_a_changed_local_folder_or_an_absent_one_is_an_error(coco_mini, tmp_path):
    root = tmp_path / "coco"
    shutil.copytree(coco_mini / "annotations", root / "annotations")
    for suffix in ("train2017", "val2017"):
        (root / suffix).symlink_to(coco_mini / suffix)
    dparams = shipped_params()["data"]["coco_mini"] | {"root": str(root)}
    download_dataset("coco_mini", dparams, tmp_path / "data")
    captions = root / "annotations/captions_val2017.json"
    doc = json.loads(captions.read_text())
    doc["annotations"][0]["caption"] = "an edited caption"
    captions.write_text(json.dumps(doc))
    with pytest.raises(ValueError, match="captions_val2017.json: differs from the file `xmr download coco_mini` recorded"):
        prepare_dataset("coco_mini", dparams, PREP, tmp_path / "data")
    with pytest.raises(FileNotFoundError, match=r"data\.coco_mini\.root is '.*nowhere'"):
        download_dataset("coco_mini", dparams | {"root": str(tmp_path / "nowhere")}, tmp_path / "data")
    with pytest.raises(ParamError, match=r"data\.c\.n_val"):
        validate({"datasets": ["c"], "data": {"c": {"kind": "coco", "root": "x", "n_val": 5}}})  # splits maps val already


def tiny_table(path: Path, splits: list[str]) -> None:
    n = len(splits)
    write_table({"image_id": list(range(n)), "file_path": [f"{i}.png" for i in range(n)], "width": [8] * n,
                 "height": [8] * n, "captions": [["a"]] * n, "labels": [[0]] * n, "boxes": [[]] * n,
                 "box_labels": [[]] * n, "split": splits}, ["x"], "t", path)


def test_unknown_split_values_name_the_value_and_the_file(tmp_path):
    tiny_table(tmp_path / "t.parquet", ["train", "unused", "test"])
    with pytest.raises(TableError, match=r"t\.parquet: column 'split' holds the value 'unused'"):
        read_table(tmp_path / "t.parquet")
    tiny_table(tmp_path / "ok.parquet", ["train", "val", "test"])
    assert read_table(tmp_path / "ok.parquet").num_rows == 3
    write_split(tmp_path / "s.json", "coco", "rule", {"train": [1], "unused": [2]}, {})
    with pytest.raises(SplitError, match=r"s\.json: 'splits' holds the split 'unused'"):
        read_split(tmp_path / "s.json", "coco")


STAGES = ["check_params", "download@shapes", "download@coco_mini", "train_ss@shapes", "train_ss@coco_mini",
          "train_scan_i2t@coco_mini", "evaluate_cca@coco_mini", "evaluate_cca@shapes", "report"]


def test_make_repro_runs_data_then_method_tasks_and_skips_an_absent_folder_in_one_line(tmp_path):
    params = shipped_params()
    (tmp_path / "shared/coco-mini").mkdir(parents=True)
    (tmp_path / "checkout").mkdir()
    tasks, notes = plan(params, STAGES, project=tmp_path / "checkout")
    got = {t.name: (t.cmd, t.after) for t in tasks}
    first = ("shared",)
    assert notes == [] and got == {
        "shared": (DVC + ["check_params"], ()),
        "shapes": (LANE + ["download@shapes"], first), "coco_mini": (LANE + ["download@coco_mini"], first),
        "shapes/ss": (LANE + ["train_ss@shapes"], first + ("shapes",)),
        "shapes/cca": (LANE + ["evaluate_cca@shapes"], first + ("shapes",)),
        "coco_mini/ss": (LANE + ["train_ss@coco_mini"], first + ("coco_mini",)),
        "coco_mini/scan_i2t": (LANE + ["train_scan_i2t@coco_mini"], first + ("coco_mini",)),
        "coco_mini/cca": (LANE + ["evaluate_cca@coco_mini"], first + ("coco_mini",)),
        "report": (DVC, tuple(n for n in got if n != "report"))}
    (tmp_path / "shared/coco-mini").rmdir()
    tasks, notes = plan(params, STAGES, project=tmp_path / "checkout")
    assert [t.name for t in tasks] == ["shared", "shapes", "shapes/ss", "shapes/cca", "report"]
    assert tasks[-1].cmd == DVC + ["--single-item", "report"]
    assert len(notes) == 1 and notes[0].startswith("make repro: coco_mini skipped (data.coco_mini.root")


def test_a_methods_estimated_cost_is_its_last_seconds_per_epoch_times_its_cap(tmp_path):
    from pipeline.training.schema import method_train_settings

    (tmp_path / "shared/coco-mini").mkdir(parents=True)
    project = tmp_path / "checkout"
    history = project / "reports/training/shapes/ss.json"
    history.parent.mkdir(parents=True)
    history.write_text(json.dumps([{"epoch": 1, "seconds": 20.5}, {"epoch": 2, "seconds": 21.5}]))
    params = shipped_params()
    costs = {t.name: t.cost for t in plan(params, STAGES, project=project)[0]}
    assert costs["shapes/ss"] == 21.0 * method_train_settings(params, "ss", "shapes")["epochs"]
    assert costs["coco_mini/ss"] == 0.0  # no history: unknown
    history.write_text("{not json")
    assert {t.name: t.cost for t in plan(params, STAGES, project=project)[0]}["shapes/ss"] == 0.0


def test_the_scheduler_keeps_order_lanes_and_priority_and_stops_after_a_failure(tmp_path):
    """Fake tasks that log their start and end: none starts before what it comes after, never more than
    two at once, the costliest ready one first; after a failure nothing new starts."""
    import sys

    log = tmp_path / "log"

    def task(name, after=(), cost=0.0, code=0):
        script = (f"import time; open({str(log)!r}, 'a').write('start {name}\\n'); time.sleep(0.2); "
                  f"open({str(log)!r}, 'a').write('end {name}\\n'); raise SystemExit({code})")
        return Task(name, [sys.executable, "-c", script], tuple(after), cost)

    tasks = [task("data"), task("cheap", ["data"], 1), task("dear", ["data"], 9), task("mid", ["data"], 5),
             task("last", ["cheap", "dear", "mid"])]
    assert run_tasks(tasks, lanes=2) == 0
    events = log.read_text().split("\n")[:-1]
    order = [e.split()[1] for e in events if e.startswith("start")]
    # dear and mid start together in the two lanes (which process writes first is a race); cheap waits
    assert order[0] == "data" and set(order[1:3]) == {"dear", "mid"} and order[3:] == ["cheap", "last"]
    position = {e: i for i, e in enumerate(events)}
    assert position["start last"] > max(position[f"end {n}"] for n in ("cheap", "dear", "mid"))
    live = 0
    for event in events:
        live += 1 if event.startswith("start") else -1
        assert live <= 2
    log.unlink()
    tasks = [task("data", code=3), task("after_data", ["data"]), task("other", [], 0)]
    assert run_tasks(tasks, lanes=1) == 3
    assert "after_data" not in log.read_text() and "start other" not in log.read_text()


def test_each_task_is_told_how_many_run_at_once_and_the_default_lanes(tmp_path, monkeypatch):
    """The stages of every task see XMR_CONCURRENT_STAGES = lanes (their share of memory for a feature cache);
    without --lanes there are two lanes, one on a 1-CPU machine; a bad --lanes is one line and exit code 2."""
    import os
    import sys

    from pipeline import run_plan

    seen = tmp_path / "seen"
    script = f"import os; open({str(seen)!r}, 'a').write(os.environ['XMR_CONCURRENT_STAGES'] + '\\n')"
    tasks = [Task("a", [sys.executable, "-c", script]), Task(REPORT_STAGE, [sys.executable, "-c", script], ("a",))]
    assert run_tasks(tasks, lanes=3) == 0
    assert seen.read_text().split() == ["3", "3"]
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(16)), raising=False)
    assert run_plan.default_lanes() == run_plan.DEFAULT_LANES == 2
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0})
    assert run_plan.default_lanes() == 1
    monkeypatch.delattr(os, "sched_getaffinity")
    monkeypatch.setattr(os, "cpu_count", lambda: None)
    assert run_plan.default_lanes() == 1
    for bad in (["--lanes", "0"], ["--lanes", "two"], ["--lanes"]):
        assert run_plan.main(bad) == 2


def test_the_tasks_cover_every_stage_of_dvc_yaml_once_in_the_graphs_order(tmp_path):
    """The real stage list: every stage in exactly one task (the report in the last, plain `dvc repro`), and
    every stage's upstream either earlier in its own task or in a task it comes after."""
    names = subprocess.run(["dvc", "stage", "list", "--name-only"], cwd=ROOT, capture_output=True, text=True,
                           check=True).stdout.split()
    (tmp_path / "shared/coco-mini").mkdir(parents=True)
    (tmp_path / "checkout").mkdir()
    tasks, _ = plan(shipped_params(), names, project=tmp_path / "checkout")
    own = {t.name: t.cmd[len(LANE):] if t.cmd[:len(LANE)] == LANE else t.cmd[len(DVC):] for t in tasks}
    planned = [n for stages in own.values() for n in stages]
    assert sorted(planned) == sorted(n for n in names if n != "report") and tasks[-1].cmd == DVC
    assert sum(t.name.startswith("coco_mini/") for t in tasks) >= 20
    import networkx as nx
    from dvc.repo import Repo

    by_task = {t.name: t for t in tasks}

    def before(name: str) -> set[str]:
        """Every stage of the tasks `name` comes after, transitively."""
        out: set[str] = set()
        for up in by_task[name].after:
            out |= set(own[up]) | before(up)
        return out

    with Repo(str(ROOT)) as repo:
        graph = repo.index.graph  # edges point from a stage to the stages it depends on
        by_name = {stage.addressing: stage for stage in graph}
        for task in tasks[:-1]:
            ready = before(task.name)
            for i, name in enumerate(own[task.name]):
                upstream = {s.addressing for s in nx.descendants(graph, by_name[name])}
                missing = upstream - ready - set(own[task.name][:i])
                assert not missing, f"{task.name}: {name} runs before {sorted(missing)}"


def report_inputs(tmp_path: Path, datasets: tuple[str, ...] = ("shapes", "coco_mini")) -> Path:
    """Metrics, per-query-free rankings and tables with real image files for two datasets."""
    from PIL import Image

    reports = tmp_path / "reports"
    rng = np.random.default_rng(0)
    for ds in datasets:
        n = 6
        (tmp_path / f"data/{ds}/img").mkdir(parents=True)
        for i in range(n):
            Image.new("RGB", (16, 12), (40 * i, 80, 120)).save(tmp_path / f"data/{ds}/img/{i}.png")
        write_table({"image_id": list(range(n)), "file_path": [f"data/{ds}/img/{i}.png" for i in range(n)],
                     "width": [16] * n, "height": [12] * n, "captions": [[f"c{i}a", f"c{i}b"] for i in range(n)],
                     "labels": [[i % 2] for i in range(n)], "boxes": [[]] * n, "box_labels": [[]] * n,
                     "split": ["test"] * n}, ["a", "b"], ds, tmp_path / f"data/{ds}/table.parquet")
        for method in ("ss", "cca"):
            (reports / f"metrics/{ds}").mkdir(parents=True, exist_ok=True)
            (reports / f"metrics/{ds}/{method}.json").write_text(json.dumps(
                {"ndcg_i2t": 50.0, "ndcg_t2i": 52.0, "ndcg_ave": 51.0, "rsum": 100.0}))
            img, txt = rng.normal(size=(n, 4)), rng.normal(size=(2 * n, 4))
            top = top_retrievals((img, txt), n=4)
            write_rankings(reports / f"rankings/{ds}/{method}.npz", np.arange(n), np.repeat(np.arange(n), 2),
                           np.tile([0, 1], n), top["i2t_top"], top["t2i_top"])
    return reports


def exp_show_of_shapes_seeds() -> list:
    def run(rev, seed):
        return {"rev": rev, "name": None if rev == "workspace" else f"exp-{rev}", "error": None,
                "data": {"params": {"params.yaml": {"data": {"lambda": 0.1, "seed": seed}}},
                         "metrics": {f"reports/metrics/shapes/{m}.json": {"data": {"ndcg_ave": 51.0 + seed}}
                                     for m in ("ss", "cca")}}}
    return [run("workspace", 0), {**run("abc", 0), "experiments": [{"revs": [run("s1", 1), run("s2", 2)]}]}]


def test_report_on_two_datasets_with_defaults(tmp_path):
    """Seeds asked for but swept on shapes only, a missing image, coco_mini's protocol, a dataset not run."""
    reports = report_inputs(tmp_path)
    (tmp_path / "data/coco_mini/img/0.png").unlink()  # features and text without the images
    experiments = tmp_path / "experiments.json"
    experiments.write_text(json.dumps(exp_show_of_shapes_seeds()))
    current = {"datasets": ["shapes", "coco_mini", "flickr30k"],
               "data": {"shapes": {"kind": "shapes"}, "coco_mini": {"kind": "coco"}, "flickr30k": {"kind": "flickr30k"}}}
    summary = build_report(reports, tmp_path / "data", root=tmp_path, experiments=experiments,
                           report_params={"seeds": [0, 1, 2], "bootstrap_resamples": 20, "qualitative_queries": 6},
                           current_params=current)
    assert summary["seed_runs"] == {0: "workspace", 1: "exp-s1", 2: "exp-s2"}
    results = (reports / "results.md").read_text()
    assert "#### shapes" in results and "(n=3)" in results
    assert "No seed sweep was run on coco_mini" in results
    assert "No seed sweep was run on coco_mini: its comparisons rest on" in (reports / "claims.md").read_text()
    assert "`coco_mini` (kind coco): the COCO protocols coco5k and coco1k are not computed" in results
    assert "test split of `coco_mini` has 6 images" in results
    assert "`flickr30k` is in `datasets` but has no metrics files" in results
    page = (reports / "qualitative/coco_mini/ss.html").read_text()
    assert "image not on disk: data/coco_mini/img/0.png" in page and "thumbnails left out" in page
    assert "data:image/jpeg;base64," in page  # the other images are there
    assert "coco_mini: 1 image(s) of its pages are not on disk" in results
    assert {k.split("@")[1] for k in summary["claims"]} == {"shapes", "coco_mini"}
    # no experiment at all: the report runs and says that no sweep was run
    experiments.write_text("[]")
    summary = build_report(reports, tmp_path / "data", root=tmp_path, experiments=experiments,
                           report_params={"seeds": [0, 1, 2], "bootstrap_resamples": 20}, current_params=current)
    assert summary["seed_runs"] == {}
    assert "No seed sweep was run: `report.seeds` names seeds 0, 1, 2" in (reports / "results.md").read_text()


TINY_DVC = """
stages:
  make:
    foreach: ${datasets}
    do:
      cmd: python -c "import pathlib; p = pathlib.Path('out/${item}.txt'); p.parent.mkdir(exist_ok=True); p.write_text('${item}')"
      outs: ["out/${item}.txt"]
  report:
    cmd: python -c "import pathlib; pathlib.Path('report.txt').write_text(' '.join(sorted(p.stem for p in pathlib.Path('out').glob('*.txt'))))"
    deps: [out]
    outs: [report.txt]
"""


def test_run_plan_in_a_dvc_project_without_the_shared_folder(tmp_path):
    """`python -m pipeline.run_plan` (make repro) in a real DVC project: the absent dataset's stages are left
    out, every other stage and the report run, one line says so, and with the folder it is plain dvc repro."""
    import os
    import sys

    project = tmp_path / "checkout"
    project.mkdir()
    (project / "dvc.yaml").write_text(TINY_DVC)
    (project / "params.yaml").write_text(yaml.safe_dump({
        "datasets": ["shapes", "coco_mini"],
        "data": {"shapes": {"kind": "shapes"}, "coco_mini": {"kind": "coco", "root": "../shared/coco-mini"}}}))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}

    def run(*cmd):
        return subprocess.run(cmd, cwd=project, env=env, capture_output=True, text=True)

    for cmd in (["git", "init", "-q"], ["dvc", "init", "-q"]):
        assert run(*cmd).returncode == 0
    done = run(sys.executable, "-m", "pipeline.run_plan")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0].startswith("make repro: coco_mini skipped (data.coco_mini.root '../shared/coco-mini'")
    assert (project / "report.txt").read_text() == "shapes" and not (project / "out/coco_mini.txt").exists()
    (tmp_path / "shared/coco-mini").mkdir(parents=True)
    done = run(sys.executable, "-m", "pipeline.run_plan")
    assert done.returncode == 0 and "skipped" not in done.stdout, done.stderr
    assert "[coco_mini] Running stage 'make@coco_mini'" in done.stdout  # its own task, beside shapes'
    assert (project / "report.txt").read_text() == "coco_mini shapes"
    status = run("dvc", "status")
    assert status.returncode == 0 and "changed" not in status.stdout and "modified" not in status.stdout, status.stdout
