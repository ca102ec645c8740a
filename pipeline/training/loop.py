"""The one training loop of every method.

Per epoch: every training caption once, in a seeded random order, with its image (a `PairBatch`:
both modalities in each mini-batch); Adam; optional gradient clipping; bfloat16 autocast on CUDA.
After each epoch: the validation metric (pipeline.metrics) selects the model (`model.pt`), the
resumable state is saved (`last.pt`) and the history is written for `dvc plots`.

Determinism and resume: the model is initialised after `torch.manual_seed(seed)`, and each epoch
reseeds torch and draws its caption order from `(seed, epoch)`, so an epoch depends only on the state
at its start. A run killed at any point resumes from the last finished epoch and ends with the same
weights as an uninterrupted run (on CPU). A saved state from a run with other parameters or data is
ignored (training restarts), and so is one written by other model/loss/training code. `epochs` and
`patience` are not part of the run's identity: raising `epochs` continues a finished run instead of
redoing it.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from tqdm import tqdm

from pipeline.completion import clear_complete, mark_complete
from pipeline.io import write_json
from pipeline.training.checkpoint import (CONFIG_FILE, MODEL_FILE, STATE_FILE, load_state, resumable, save_model,
                                          save_torch)
from pipeline.training.data import RetrievalData
from pipeline.training.registry import build_method
from pipeline.training.schema import method_train_settings
from pipeline.training.scoring import autocast, score_split, selection_key, split_metrics

CHECK_EVERY = 20  # steps between loss read-outs (a read-out synchronises the GPU)
NOT_IDENTITY = ("epochs", "patience", "device", "eval_batch_size", "cache_features_gb", "threads")
CODE_DIRS = ("models", "losses", "training")  # under pipeline/


class TrainingDiverged(ValueError):
    """The loss became NaN/inf or grew far beyond its initial value."""


@dataclass
class TrainResult:
    epochs_done: int
    best_epoch: int
    best_value: float
    select_key: str
    stopped_early: bool
    resumed_at: int        # epochs already done when this call started (0 = fresh run)
    history: list[dict]


def distributed_env() -> tuple[int, int, int]:
    """`(rank, world_size, local_rank)` from torchrun's environment; `(0, 1, 0)` without it."""
    return (int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1")),
            int(os.environ.get("LOCAL_RANK", "0")))


def _setup_distributed(device: torch.device) -> tuple[int, int, torch.device]:
    """Join torchrun's process group (NCCL on GPUs, gloo on CPU); one GPU per local rank."""
    rank, world, local = distributed_env()
    if world == 1:
        return 0, 1, device
    import torch.distributed as dist

    if device.type == "cuda":
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return rank, world, device


def _broadcast(value, world: int):
    """Rank 0's value on every rank."""
    if world == 1:
        return value
    import torch.distributed as dist

    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"parameter 'train.device' is {name!r} but no CUDA device is available (use auto or cpu)")
    return torch.device(name)


def code_fingerprint() -> str:
    """Hash of the model, loss and training code: a saved state from other code is not resumed (DVC
    keeps `models/<ds>/<method>/` across runs, so a fixed bug must not be resumed into)."""
    root = Path(__file__).resolve().parents[1]
    h = hashlib.sha256()
    for sub in CODE_DIRS:
        for path in sorted((root / sub).rglob("*.py")):
            h.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes())
    return h.hexdigest()[:16]


def run_fingerprint(method_config: dict, train: dict, seed: int, metrics: dict, data_fingerprint: str) -> str:
    """Identity of a training run: a saved state is resumed only by a run with the same identity
    (method config, identity-relevant train settings, seed, metric options, data and code)."""
    ident = {"method": method_config, "train": {k: v for k, v in train.items() if k not in NOT_IDENTITY},
             "seed": seed, "metrics": metrics, "data": data_fingerprint, "code": code_fingerprint()}
    return hashlib.sha256(json.dumps(ident, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _epoch_seed(seed: int, epoch: int) -> int:
    return (seed * 1_000_003 + epoch + 1) % (2**63)


def train_method(name: str, params: dict, data: RetrievalData, model_dir: str | Path, history_path: str | Path, *,
                 dataset: str, progress: bool = True, step_hook: Callable[[int, int], None] | None = None,
                 log: Callable[[str], None] = print) -> TrainResult:
    """Train method `name` on `data` with validated `params`; resumes from `model_dir/last.pt`.

    `step_hook(epoch, step)` runs after every optimizer step (tests use it to simulate a crash).
    `train.threads` applies to this call only (the previous torch thread count is restored).
    Under `torchrun --nproc-per-node N` the loop runs data-parallel (DDP): each global batch of
    `train.batch_size` pairs is split over the ranks, gradients are averaged, and rank 0 alone
    validates and writes files.
    """
    threads = torch.get_num_threads()
    if params["train"]["threads"]:
        torch.set_num_threads(params["train"]["threads"])
    lead = distributed_env()[0] == 0
    try:
        if lead:  # unfinished until the completion record is written, last
            clear_complete(model_dir)
        result = _train(name, params, data, Path(model_dir), Path(history_path), dataset, progress, step_hook, log)
        if lead:
            mark_complete(model_dir, [MODEL_FILE, CONFIG_FILE])
        return result
    finally:
        torch.set_num_threads(threads)


def _train(name: str, params: dict, data: RetrievalData, model_dir: Path, history_path: Path, dataset: str,
           progress: bool, step_hook: Callable[[int, int], None] | None, log: Callable[[str], None]) -> TrainResult:
    settings, seed = method_train_settings(params, name), int(params["seed"])
    device = resolve_device(settings["device"])
    rank, world, device = _setup_distributed(device)
    amp = settings["amp"] and device.type == "cuda"

    torch.manual_seed(seed)
    method = build_method(name, params, data.info, word_vectors=np.asarray(data.text.embeddings)).to(device)
    key = selection_key(settings["select_metric"], data.info.num_labels > 0, getattr(method, "select_metric", None))
    train_items = data.split_items("train")
    if len(train_items.captions) == 0:
        raise ValueError(f"{data.names['table']}: the train split has no captions to train on")
    if getattr(method, "closed_form", False):  # CCA, LCFS, JFSSL: fitted once on arrays, no epochs
        from pipeline.models.baselines.closed_form import train_closed_form
        return TrainResult(**train_closed_form(
            name, method, params, data, model_dir, history_path, dataset=dataset, device=device, select_key=key,
            run_fingerprint=run_fingerprint(method.config(), settings, seed, params["metrics"], data.fingerprint()),
            progress=progress, log=log))
    trainable = [p for p in method.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(trainable, lr=settings["lr"], weight_decay=settings["weight_decay"])
    fingerprint = run_fingerprint(method.config(), settings, seed, params["metrics"], data.fingerprint())

    state = {"epoch": 0, "history": [], "best_value": -math.inf, "best_epoch": 0, "bad_epochs": 0,
             "reference_loss": None}
    saved = load_state(model_dir / STATE_FILE)
    if world > 1:
        import torch.distributed as dist

        dist.barrier()  # every rank has read the saved state before rank 0 may remove it
    same_run = saved is not None and saved.get("fingerprint") == fingerprint
    if same_run and resumable(model_dir, saved, log if rank == 0 else lambda message: None):
        method.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        state = {k: saved[k] for k in state}
        log(f"resuming {name} after epoch {state['epoch']} from {model_dir / STATE_FILE}")
    else:
        if saved is not None and not same_run and rank == 0:
            log(f"ignoring {model_dir / STATE_FILE}: it belongs to a run with other parameters or data")
        for stale in (MODEL_FILE, CONFIG_FILE, STATE_FILE) if rank == 0 else ():
            (model_dir / stale).unlink(missing_ok=True)
    resumed_at = state["epoch"]

    def stopped() -> bool:
        return settings["patience"] > 0 and state["bad_epochs"] >= settings["patience"]

    batch_size = settings["batch_size"]
    n_steps = math.ceil(len(train_items.captions) / batch_size)
    step_model = method
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel

        if batch_size < world:
            raise ValueError(f"parameter 'train.batch_size' ({batch_size}) is smaller than the {world} ranks")
        if 0 < len(train_items.captions) % batch_size < world:  # every rank needs a share of each batch
            n_steps -= 1
        step_model = DistributedDataParallel(method, device_ids=[device.index] if device.type == "cuda" else None,
                                             find_unused_parameters=True)
    while state["epoch"] < settings["epochs"] and not stopped():
        epoch = state["epoch"]
        started = time.perf_counter()
        torch.manual_seed(_epoch_seed(seed, epoch) + rank)
        order = np.random.default_rng([seed, epoch]).permutation(train_items.captions)
        method.start_epoch(epoch)
        method.train()
        sums: dict[str, torch.Tensor] = {}
        window, window_steps = torch.zeros((), device=device), 0
        bar = tqdm(range(n_steps), desc=f"{name} epoch {epoch + 1}/{settings['epochs']}", unit="batch",
                   disable=not progress or rank > 0, leave=False)
        for step in bar:
            batch = data.pair_batch(order[step * batch_size:(step + 1) * batch_size][rank::world]).to(device)
            with autocast(device, amp):
                loss, parts = step_model(batch) if world > 1 else method.training_loss(batch)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if settings["grad_clip"] > 0:
                torch.nn.utils.clip_grad_norm_(trainable, settings["grad_clip"])
            optimizer.step()
            for k, v in {"loss": loss.detach(), **parts}.items():
                sums[k] = sums.get(k, 0.0) + v.float()
            window, window_steps = window + loss.detach().float(), window_steps + 1
            if window_steps == CHECK_EVERY or step == n_steps - 1:
                mean = window.item() / window_steps
                _check_loss(mean, state, settings, name, epoch, step)
                bar.set_postfix(loss=f"{mean:.4f}")
                window, window_steps = torch.zeros((), device=device), 0
            if step_hook is not None:
                step_hook(epoch, step)
        record = {"epoch": epoch + 1, **{k: float(v) / n_steps for k, v in sums.items()}}
        _check_epoch(record["loss"], state, settings, name, epoch)
        if rank > 0:  # rank 0 validates and saves; the others follow its selection bookkeeping
            value = _broadcast(None, world)
            state["epoch"] = epoch + 1
            if value > state["best_value"]:
                state.update(best_value=value, best_epoch=epoch + 1, bad_epochs=0)
            else:
                state["bad_epochs"] += 1
            continue

        scores = score_split(method, data, "val", metrics_params=params["metrics"], dataset=dataset,
                             batch_size=settings["eval_batch_size"], device=device, amp=amp)
        metrics = split_metrics(scores, data, metrics_params=params["metrics"], dataset=dataset, protocol="all",
                                device=device)
        if key not in metrics:
            numeric = sorted(k for k, v in metrics.items() if isinstance(v, (int, float)))
            raise ValueError(f"parameter 'train.select_metric' is {key!r}, which the validation metrics do not "
                             f"contain (available: {', '.join(numeric)})")
        record.update({f"val_{k}": float(v) for k, v in metrics.items() if isinstance(v, (int, float))})
        record["seconds"] = round(time.perf_counter() - started, 3)
        value = _broadcast(float(metrics[key]), world)
        state["epoch"] = epoch + 1
        state["history"] = state["history"] + [record]
        if value > state["best_value"]:
            state.update(best_value=value, best_epoch=epoch + 1, bad_epochs=0)
            save_model(model_dir, method, {"epoch": epoch + 1, "select_metric": key, "value": value,
                                           "data_fingerprint": data.fingerprint(), "run_fingerprint": fingerprint})
        else:
            state["bad_epochs"] += 1
        save_torch(model_dir / STATE_FILE, {**state, "fingerprint": fingerprint,
                                            "model": {k: v.detach().cpu() for k, v in method.state_dict().items()},
                                            "optimizer": optimizer.state_dict()})
        write_json(history_path, state["history"])
        log(f"{name} epoch {epoch + 1}: loss {record['loss']:.4f}, val {key} {value:.2f} "
            f"(best {state['best_value']:.2f} at epoch {state['best_epoch']}), {record['seconds']:.1f}s")

    if rank == 0:
        write_json(history_path, state["history"])
    if state["epoch"] == 0:
        raise ValueError("parameter 'train.epochs' allows no epoch; nothing was trained")
    return TrainResult(state["epoch"], state["best_epoch"], state["best_value"], key, stopped(), resumed_at,
                       state["history"])


def _check_loss(mean: float, state: dict, settings: dict, name: str, epoch: int, step: int) -> None:
    if not math.isfinite(mean):
        raise TrainingDiverged(f"{name}: the loss became {mean} in epoch {epoch + 1} near step {step + 1}; "
                               f"lower 'train.lr' (now {settings['lr']}) or 'lambda'")
    if state["reference_loss"] is None:
        state["reference_loss"] = abs(mean)


def _check_epoch(mean: float, state: dict, settings: dict, name: str, epoch: int) -> None:
    ref = state["reference_loss"]
    if not math.isfinite(mean) or (ref and abs(mean) > settings["diverge_ratio"] * ref):
        raise TrainingDiverged(f"{name}: training diverged in epoch {epoch + 1} (mean loss {mean:.4g}, initial "
                               f"{ref:.4g}, limit train.diverge_ratio = {settings['diverge_ratio']}); lower "
                               f"'train.lr' (now {settings['lr']})")
