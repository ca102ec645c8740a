"""Nothing lost, nothing half-done: corrupted annotation files, kills, full disks, concurrent runs,
damaged stores, params that DVC would act on before a stage checks them, and honest error reporting.

Each test is one case of issue 18's table (the numbers in the names); the disk-full tests mount a
small tmpfs (root only) and skip with the reason elsewhere.
"""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time

import pytest
import yaml
from typer.testing import CliRunner

from conftest import REPO
from pipeline.completion import RECORD_FILE, IncompleteOutput, require_complete
from pipeline.data.coco import AnnotationError
from pipeline.data.prepare import prepare_dataset
from pipeline.io import atomic_output, output_lock
from pipeline.training.data import RetrievalData
from pipeline.training.loop import train_method
from retrieval_fixtures import make_dataset, small_params
from robustness_helpers import dead_pid, fill, small_file_system
from stages.cli import app
from test_prepare import PREP, build_mini, edit
from tiny_project import BIN

pytestmark = pytest.mark.usefixtures("one_thread")


def xmr(*args):
    return CliRunner().invoke(app, [*args])


def one_error_line(res, code=2) -> str:
    assert res.exit_code == code, res.output
    assert "Traceback" not in res.output
    last = res.output.strip().splitlines()[-1]
    assert last.startswith("error: ")
    return last


# 1, 7: untrusted annotation files

def test_1_duplicate_image_ids_stop_naming_file_id_and_field(tmp_path):
    params = build_mini(tmp_path / "src")
    for name in ("captions_val.json", "instances_val.json"):  # the second picture reuses id 1
        edit(tmp_path / "src", name, lambda d: d["images"][1].update(id=1))
    with pytest.raises(AnnotationError, match=r"captions_val.json: image id 1 appears twice \(field 'id'\)"):
        prepare_dataset("m", params, PREP, tmp_path)
    assert not (tmp_path / "m" / "table.parquet").exists()

    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"datasets": ["m"], "data": {"m": params}}))
    res = xmr("prepare", "m", "--params", str(tmp_path / "params.yaml"), "--data-dir", str(tmp_path / "out"))
    assert "image id 1 appears twice" in one_error_line(res)


@pytest.mark.parametrize("breaker, needle", [
    # the same id with another picture in the other file
    (lambda d: d["images"][1].update(file_name="1.jpg"), "instances_val.json: image 2 has field 'file_name' '1.jpg'"),
    (lambda d: d["annotations"][1].update(id=1), "instances_val.json: instance id 1 appears twice (field 'id')"),
    (lambda d: d["categories"][1].update(id=7), "category id 7 appears twice (field 'id')"),
    (lambda d: d["annotations"][0].update(iscrowd=2), "instance 1 has field 'iscrowd' 2"),
    (lambda d: d["annotations"][0].update(bbox=[1, 1, float("nan"), 5]), "instance 1 has no valid 'bbox'"),
    (lambda d: d["images"][0].update(file_name="../../etc/passwd"), "image 1 has field 'file_name' '../../etc/passwd'"),
    (lambda d: d["images"][0].update(width=0), "image 1 has field 'width' 0"),
])
def test_1_every_record_field_is_checked(tmp_path, breaker, needle):
    params = build_mini(tmp_path / "src")
    edit(tmp_path / "src", "instances_val.json", breaker)
    with pytest.raises(AnnotationError) as err:
        prepare_dataset("m", params, PREP, tmp_path)
    assert needle in str(err.value)


def test_7_negative_box_size_is_an_error_and_zero_size_is_counted(tmp_path):
    params = build_mini(tmp_path / "src")
    edit(tmp_path / "src", "instances_val.json", lambda d: d["annotations"][0].update(bbox=[1, 1, -5, 5]))
    with pytest.raises(AnnotationError, match=r"instances_val.json: instance 1 has field 'bbox' \[1, 1, -5, 5\] "
                                              r"with a negative width"):
        prepare_dataset("m", params, PREP, tmp_path)
    edit(tmp_path / "src", "instances_val.json", lambda d: d["annotations"][0].update(bbox=[1, 1, 0, 5]))
    stats = prepare_dataset("m", params, PREP, tmp_path)
    assert stats["degenerate_boxes"] == 1  # left out of the boxes, counted, its label kept


# 2: completion records

@pytest.fixture
def project(tmp_path, monkeypatch):
    """`xmr train/evaluate/report` on the in-memory synthetic dataset (as tests/test_training_stages.py)."""
    params = {"datasets": ["synth"], "data": {"synth": {"kind": "shapes"}}, "lambda": 0.1,
              "train": {"batch_size": 16, "lr": 3e-3, "epochs": 2, "device": "cpu", "threads": 1},
              "methods": {"ss": small_params()["methods"]["ss"]}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    monkeypatch.setattr(RetrievalData, "open", staticmethod(lambda data_dir, dataset, **kw: RetrievalData(
        *make_dataset(), **kw)))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def killed_in_epoch_2(project, monkeypatch):
    """Train ss and stop it as a kill would, in the first step of epoch 2 (epoch 1's model is saved)."""
    from pipeline.params import load_params

    def kill(epoch, step):
        if epoch == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_method("ss", load_params(project / "params.yaml"), RetrievalData(*make_dataset()),
                     project / "models" / "synth" / "ss", project / "reports" / "training" / "synth" / "ss.json",
                     dataset="synth", progress=False, step_hook=kill, log=lambda m: None)
    model_dir = project / "models" / "synth" / "ss"
    assert (model_dir / "model.pt").is_file() and json.loads((model_dir / "config.json").read_text())["epoch"] == 1
    return model_dir


def test_2_evaluate_and_report_refuse_an_unfinished_model(project, monkeypatch):
    model_dir = killed_in_epoch_2(project, monkeypatch)
    with pytest.raises(IncompleteOutput, match=f"{model_dir}: unfinished"):
        require_complete(model_dir)
    line = one_error_line(xmr("evaluate", "synth", "ss", "--no-progress"))
    assert "models/synth/ss: unfinished" in line and "xmr train synth ss" in line
    assert not (project / "reports" / "metrics" / "synth" / "ss.json").exists()

    (project / "reports" / "metrics" / "synth").mkdir(parents=True)  # a metrics file of an earlier run
    (project / "reports" / "metrics" / "synth" / "ss.json").write_text("{}")
    assert "models/synth/ss: unfinished" in one_error_line(xmr("report"))

    res = xmr("train", "synth", "ss", "--no-progress")  # the resumed run finishes the directory
    assert res.exit_code == 0 and "resumed after 1" in res.output, res.output
    require_complete(model_dir)
    assert xmr("evaluate", "synth", "ss", "--no-progress").exit_code == 0
    # a finished directory whose model is replaced afterwards is refused too
    (model_dir / "model.pt").write_bytes(b"other")
    assert "'model.pt' is missing or differs" in one_error_line(xmr("evaluate", "synth", "ss", "--no-progress"))


def test_2_resume_refuses_a_model_the_saved_state_does_not_know(project, monkeypatch):
    """Killed between writing config.json (epoch 2) and last.pt (still epoch 1): not resumed."""
    from pipeline.params import load_params

    model_dir = killed_in_epoch_2(project, monkeypatch)
    config = json.loads((model_dir / "config.json").read_text())
    (model_dir / "config.json").write_text(json.dumps(dict(config, epoch=2)))
    messages = []
    result = train_method("ss", load_params(project / "params.yaml"), RetrievalData(*make_dataset()), model_dir,
                          project / "h.json", dataset="synth", progress=False, log=messages.append)
    assert result.resumed_at == 0
    assert any(m.startswith(f"not resuming {model_dir}") for m in messages)
    require_complete(model_dir)


# 3: stale temporary files

def test_3_stale_temporary_files_are_removed_by_the_next_run(project):
    model_dir = project / "models" / "synth" / "ss"
    model_dir.mkdir(parents=True)
    gone = dead_pid()
    for name in (f".model.pt.tmp-{gone}", f".last.pt.tmp-{gone}"):
        (model_dir / name).write_bytes(b"half a model")
    live = model_dir / f".model.pt.tmp-{os.getppid()}"  # a running writer's file is not touched
    live.write_bytes(b"being written")
    assert xmr("train", "synth", "ss", "--no-progress").exit_code == 0
    assert sorted(p.name for p in model_dir.iterdir()) == sorted([live.name, "config.json", "last.pt", "model.pt",
                                                                   RECORD_FILE])
    live.unlink()

    text_tmp = project / "data" / f".text.tmp-{gone}"  # what a killed `xmr tokenize` leaves
    (text_tmp).mkdir(parents=True)
    (text_tmp / "vocab.json").write_text("{}")
    with atomic_output(project / "data" / "text") as tmp:
        tmp.mkdir()
    assert sorted(p.name for p in (project / "data").iterdir()) == ["text"]


KILLED_TRAINING = """
import os, signal, sys
sys.path.insert(0, {tests!r})
import torch
from pipeline.params import load_params
from pipeline.training import checkpoint
from pipeline.training.data import RetrievalData
from pipeline.training.loop import train_method
from retrieval_fixtures import make_dataset

torch.set_num_threads(1)
where = {where!r}

def kill(*args):
    os.kill(os.getpid(), signal.SIGKILL)

def step_hook(epoch, step):
    if where == "epoch 2" and epoch == 1:
        kill()

if where == "writing model.pt":  # half the bytes, then kill -9
    def save_torch(path, obj):
        with checkpoint.atomic_output(path) as tmp:
            tmp.write_bytes(b"half a model")
            if path.name == "model.pt":
                kill()
    checkpoint.save_torch = save_torch
train_method("ss", load_params("params.yaml"), RetrievalData(*make_dataset()), "models/synth/ss",
             "reports/training/synth/ss.json", dataset="synth", progress=False, step_hook=step_hook)
"""


@pytest.mark.parametrize("where", ["epoch 2", "writing model.pt"])
def test_2_3_kill_9_leaves_an_unfinished_directory_that_a_rerun_cleans(project, where):
    proc = subprocess.run([sys.executable, "-c", KILLED_TRAINING.format(tests=str(REPO / "tests"), where=where)],
                          cwd=project, capture_output=True, text=True)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    model_dir = project / "models" / "synth" / "ss"
    left = {p.name for p in model_dir.iterdir()}
    assert RECORD_FILE not in left
    if where == "epoch 2":
        assert {"model.pt", "config.json", "last.pt"} <= left  # epoch 1's, looking final
    else:
        assert any(name.startswith(".model.pt.tmp-") for name in left)
    assert "unfinished" in one_error_line(xmr("evaluate", "synth", "ss", "--no-progress"))
    assert xmr("train", "synth", "ss", "--no-progress").exit_code == 0
    assert sorted(p.name for p in model_dir.iterdir()) == sorted(["config.json", "last.pt", "model.pt", RECORD_FILE])
    assert xmr("evaluate", "synth", "ss", "--no-progress").exit_code == 0


def test_3_only_the_projects_own_stale_names_are_removed(tmp_path):
    from pipeline.io import remove_stale_temps

    gone = dead_pid()
    names = {f".a.pt.tmp-{gone}": True, f".dir.tmp-{gone}": True,  # removed
             f".a.pt.tmp-{os.getppid()}": False,  # its writer runs
             f"a.pt.tmp-{gone}": False, f".a.pt.tmp-x{gone}": False, ".features.zarr.partial": False,
             ".features.zarr.lock": False, "model.pt": False}
    for name in names:
        (tmp_path / name).mkdir() if name.startswith(".dir") else (tmp_path / name).write_text("x")
    removed = remove_stale_temps(tmp_path)
    assert sorted(p.name for p in removed) == sorted(n for n, gone_ in names.items() if gone_)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(n for n, gone_ in names.items() if not gone_)


# 4: full disks (a real small file system)

def test_4_disk_full_during_train_is_one_line_and_leaves_nothing_complete(project, tmp_path):
    assert xmr("train", "synth", "ss", "--no-progress").exit_code == 0
    done = project / "models" / "synth" / "ss"
    epoch_files = sum((done / n).stat().st_size for n in ("model.pt", "config.json"))
    with small_file_system(tmp_path / "fs") as fs:
        fill(fs, leave=epoch_files + 8192)  # room for epoch 1's model, not for its resumable state
        res = xmr("train", "synth", "ss", "--no-progress", "--models-dir", str(fs / "models"))
        line = one_error_line(res)
        assert str(fs / "models" / "synth" / "ss") in line and "No space left on device" in line
        assert "free space" in line
        model_dir = fs / "models" / "synth" / "ss"
        assert not [p for p in model_dir.iterdir() if ".tmp-" in p.name]
        assert not (model_dir / RECORD_FILE).exists()
        res = xmr("evaluate", "synth", "ss", "--no-progress", "--models-dir", str(fs / "models"))
        assert "unfinished" in one_error_line(res)


def _extract_project(root):
    from detection_helpers import params, shapes_table, tiny_detector

    shapes_table(root, 8)
    tiny_detector(root / "models")
    cfg = params()
    (root / "params.yaml").write_text(json.dumps({
        "datasets": ["tiny"], "data": {"tiny": {"kind": "shapes"}},
        "extract": {k: cfg["extract"][k] for k in ("workers", "chunk_size", "batch_size", "device", "proposals")}}))


def test_4_disk_full_during_extract_and_tokenize_is_one_line(tmp_path, monkeypatch):
    import torch

    monkeypatch.setattr(torch, "set_num_threads", lambda n: None)
    with small_file_system(tmp_path / "fs", size="16m") as fs:
        _extract_project(fs)
        monkeypatch.chdir(fs)
        fill(fs, leave=16384)  # room for the lock file, not for the store
        line = one_error_line(xmr("extract", "tiny", "--no-progress"))
        assert "error: data/tiny/.features.zarr.partial: No space left on device; free space" in line
        line = one_error_line(xmr("tokenize", "tiny"))
        # the failed extraction leaves a few KB or none: the lock file or the output is what cannot be written
        assert re.match(r"error: data/tiny/(text|\.text\.lock): No space left on device; free space", line), line
        assert not [p for p in (fs / "data" / "tiny").iterdir() if ".tmp-" in p.name]


def test_4_read_only_file_system_names_the_path_and_what_to_do(project, tmp_path):
    with small_file_system(tmp_path / "fs") as fs:
        (fs / "models").mkdir()
        proc = subprocess.run(["mount", "-o", "remount,ro", str(fs)], capture_output=True, text=True)
        if proc.returncode != 0:
            pytest.skip(f"cannot remount the tmpfs read-only here ({proc.stderr.strip()})")
        line = one_error_line(xmr("train", "synth", "ss", "--no-progress", "--models-dir", str(fs / "models")))
        assert str(fs / "models") in line and "Read-only file system; the file system is read-only" in line


# 5: damaged Zarr chunks

def test_5_damaged_chunk_names_array_and_chunk_without_asyncio_noise(tmp_path):
    script = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(REPO / 'tests')!r})
        import numpy as np
        from test_detection_store import chunk_data, writer
        from pipeline.detection.store import FeatureStore, StoreError
        path = {str(tmp_path / 'features.zarr')!r}
        w = writer(path)
        for c in range(3):
            w.write_chunk(c, chunk_data(w.chunk_rows_range(c)))
        w.finalize()
        shard = path + "/features/c/1/0/0"
        data = open(shard, "rb").read()
        open(shard, "wb").write(data[:-10])
        store = FeatureStore(path)
        assert store.read([0, 1])["features"].shape[0] == 2  # undamaged chunks still read
        try:
            store.read(np.arange(10))
        except StoreError as exc:
            print(exc)
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    assert "array 'features', chunk 1 (rows 4-7" in proc.stdout and "features/c/1/0/0" in proc.stdout
    assert "Task was destroyed" not in proc.stderr and proc.stderr.strip() == ""


# 6: concurrent runs

def hold_lock(path):
    proc = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys, time
        from pipeline.io import output_lock
        with output_lock({str(path)!r}):
            print("locked", flush=True)
            time.sleep(60)
    """)], stdout=subprocess.PIPE, text=True, cwd=REPO)
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_6_second_run_fails_at_once_naming_the_pid(tmp_path, monkeypatch):
    import torch

    monkeypatch.setattr(torch, "set_num_threads", lambda n: None)
    _extract_project(tmp_path)
    monkeypatch.chdir(tmp_path)
    holder = hold_lock(tmp_path / "data" / "tiny" / "features.zarr")
    try:
        started = time.monotonic()
        line = one_error_line(xmr("extract", "tiny", "--no-progress"))
        assert f"another run (PID {holder.pid}) is writing it" in line and "features.zarr" in line
        assert time.monotonic() - started < 30
        assert not (tmp_path / "data" / "tiny" / ".features.zarr.partial").exists()
    finally:
        holder.kill()
        holder.wait()
    # a killed holder leaves no lock behind: the next run proceeds
    assert xmr("extract", "tiny", "--no-progress").exit_code == 0


def test_6_train_and_tokenize_lock_their_outputs(project):
    holder = hold_lock(project / "models" / "synth" / "ss")
    try:
        assert f"PID {holder.pid}" in one_error_line(xmr("train", "synth", "ss", "--no-progress"))
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    with output_lock(project / "data" / "synth" / "text"):
        with pytest.raises(Exception, match=f"PID {os.getpid()}"):
            with output_lock(project / "data" / "synth" / "text"):
                pass


# 8: params checked before DVC removes anything: tests/test_team.py::test_bad_param_stops_before_dvc_removes_any_output
# (it reuses that file's reproduced tiny project)


# 11: internal errors and --debug

def test_11_internal_key_error_is_not_a_user_error(tmp_path, monkeypatch):
    import stages.prepare

    def bug(*args, **kwargs):
        return {}["x"]

    monkeypatch.setattr(stages.prepare, "load_params", bug)
    res = xmr("prepare", "shapes")
    assert res.exit_code != 2 and isinstance(res.exception, KeyError)


def test_11_debug_shows_the_traceback(tmp_path):
    (tmp_path / "params.yaml").write_text("prepare:\n  max_captionz: 5\n")
    plain = subprocess.run([BIN / "xmr", "prepare", "shapes"], cwd=tmp_path, capture_output=True, text=True)
    assert plain.returncode == 2 and "Traceback" not in plain.stderr
    for args, env in ((["--debug"], {}), ([], {"XMR_DEBUG": "1"})):
        proc = subprocess.run([BIN / "xmr", *args, "prepare", "shapes"], cwd=tmp_path, capture_output=True,
                              text=True, env=dict(os.environ, **env))
        assert proc.returncode == 1 and "Traceback" in proc.stderr and "max_captionz" in proc.stderr
