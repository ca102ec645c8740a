"""The one training loop of every method.

Per epoch: every training caption once, in a seeded random order, with its image (a `PairBatch`:
both modalities in each mini-batch); Adam; optional gradient clipping (of every parameter, or of the
text-only group: `train.grad_clip_scope`); bfloat16 autocast on CUDA. After each epoch: the validation
metric (pipeline.metrics; or the mean training loss, `train.select_metric: train_loss`) selects the
model (`model.pt`), the resumable state is saved (`last.pt`) and the history is written for `dvc plots`.
Early stopping (`train.patience`) judges the validation curve (the validation metric, also when the model
is selected on the training loss) by the report's rule (`pipeline.training.plateau`).

Determinism and resume: the model is initialised after `torch.manual_seed(seed)`, and each epoch
reseeds torch and draws its caption order from `(seed, epoch)`, so an epoch depends only on the state
at its start. A run killed at any point resumes from the last finished epoch and ends with the same
weights as an uninterrupted run (on CPU). A saved state from a run with other parameters or data is
ignored (training restarts), and so is one written by other model/loss/training code. `epochs` and
`patience` are not part of the run's identity: raising `epochs` continues a finished run instead of
redoing it.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from tqdm import tqdm

from pipeline.completion import clear_complete, mark_complete
from pipeline.io import write_json
from pipeline.machine import machine_record
from pipeline.training.checkpoint import (CONFIG_FILE, MODEL_FILE, STATE_FILE, load_state, resumable, save_model,
                                          save_torch)
from pipeline.training.data import RetrievalData
from pipeline.training.epoch_batches import epoch_batches
from pipeline.training.order import epoch_windows
from pipeline.training.plateau import step as plateau_step
from pipeline.training.plateau import stop_epoch, tolerance
from pipeline.training.registry import build_method
from pipeline.training.schedule import make_optimizer, set_epoch_lr
from pipeline.training.schema import method_train_settings
from pipeline.training.scoring import (TRAIN_LOSS, autocast, describe_selection, score_split, selection_key,
                                      split_metrics)

CHECK_EVERY = 20  # steps between loss read-outs (a read-out synchronises the GPU)
NOT_IDENTITY = ("epochs", "patience", "device", "eval_batch_size", "cache_features_gb", "threads")
CODE_DIRS = ("contract", "models", "losses", "training")  # under pipeline/


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


@dataclass
class _Run:
    """What every step of a run reads, fixed by `_setup`."""

    name: str
    params: dict
    settings: dict          # the `train` section with the method's overrides
    seed: int
    data: RetrievalData
    dataset: str
    model_dir: Path
    history_path: Path
    device: torch.device
    rank: int
    world: int
    amp: bool
    method: torch.nn.Module
    key: str                # the validation metric that selects the model
    curve_key: str          # history key of the validation curve early stopping judges (`val_<metric>`)
    flat_from: int          # epochs that are never counted as flat (a two-stage method's first stage)
    fingerprint: str        # identity of the run (what may be resumed)
    train_captions: np.ndarray
    progress: bool
    log: Callable[[str], None]
    step_hook: Callable[[int, int], None] | None
    optimizer: torch.optim.Optimizer | None = None  # None for a closed-form method
    machine: dict = field(default_factory=dict)  # the machine class training runs on (pipeline/machine.py)

    @property
    def closed_form(self) -> bool:
        """CCA, LCFS, JFSSL: fitted once on arrays (one "epoch"), no optimizer and no resumable state."""
        return self.optimizer is None

    @property
    def epochs(self) -> int:
        return 1 if self.closed_form else self.settings["epochs"]

    @property
    def tolerance(self) -> float:
        return tolerance(self.curve_key)


def _train(name: str, params: dict, data: RetrievalData, model_dir: Path, history_path: Path, dataset: str,
           progress: bool, step_hook: Callable[[int, int], None] | None, log: Callable[[str], None]) -> TrainResult:
    """Setup, resume, then per epoch: train (or fit in closed form), validate, select, checkpoint."""
    run = _setup(name, params, data, model_dir, history_path, dataset, progress, step_hook, log)
    state = _resume(run)
    resumed_at = state["epoch"]
    step_model, n_steps = (None, 0) if run.closed_form else _parallel(run)
    while state["epoch"] < run.epochs and not _stopped(run, state):
        epoch = state["epoch"]
        started = time.perf_counter()
        record = _fit_closed_form(run) if run.closed_form else _train_epoch(run, state, epoch, step_model, n_steps)
        if run.rank > 0:  # rank 0 validates and saves; the others follow its selection bookkeeping
            value, curve_value = _broadcast(None, run.world)
            _select(state, value, epoch)
            _plateau(run, state, curve_value, epoch)
            continue
        trained = time.perf_counter()
        value = _validate(run, record)
        record["seconds"] = round(time.perf_counter() - started, 3)
        record["validate_seconds"] = round(time.perf_counter() - trained, 3)
        curve_value = record.get(run.curve_key)
        value, curve_value = _broadcast((value, curve_value), run.world)
        state["history"] = _aligned(state["history"] + [record])
        improved = _select(state, value, epoch)
        _plateau(run, state, curve_value, epoch)
        _checkpoint(run, state, improved, value, epoch)
        _log_epoch(run, state, record, value, epoch)
        if _stopped(run, state):
            run.log(f"{run.name}: stopped after epoch {epoch + 1}: {state['flat_epochs']} epochs in a row did not "
                    f"improve {run.curve_key} by more than {run.tolerance:g} (train.patience "
                    f"{run.settings['patience']})")

    if run.rank == 0:
        write_json(history_path, state["history"])
    if state["epoch"] == 0:
        raise ValueError("parameter 'train.epochs' allows no epoch; nothing was trained")
    return TrainResult(state["epoch"], state["best_epoch"], state["best_value"], run.key, _stopped(run, state),
                       resumed_at, state["history"])


# --- setup -----------------------------------------------------------------------------------------

def _setup(name: str, params: dict, data: RetrievalData, model_dir: Path, history_path: Path, dataset: str,
           progress: bool, step_hook, log) -> _Run:
    """Device and process group, the seeded method, its optimizer, the selection metric and the run's identity."""
    settings, seed = method_train_settings(params, name, dataset), int(params["seed"])
    device = resolve_device(settings["device"])
    rank, world, device = _setup_distributed(device)

    torch.manual_seed(seed)
    method = build_method(name, params, data.info, word_vectors=np.asarray(data.text.embeddings),
                          dataset=dataset).to(device)
    closed_form = getattr(method, "closed_form", False)
    has_labels, method_key = data.info.num_labels > 0, getattr(method, "select_metric", None)
    key = selection_key(settings["select_metric"], has_labels, method_key)
    curve_key = f"val_{selection_key('auto', has_labels, method_key) if key == TRAIN_LOSS else key}"
    train_items = data.split_items("train")
    if len(train_items.captions) == 0:
        raise ValueError(f"{data.names['table']}: the train split has no captions to train on")
    optimizer = None
    if not closed_form:
        groups = [(mult, [p for p in params if p.requires_grad]) for mult, params in method.lr_groups()]
        optimizer = make_optimizer([(mult, params) for mult, params in groups if params], settings)
    return _Run(name=name, params=params, settings=settings, seed=seed, data=data, dataset=dataset,
                model_dir=model_dir, history_path=history_path, device=device, rank=rank, world=world,
                amp=settings["amp"] and device.type == "cuda" and not closed_form, method=method, key=key,
                curve_key=curve_key, flat_from=int(getattr(method, "first_stage_epochs", 0)),
                fingerprint=run_fingerprint(method.config(), settings, seed, params["metrics"], data.fingerprint()),
                train_captions=train_items.captions, progress=progress, log=log, step_hook=step_hook,
                optimizer=optimizer, machine=machine_record(device))


def _parallel(run: _Run) -> tuple[torch.nn.Module, int]:
    """The module a step calls (DDP-wrapped under torchrun) and the optimizer steps per epoch."""
    batch_size = run.settings["batch_size"]
    n_steps = math.ceil(len(run.train_captions) / batch_size)
    if run.world == 1:
        return run.method, n_steps
    from torch.nn.parallel import DistributedDataParallel

    if batch_size < run.world:
        raise ValueError(f"parameter 'train.batch_size' ({batch_size}) is smaller than the {run.world} ranks")
    if 0 < len(run.train_captions) % batch_size < run.world:  # every rank needs a share of each batch
        n_steps -= 1
    device = run.device
    return DistributedDataParallel(run.method, device_ids=[device.index] if device.type == "cuda" else None,
                                   find_unused_parameters=True), n_steps


# --- resume ----------------------------------------------------------------------------------------

def _fresh_state() -> dict:
    return {"epoch": 0, "history": [], "best_value": -math.inf, "best_epoch": 0, "curve_best": -math.inf,
            "flat_epochs": 0, "reference_loss": None}


def _resume(run: _Run) -> dict:
    """The state to continue from: the saved one when it belongs to this run, else a fresh one (and the
    outputs of another run are removed, so that none is mistaken for this run's)."""
    model_dir = run.model_dir
    if run.closed_form:
        done = _fitted_state(run)
        if done is not None:
            run.log(f"{run.name}: already fitted with these parameters and data ({model_dir / CONFIG_FILE})")
            return done
        saved = None
    else:
        saved = load_state(model_dir / STATE_FILE, run.log if run.rank == 0 else lambda message: None)
        if run.world > 1:
            import torch.distributed as dist

            dist.barrier()  # every rank has read the saved state before rank 0 may remove it
        same_run = saved is not None and saved.get("fingerprint") == run.fingerprint
        if same_run and not _exact_resume(run, saved):
            same_run = False
        elif same_run and resumable(model_dir, saved, run.log if run.rank == 0 else lambda message: None):
            run.method.load_state_dict(saved["model"])
            run.optimizer.load_state_dict(saved["optimizer"])
            run.log(f"resuming {run.name} after epoch {saved['epoch']} from {model_dir / STATE_FILE}")
            return {k: saved[k] for k in _fresh_state()}
        if saved is not None and not same_run and run.rank == 0 and saved.get("fingerprint") != run.fingerprint:
            run.log(f"ignoring {model_dir / STATE_FILE}: it belongs to a run with other parameters or data")
    for stale in (MODEL_FILE, CONFIG_FILE, STATE_FILE) if run.rank == 0 else ():
        (model_dir / stale).unlink(missing_ok=True)
    return _fresh_state()


def _exact_resume(run: _Run, saved: dict) -> bool:
    """Whether continuing the saved state gives what this run's loop params would have trained: not when
    it is past `train.epochs` (lowered since), or when `train.patience` (lowered since) would have stopped
    it earlier. Such a state and its model are logged and dropped, and training starts over."""
    epochs, patience = run.settings["epochs"], run.settings["patience"]
    curve = [entry.get(run.curve_key) for entry in saved.get("history", [])[:saved["epoch"]]]
    if None in curve:
        curve = curve[:curve.index(None)]
    stop = stop_epoch(curve, run.tolerance, patience, run.flat_from) or saved["epoch"]
    if saved["epoch"] <= epochs and stop == saved["epoch"]:
        return True
    if run.rank == 0:
        run.log(f"not resuming {run.model_dir / STATE_FILE}: it trained {saved['epoch']} epochs, more than "
                f"train.epochs {epochs} / train.patience {patience} allow now; training from the start")
    return False


def _fitted_state(run: _Run) -> dict | None:
    """A closed-form method's finished fit, when its config carries this run's fingerprint."""
    config_path = run.model_dir / CONFIG_FILE
    if not (config_path.is_file() and (run.model_dir / MODEL_FILE).is_file() and run.history_path.is_file()):
        return None
    done = json.loads(config_path.read_text())
    if done.get("run_fingerprint") != run.fingerprint:
        return None
    return {**_fresh_state(), "epoch": 1, "best_epoch": 1, "best_value": float(done["value"]),
            "history": json.loads(run.history_path.read_text())}


def _stopped(run: _Run, state: dict) -> bool:
    """Early stopping: `train.patience` epochs in a row that did not improve the validation curve
    (`pipeline.training.plateau`), whatever selects the model."""
    return run.settings["patience"] > 0 and state["flat_epochs"] >= run.settings["patience"]


# --- one epoch -------------------------------------------------------------------------------------

def _train_epoch(run: _Run, state: dict, epoch: int, step_model: torch.nn.Module, n_steps: int) -> dict:
    """One pass over the training captions in the epoch's seeded order; returns the mean loss parts."""
    settings, method, device, rank, world = run.settings, run.method, run.device, run.rank, run.world
    batch_size = settings["batch_size"]
    torch.manual_seed(_epoch_seed(run.seed, epoch) + rank)
    block_rows = run.data.stream_block_rows(run.train_captions)
    order, windows = epoch_windows(run.train_captions, run.data.caption_rows, run.seed, epoch, block_rows)
    method.start_epoch(epoch)
    method.train()
    trainable = [p for group in run.optimizer.param_groups for p in group["params"]]
    clipped = clipped_parameters(method, trainable, settings["grad_clip_scope"])
    set_epoch_lr(run.optimizer, settings, epoch)
    sums: dict[str, torch.Tensor] = {}
    window, window_steps = torch.zeros((), device=device), 0
    bar = tqdm(range(n_steps), desc=f"{run.name} epoch {epoch + 1}/{settings['epochs']}", unit="batch",
               disable=not run.progress or rank > 0, leave=False)
    batches = epoch_batches(run.data, order, None if block_rows is None else windows, batch_size, n_steps,
                            rank, world)
    for step, batch in zip(bar, batches):
        batch = batch.to(device)
        with autocast(device, run.amp):
            loss, parts = step_model(batch) if world > 1 else method.training_loss(batch)
        run.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if settings["grad_clip"] > 0:
            torch.nn.utils.clip_grad_norm_(clipped, settings["grad_clip"])
        run.optimizer.step()
        for k, v in {"loss": loss.detach(), **parts}.items():
            sums[k] = sums.get(k, 0.0) + v.float()
        window, window_steps = window + loss.detach().float(), window_steps + 1
        if window_steps == CHECK_EVERY or step == n_steps - 1:
            mean = window.item() / window_steps
            _check_loss(mean, state, settings, run.name, epoch, step)
            bar.set_postfix(loss=f"{mean:.4f}")
            window, window_steps = torch.zeros((), device=device), 0
        if run.step_hook is not None:
            run.step_hook(epoch, step)
    _after_epoch(run, settings["eval_batch_size"])
    record = {"epoch": epoch + 1, **{k: float(v) / n_steps for k, v in sums.items()}}
    _check_epoch(record["loss"], state, settings, run.name, epoch)
    return record


def clipped_parameters(method: torch.nn.Module, trainable: list, scope: str) -> list:
    """The parameters whose gradient norm `train.grad_clip` bounds: every trainable one (`scope` "all"), or
    those of the method's text-only group ("text": the Semantic Sharing official code clips its text
    encoder only)."""
    if scope == "all":
        return trainable
    text = method.text_parameters()
    if text is None:
        raise ValueError(f"parameter 'train.grad_clip_scope' is {scope!r}, but method {method.method_name} has "
                         f"no text-only parameter group")
    ids = {id(p) for p in text}
    return [p for p in trainable if id(p) in ids]


def _after_epoch(run: _Run, batch_size: int) -> None:
    """A method's pass over every training pair after its epoch (DCCA's one-pass final CCA), in eval mode
    without gradients; every rank runs it on the same pairs, so their buffers stay equal."""
    hook = getattr(run.method, "after_epoch", None)
    if hook is None:
        return
    captions, device = run.train_captions, run.device
    run.method.eval()
    with torch.no_grad(), autocast(device, run.amp):
        hook(run.data.pair_batch(captions[i:i + batch_size]).to(device) for i in range(0, len(captions), batch_size))
    run.method.train()


def _fit_closed_form(run: _Run) -> dict:
    """A closed-form method's one "epoch": gather the training pairs, solve; returns the fit's facts."""
    from threadpoolctl import threadpool_limits

    from pipeline.models.baselines.closed_form import training_arrays

    method = run.method
    image_x, text_x, labels = training_arrays(method, run.data, seed=run.seed, progress=run.progress)
    threads = int(run.params["train"]["threads"])  # numpy/scipy's BLAS honours train.threads like torch
    with threadpool_limits(threads) if threads else contextlib.nullcontext():
        facts = method.fit_arrays(image_x, text_x, labels)
    method.to(run.device)
    return {"epoch": 1, "loss": float(facts.get("objective", 0.0)),
            **{f"fit_{k}": v for k, v in facts.items() if isinstance(v, (int, float))}}


# --- validation and selection ----------------------------------------------------------------------

def _validate(run: _Run, record: dict) -> float:
    """Score the validation split (its first `train.val_limit_images` images when > 0) into `record`
    (`val_*`); returns the selection value: the validation metric, or with `train.select_metric:
    train_loss` the epoch's negated mean training loss (higher is better)."""
    metrics_params = run.params["metrics"]
    scores = score_split(run.method, run.data, "val", metrics_params=metrics_params, dataset=run.dataset,
                         batch_size=run.settings["eval_batch_size"], device=run.device, amp=run.amp,
                         max_images=run.settings["val_limit_images"])
    metrics = split_metrics(scores, run.data, metrics_params=metrics_params, dataset=run.dataset, protocol="all",
                            device=run.device)
    record.update({f"val_{k}": float(v) for k, v in metrics.items() if isinstance(v, (int, float))})
    if run.key == TRAIN_LOSS:
        return -float(record["loss"])
    if run.key not in metrics:
        numeric = sorted(k for k, v in metrics.items() if isinstance(v, (int, float)))
        raise ValueError(f"parameter 'train.select_metric' is {run.key!r}, which the validation metrics do not "
                         f"contain (available: {', '.join(numeric)}, or {TRAIN_LOSS})")
    return float(metrics[run.key])


def _select(state: dict, value: float, epoch: int) -> bool:
    """Count epoch `epoch` as done and keep it when it beats the best so far; returns whether it did."""
    state["epoch"] = epoch + 1
    if value > state["best_value"]:
        state.update(best_value=value, best_epoch=epoch + 1)
        return True
    return False


def _plateau(run: _Run, state: dict, curve_value: float | None, epoch: int) -> None:
    """Advance the validation curve's best and its count of flat epochs (what `_stopped` reads)."""
    if curve_value is None:
        raise ValueError(f"{run.name}: the validation metrics have no {run.curve_key.removeprefix('val_')!r} "
                         f"for early stopping to judge")
    best, flat = plateau_step(state["curve_best"], state["flat_epochs"], curve_value, run.tolerance)
    state.update(curve_best=best, flat_epochs=0 if epoch < run.flat_from else flat)


# --- checkpointing ---------------------------------------------------------------------------------

def _checkpoint(run: _Run, state: dict, improved: bool, value: float, epoch: int) -> None:
    """The selected model (`model.pt` + `config.json`) when it improved, the resumable state (`last.pt`,
    gradient methods) and the history."""
    if improved:
        save_model(run.model_dir, run.method, {"epoch": epoch + 1, "select_metric": run.key, "value": value,
                                               "data_fingerprint": run.data.fingerprint(),
                                               "inputs": run.data.inputs,
                                               "run_fingerprint": run.fingerprint, "machine": run.machine})
    if not run.closed_form:
        save_torch(run.model_dir / STATE_FILE, {
            **state, "fingerprint": run.fingerprint,
            "model": {k: v.detach().cpu() for k, v in run.method.state_dict().items()},
            "optimizer": run.optimizer.state_dict()})
    write_json(run.history_path, state["history"])


def _aligned(history: list[dict]) -> list[dict]:
    """Every entry with the same keys, null where a quantity was not computed in that epoch (dual-path's
    stage I has no ranking loss): `dvc plots show` needs one set of fields per file."""
    keys = list(dict.fromkeys(k for entry in history for k in entry))
    return [{k: entry.get(k) for k in keys} for entry in history]


def _log_epoch(run: _Run, state: dict, record: dict, value: float, epoch: int) -> None:
    if run.closed_form:
        run.log(f"{run.name}: fitted on {record['fit_pairs']} pairs, {describe_selection(run.key, value)}, "
                f"{record['seconds']:.1f}s")
    else:
        run.log(f"{run.name} epoch {epoch + 1}: loss {record['loss']:.4f}, {describe_selection(run.key, value)} "
                f"(best at epoch {state['best_epoch']}: {describe_selection(run.key, state['best_value'])}), "
                f"{record['seconds']:.1f}s")


# --- loss checks -----------------------------------------------------------------------------------

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
