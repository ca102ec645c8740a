"""The files of a trained model directory, and the torch-free check that a model exists.

`xmr evaluate` checks the model before it imports torch or opens the data, so that a missing model is
reported at once (bench/fast_errors.py measures it).
"""
from __future__ import annotations

from pathlib import Path

MODEL_FILE, CONFIG_FILE, STATE_FILE = "model.pt", "config.json", "last.pt"


def require_model(model_dir: str | Path, dataset: str, method: str) -> Path:
    """`model_dir` when it holds a finished model (`model.pt`, `config.json` and the completion record
    that training writes last); else an error naming the directory and the command that makes or
    finishes it: FileNotFoundError when nothing was trained, `IncompleteOutput` when a run was cut short."""
    from pipeline.completion import require_complete

    model_dir = Path(model_dir)
    if not model_dir.is_dir() or not any(model_dir.iterdir()):
        raise FileNotFoundError(f"{model_dir}: trained model not found (run `xmr train {dataset} {method}` first)")
    require_complete(model_dir, rerun=f"run `xmr train {dataset} {method}` to finish it")
    for name in (CONFIG_FILE, MODEL_FILE):
        if not (model_dir / name).is_file():
            raise FileNotFoundError(f"{model_dir}: trained model not found ({name} is missing; run "
                                    f"`xmr train {dataset} {method}` first)")
    return model_dir
