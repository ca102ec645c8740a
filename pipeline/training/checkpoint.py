"""Model files and the resumable training state of `models/<ds>/<method>/`.

  model.pt     state dict of the selected (best-validation) model
  config.json  `RetrievalMethod.config()` + selection facts (epoch, metric, value, data fingerprint)
  last.pt      resumable state after the last finished epoch: weights, optimizer, history, selection
               bookkeeping, and the fingerprint of the run it belongs to
Every file is written under a temporary name and renamed, so a kill leaves the previous version.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import torch

from pipeline.contract.batches import DataInfo
from pipeline.io import atomic_output, write_json
from pipeline.training.model_files import CONFIG_FILE, MODEL_FILE, STATE_FILE  # noqa: F401  (re-exported)
from pipeline.training.registry import rebuild_method


class CheckpointError(ValueError):
    """A checkpoint that does not belong to the requested method or data."""


def save_torch(path: Path, obj: Any) -> None:
    with atomic_output(path) as tmp:
        torch.save(obj, tmp)


def save_model(model_dir: Path, method, extra: dict[str, Any]) -> None:
    """Write `model.pt` then `config.json` (the config is what marks the pair complete, so the old one
    goes first: a kill in between leaves no config that could vouch for the new weights)."""
    (model_dir / CONFIG_FILE).unlink(missing_ok=True)
    save_torch(model_dir / MODEL_FILE, {k: v.detach().cpu() for k, v in method.state_dict().items()})
    write_json(model_dir / CONFIG_FILE, {**method.config(), **extra})


def check_state_dict(model: torch.nn.Module, state: dict[str, torch.Tensor], where: str) -> None:
    """Raise CheckpointError naming the first missing, unexpected or mis-shaped tensor."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    if missing or unexpected:
        detail = f"lacks '{missing[0]}'" if missing else f"has unexpected '{unexpected[0]}'"
        raise CheckpointError(f"{where}: weights do not fit the model ({detail}); it was saved by another "
                              f"method or configuration")
    for k, v in state.items():
        if tuple(v.shape) != tuple(own[k].shape):
            raise CheckpointError(f"{where}: tensor '{k}' has shape {tuple(v.shape)}, the model expects "
                                  f"{tuple(own[k].shape)}")


def load_model(model_dir: str | Path, method_name: str, info: DataInfo | None = None,
               device: str | torch.device = "cpu"):
    """The selected model of `model_dir`, checked to be `method_name` built for data `info`.

    Returns `(method, config)`; errors name the file and what does not match.
    """
    model_dir = Path(model_dir)
    config_path, weights_path = model_dir / CONFIG_FILE, model_dir / MODEL_FILE
    for path in (config_path, weights_path):
        if not path.is_file():
            raise FileNotFoundError(f"{path}: trained model not found (run `xmr train <dataset> {method_name}`)")
    try:
        config = json.loads(config_path.read_text())
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{config_path}: not valid JSON ({exc})") from exc
    if config.get("method") != method_name:
        raise CheckpointError(f"{config_path}: checkpoint of method '{config.get('method')}', expected '{method_name}'")
    try:
        method = rebuild_method(config)
    except (ValueError, KeyError, TypeError) as exc:
        raise CheckpointError(f"{config_path}: cannot rebuild the model ({exc})") from exc
    if info is not None:
        diffs = method.info.differences(info)
        if diffs:
            raise CheckpointError(f"{config_path}: model was trained on other data shapes ({'; '.join(diffs)} "
                                  f"[checkpoint != current data])")
    state = _load_untrusted(weights_path)
    if not isinstance(state, dict):
        raise CheckpointError(f"{weights_path}: holds a {type(state).__name__}, not a state dict of weights")
    check_state_dict(method, state, str(weights_path))
    method.load_state_dict(state)
    return method.to(device), config


def check_inputs(model_dir: str | Path, config: dict, inputs: dict[str, str]) -> None:
    """Refuse a model whose recorded input identities (table, feature store, text store) differ from those
    of the data about to be scored, naming both; a model from before inputs were recorded is refused too."""
    if not inputs:  # data built in memory (tests): no files to identify
        return
    config_path = Path(model_dir) / CONFIG_FILE
    recorded = config.get("inputs")
    if not isinstance(recorded, dict):
        raise CheckpointError(f"{config_path}: records no input identities (trained before they were recorded); "
                              f"retrain it (`xmr train`)")
    for key, value in inputs.items():
        if recorded.get(key) != value:
            raise CheckpointError(f"{config_path}: model was trained on {key} {recorded.get(key)}, but the data to "
                                  f"score is {key} {value}; retrain it on this data (`xmr train` / `dvc repro`)")


def resumable(model_dir: Path, saved: dict[str, Any], log) -> bool:
    """Whether the saved state `last.pt` and the selected model beside it belong together.

    A run killed between writing `model.pt`/`config.json` and `last.pt` leaves a selected model that
    the state does not know; resuming would keep a model.pt of the wrong epoch. Such a directory is
    refused (logged, naming it) and training starts over, which gives the same weights.
    """
    config_path = model_dir / CONFIG_FILE
    try:
        epoch = json.loads(config_path.read_text()).get("epoch") if config_path.is_file() else 0
    except json.JSONDecodeError:
        epoch = None
    if isinstance(epoch, int) and epoch == saved.get("best_epoch") and (model_dir / MODEL_FILE).is_file() == (epoch > 0):
        return True
    log(f"not resuming {model_dir}: its {MODEL_FILE}/{CONFIG_FILE} (epoch {epoch}) do not match the saved state "
        f"{STATE_FILE} (best epoch {saved.get('best_epoch')}), an unfinished write; training from the start")
    return False


def _load_untrusted(path: Path) -> Any:
    """`torch.load` with weights only (a pickle that would run code is refused, never run); any failure is a
    CheckpointError naming the file, with the first line of torch's reason."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # UnpicklingError, RuntimeError (truncated zip), EOFError, ...: all one cause
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        raise CheckpointError(f"{path}: not a weights file torch can load safely ({type(exc).__name__}: {reason})") \
            from exc


def load_state(path: Path, log=None) -> dict[str, Any] | None:
    """The resumable training state, or None when there is none. A state that does not load (truncated,
    damaged, not ours) is set aside as `last.pt.broken-<time>` with one logged line: training starts over."""
    if not path.is_file():
        return None
    try:
        state = _load_untrusted(path)
        if not isinstance(state, dict) or "epoch" not in state:
            raise CheckpointError(f"{path}: not a resumable training state")
        return state
    except CheckpointError as exc:
        aside = path.with_name(f"{path.name}.broken-{time.strftime('%Y%m%d-%H%M%S')}")
        try:
            os.replace(path, aside)
        except FileNotFoundError:  # another rank of the same run moved it first
            pass
        (log or print)(f"warning: {exc}; moved it to {aside.name}, training from the start")
        return None
