"""The CUDA code paths, one test each (`pytest -m gpu`, run by `make gpu-check` on a GPU machine):
extraction (pinned-memory loader, NHWC, bf16 autocast), each method family's training step (bf16
autocast) and scoring, the metrics on the GPU, DDP over NCCL with the GPUs present, and resume after a
killed training process. Without CUDA they skip; with XMR_GPU_DRY_RUN=1 they run on the CPU instead (the
dry run of `bench/gpu_check.py --dry-run` that tests/test_gpu_check.py runs), so they cannot rot.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from retrieval_fixtures import make_dataset, small_params

pytestmark = pytest.mark.gpu
REPO = Path(__file__).resolve().parents[1]
CUDA = torch.cuda.is_available()


@pytest.fixture(scope="module")
def device() -> torch.device:
    if CUDA:
        return torch.device("cuda", 0)
    if os.environ.get("XMR_GPU_DRY_RUN") == "1":
        return torch.device("cpu")
    pytest.skip("no CUDA device: GPU-path test, run by `make gpu-check` on a GPU machine "
                "(XMR_GPU_DRY_RUN=1 runs it on the CPU)")


def quiet(_msg):
    pass


# --- extraction ---------------------------------------------------------------------------------------

def test_extraction_on_the_device_matches_the_cpu(device, tmp_path):
    """Decode workers with pinned memory, channels-last detector, fp32: the same RoIs as on the CPU;
    bf16 autocast: finite features of the same layout."""
    from detection_helpers import params, shapes_table, tiny_detector
    from pipeline.data.table import read_table
    from pipeline.detection.detectors import load_detector
    from pipeline.detection.extract import extract_features
    from pipeline.detection.settings import extract_settings
    from pipeline.detection.store import FeatureStore

    table = read_table(shapes_table(tmp_path, 6))
    tiny_detector(tmp_path / "models")

    def extract(out: str, **ext) -> dict:
        settings = extract_settings(params(**ext), "tiny")
        detector = load_detector(settings, "tiny", tmp_path / "models")
        stats = extract_features(table, tmp_path / out, detector, settings, progress=False)
        asked = torch.device(ext["device"]).type  # the CPU reference runs on the CPU on any machine
        assert stats["complete"] and stats["run"]["device"].startswith(asked), stats
        store = FeatureStore(tmp_path / out)
        return store.read(np.arange(len(store)))

    torch.backends.cudnn.allow_tf32 = False  # fp32 convolutions, so the comparison with the CPU is tight
    try:
        ref = extract("cpu.zarr", device="cpu")
        on_device = extract("dev.zarr", device=str(device), workers=2 if CUDA else 0, autocast=False)
    finally:
        torch.backends.cudnn.allow_tf32 = True
    same_boxes = np.isclose(on_device["boxes"], ref["boxes"], atol=0.05).all(axis=-1)
    assert same_boxes.mean() > 0.9, f"only {same_boxes.mean():.0%} of the RoIs agree with the CPU run"
    np.testing.assert_allclose(on_device["features"][same_boxes], ref["features"][same_boxes], rtol=0.02, atol=0.02)

    bf16 = extract("bf16.zarr", device=str(device), autocast=True)
    assert bf16["features"].shape == ref["features"].shape and np.isfinite(bf16["features"]).all()


# --- each method family: a training step (bf16 autocast on CUDA) and scoring -------------------------

FAMILIES = {  # method -> small settings (the tests of each family use the same sizes)
    "ss": None,  # small_params' Semantic Sharing sizes
    "scan_consistency": {"d_model": 16},
    "dual_path": {"embed_dim": 32, "dropout": 0.1, "text_length": 12, "text_blocks": [1, 1, 1],
                  "text_widths": [16, 32, 32], "stage1_epochs": 1},
    "dscmr": {"hidden": 32, "common_dim": 16},
    "dcca": {"hidden": [64], "out_dim": 6, "activation": "relu"},
    "scml": {"hidden": 32},
    "vilbert": {"d_model": 32, "heads": 4, "d_ff": 64, "layers": 1, "co_layers": 1, "dropout": 0.0},
    "cca": {"n_components": 4},  # closed form: fitted once, scored on the device
}


DATA = {"n_images": 60, "n_val": 12, "n_test": 12}


@pytest.fixture(scope="module")
def data():
    from pipeline.training.data import RetrievalData

    return RetrievalData(*make_dataset(**DATA), cache_splits=("train", "val"))


def family_params(name: str, device: torch.device, epochs: int = 1) -> dict:
    from pipeline.params import validate

    train = {"batch_size": 16, "lr": 2e-3, "epochs": epochs, "device": str(device), "eval_batch_size": 16,
             "threads": 1, "amp": True}
    if FAMILIES[name] is None:
        return small_params(name, epochs=epochs, **{k: v for k, v in train.items() if k != "epochs"})
    return validate({"train": train, "methods": {name: FAMILIES[name]}})


@pytest.mark.parametrize("name", list(FAMILIES))
def test_each_method_family_trains_and_scores_on_the_device(name, device, data, tmp_path):
    from pipeline.training.checkpoint import load_model
    from pipeline.training.loop import train_method
    from pipeline.training.scoring import score_split, split_metrics

    params = family_params(name, device)
    result = train_method(name, params, data, tmp_path / "m", tmp_path / "h.json", dataset="synthetic",
                          progress=False, log=quiet)
    history = json.loads((tmp_path / "h.json").read_text())
    assert np.isfinite(history[-1]["loss"]), history
    method, _ = load_model(tmp_path / "m", name, data.info, device=device)
    assert {t.device.type for t in method.state_dict().values()} == {device.type}
    metrics = {}
    for where, amp in ((device, False), (device, True), (torch.device("cpu"), False)):
        method.to(where)
        scores = score_split(method, data, "val", metrics_params=params["metrics"], dataset="synthetic",
                             batch_size=16, device=where, amp=amp)
        metrics[where.type, amp] = split_metrics(scores, data, metrics_params=params["metrics"],
                                                 dataset="synthetic", device=where)
    assert np.isfinite(result.best_value)
    # fp32 on the device ranks like the CPU (at most one near-tie flip among 12 images / 24 captions)
    assert metrics[device.type, False]["rsum"] == pytest.approx(metrics["cpu", False]["rsum"], abs=8.4)
    # bf16 autocast (what training validates with on CUDA): finite, in range
    bf16 = metrics[device.type, True]
    assert 0 <= bf16["rsum"] <= 600
    if result.select_key != "train_loss":  # ss's official recipe selects on the training loss, not a split metric
        assert np.isfinite(bf16[result.select_key])


# --- metrics ------------------------------------------------------------------------------------------

def test_metrics_on_the_device_equal_the_cpu(device):
    from pipeline.metrics import evaluate_similarity

    rng = np.random.default_rng(0)
    images, captions = rng.standard_normal((60, 12), dtype=np.float32), rng.standard_normal((300, 12), dtype=np.float32)
    image_labels = (rng.random((60, 7)) < 0.3).astype(np.float32)
    caption_image = np.repeat(np.arange(60), 5)
    kw = dict(ndcg_k=50, map_k=20, chunk_size=16)
    on_cpu = evaluate_similarity((images, captions), image_labels, image_labels[caption_image], caption_image,
                                 device="cpu", **kw)
    on_device = evaluate_similarity((images, captions), image_labels, image_labels[caption_image], caption_image,
                                    device=device, **kw)
    assert on_cpu.keys() == on_device.keys()
    for key, value in on_cpu.items():
        if isinstance(value, float):
            assert on_device[key] == pytest.approx(value, abs=1e-4), key


# --- optimisers ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["adam", "sgd"])
def test_optimisers_match_torch_optim_on_the_device(kind, device):
    """pipeline.training.optimizers against torch.optim's default on the device (foreach on CUDA): the same
    bits after every step, for two parameter groups with weight decay."""
    from pipeline.training.optimizers import SGD, Adam

    def run(ours: bool) -> list[torch.Tensor]:
        torch.manual_seed(0)
        m = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.Tanh(), torch.nn.Linear(32, 4)).to(device)
        groups = [{"params": list(m[0].parameters()), "lr_mult": 1.0, "lr": 1e-2},
                  {"params": list(m[2].parameters()), "lr_mult": 0.1, "lr": 1e-3}]
        if kind == "adam":
            opt = (Adam if ours else torch.optim.Adam)(groups, lr=1e-2, betas=(0.5, 0.999), weight_decay=1e-4)
        else:
            opt = (SGD if ours else torch.optim.SGD)(groups, lr=1e-2, momentum=0.9, nesterov=True, weight_decay=1e-4)
        g = torch.Generator().manual_seed(1)
        for _ in range(5):
            opt.zero_grad(set_to_none=True)
            m(torch.randn(8, 16, generator=g).to(device)).pow(2).mean().backward()
            opt.step()
        return [p.detach().cpu() for p in m.parameters()]

    assert all(torch.equal(a, b) for a, b in zip(run(True), run(False)))


# --- DDP over NCCL ------------------------------------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ddp_rank(rank: int, world: int, port: int, out_dir: str, device_type: str) -> None:
    """One rank of a data-parallel `ss` run on `device_type`; records the backend it ran on."""
    import torch.distributed as dist

    from pipeline.training.data import RetrievalData
    from pipeline.training.loop import train_method

    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    torch.set_num_threads(1)
    data = RetrievalData(*make_dataset(), cache_splits=("train", "val"))
    params = small_params(epochs=2, device=device_type, amp=True)
    try:
        result = train_method("ss", params, data, f"{out_dir}/model", f"{out_dir}/history.json", dataset="synthetic",
                              progress=False, log=quiet)
        torch.save({"backend": dist.get_backend(), "best_epoch": result.best_epoch, "epochs": result.epochs_done},
                   f"{out_dir}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_ddp_over_the_devices_present(device, data, tmp_path):
    """With 2+ GPUs: the loop's DDP over NCCL, one rank per GPU. NCCL refuses two ranks on one GPU, so a
    one-GPU machine (and the CPU dry run, with gloo) checks the pieces the loop uses on a one-rank
    group instead: the DDP-wrapped method's step all-reduces the same gradients as the plain method,
    and rank 0's decisions are broadcast. Two CPU ranks through the loop: tests/test_training_ddp.py."""
    import torch.distributed as dist
    import torch.multiprocessing as mp
    from torch.nn.parallel import DistributedDataParallel

    from pipeline.training.loop import _broadcast
    from pipeline.training.registry import build_method

    world = torch.cuda.device_count() if CUDA else 1
    if world > 1:
        mp.spawn(ddp_rank, args=(world, _free_port(), str(tmp_path), device.type), nprocs=world, join=True)
        ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(world)]
        assert {r["backend"] for r in ranks} == {"nccl"}
        assert {r["epochs"] for r in ranks} == {2} and len({r["best_epoch"] for r in ranks}) == 1
        assert (tmp_path / "model" / "model.pt").is_file()
        return
    backend = "nccl" if CUDA else "gloo"
    dist.init_process_group(backend, init_method=f"tcp://127.0.0.1:{_free_port()}", rank=0, world_size=1)
    try:
        assert dist.get_backend() == backend
        params = small_params(device=str(device))
        torch.manual_seed(0)
        method = build_method("ss", params, data.info, np.asarray(data.text.embeddings)).to(device)
        batch = data.pair_batch(data.split_items("train").captions[:16]).to(device)
        ddp = DistributedDataParallel(method, device_ids=[device.index] if CUDA else None,
                                      find_unused_parameters=True)
        grads = []
        for step in (lambda: ddp(batch)[0], lambda: method.training_loss(batch)[0]):
            method.zero_grad(set_to_none=True)
            torch.manual_seed(1)  # the same masks in both passes
            step().backward()
            grads.append({n: p.grad.clone() for n, p in method.named_parameters() if p.grad is not None})
        assert grads[0].keys() == grads[1].keys() and grads[0]
        for n in grads[0]:
            torch.testing.assert_close(grads[0][n], grads[1][n], rtol=1e-4, atol=1e-6)
        box = [{"best_epoch": 3}]
        dist.broadcast_object_list(box, src=0)
        assert box == [{"best_epoch": 3}] and _broadcast(7, 1) == 7
    finally:
        dist.destroy_process_group()


# --- resume after a kill ------------------------------------------------------------------------------

KILLED_RUN = textwrap.dedent("""
    import os, signal, sys
    sys.path.insert(0, {tests!r})
    from retrieval_fixtures import make_dataset, small_params
    from pipeline.training.data import RetrievalData
    from pipeline.training.loop import train_method

    def kill(epoch, step):
        if epoch == 1 and step == 1:  # 0-based: mid second epoch, after the first one's state was saved
            os.kill(os.getpid(), signal.SIGKILL)

    data = RetrievalData(*make_dataset(**{data!r}), cache_splits=("train", "val"))
    train_method("ss_con", small_params(epochs=3, device={device!r}), data, {out!r}, {out!r} + ".json",
                 dataset="synthetic", progress=False, step_hook=kill, log=lambda m: None)
""")


def test_resume_after_a_kill_on_the_device(device, data, tmp_path):
    from pipeline.training.checkpoint import load_state
    from pipeline.training.loop import train_method

    params = small_params(epochs=3, device=str(device))
    full = train_method("ss_con", params, data, tmp_path / "a", tmp_path / "a.json", dataset="synthetic",
                        progress=False, log=quiet)
    script = KILLED_RUN.format(tests=str(REPO / "tests"), data=DATA, device=str(device), out=str(tmp_path / "b"))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    assert load_state(tmp_path / "b" / "last.pt")["epoch"] == 1
    resumed = train_method("ss_con", params, data, tmp_path / "b", tmp_path / "b.json", dataset="synthetic",
                           progress=False, log=quiet)
    assert resumed.resumed_at == 1 and resumed.epochs_done == 3
    a, b = load_state(tmp_path / "a" / "last.pt"), load_state(tmp_path / "b" / "last.pt")
    # the same data order and seeds; on a GPU, atomics in the backward pass may change the last bits
    for key in a["model"]:
        torch.testing.assert_close(b["model"][key], a["model"][key], rtol=0, atol=0 if not CUDA else 1e-3)
    assert json.loads((tmp_path / "b.json").read_text())[-1]["loss"] == pytest.approx(
        json.loads((tmp_path / "a.json").read_text())[-1]["loss"], rel=0 if not CUDA else 1e-2)
    assert full.epochs_done == 3
