"""The machine class a result was computed on: what decides its last bits besides code, params and data.

On one machine a rerun is bit-identical; on another CPU model, instruction set (the kernels torch
dispatched to), torch / numpy version, thread count or accelerator, floating-point sums round
differently, training follows another path and ends at another model, like another seed would
(docs/reliability.md, "Determinism"). Trained models, detectors, feature stores and metrics files carry
this record so the report can say where its numbers came from. torch is imported only to read it.
"""
from __future__ import annotations

import os
import platform
import sys
from pathlib import Path

# The fields of a record, in the order of its one-line form (`machine_class`).
FIELDS = ("cpu", "isa", "torch", "numpy", "threads", "accelerator")
UNRECORDED = "not recorded"  # a file written before machine records existed
# `train.portable_kernels`: the CPU kernel paths pinned to ones every x86-64 CPU has (ATen's unvectorised
# kernels, MKL's conditional-numerical-reproducibility mode, oneDNN capped at SSE4.1). Read by the libraries
# when they load, so they are set before torch is imported (the `xmr` entry point, stages/cli.py).
PORTABLE_ENV = {"ATEN_CPU_CAPABILITY": "default", "MKL_CBWR": "COMPATIBLE", "ONEDNN_MAX_CPU_ISA": "SSE41"}
KERNEL_CAPS = ("MKL_CBWR", "ONEDNN_MAX_CPU_ISA")  # caps that change the kernels without showing in the isa


def pin_portable_kernels(environ=os.environ) -> None:
    """Set `PORTABLE_ENV` in `environ`, over any value already there; refuses when torch is already loaded
    with other kernels (the settings would then not apply)."""
    environ.update(PORTABLE_ENV)
    torch = sys.modules.get("torch")
    if torch is not None and torch.backends.cpu.get_cpu_capability() != "DEFAULT":
        raise RuntimeError("parameter 'train.portable_kernels' is true, but torch was loaded before the kernels "
                           "could be pinned: run the stage through the `xmr` command")


def cpu_model() -> str:
    """The CPU's model name (/proc/cpuinfo on Linux, else what the platform reports)."""
    try:
        for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
            if line.lower().startswith(("model name", "hardware")) and ":" in line:
                return " ".join(line.split(":", 1)[1].split())
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def machine_record(device=None) -> dict[str, str]:
    """The machine class of the current process, as flat strings: CPU model, the instruction set torch's
    CPU kernels dispatch to (with the MKL / oneDNN caps when set), torch and numpy versions, torch's
    intra/inter-op thread counts, and the accelerator when `device` (a torch device or its name) is a CUDA
    device ("none" otherwise)."""
    import numpy
    import torch

    accelerator = "none"
    if device is not None and torch.device(device).type == "cuda":
        accelerator = f"{torch.cuda.get_device_name(torch.device(device))} (CUDA {torch.version.cuda})"
    caps = [f"{k}={os.environ[k]}" for k in KERNEL_CAPS if os.environ.get(k)]
    isa = torch.backends.cpu.get_cpu_capability() + (f" ({', '.join(caps)})" if caps else "")
    return {"cpu": cpu_model(), "isa": isa,
            "torch": torch.__version__, "numpy": numpy.__version__,
            "threads": f"{torch.get_num_threads()}/{torch.get_num_interop_threads()}", "accelerator": accelerator}


def machine_class(record: dict | None) -> str:
    """One line naming the class (`UNRECORDED` for None): equal lines, bit-identical reruns."""
    if not record:
        return UNRECORDED
    missing = [f for f in FIELDS if not isinstance(record.get(f), str)]
    if missing:
        raise ValueError(f"machine record: field '{missing[0]}' is missing or not a string "
                         f"(fields: {', '.join(FIELDS)})")
    return (f"{record['cpu']}; isa {record['isa']}; torch {record['torch']}; numpy {record['numpy']}; "
            f"threads {record['threads']}; accelerator {record['accelerator']}")


# The metrics-file keys (strings, so `dvc metrics show` / `dvc exp show` list them beside the numbers).
TRAIN_KEY, EVAL_KEY = "machine_train", "machine_eval"


def machine_metrics(trained: dict | None, evaluated: dict) -> dict[str, str]:
    """The two machine-class lines of a metrics file: the model's training record (None for a model saved
    before records existed: `UNRECORDED`) and the evaluating process's."""
    return {TRAIN_KEY: machine_class(trained), EVAL_KEY: machine_class(evaluated)}
