"""The machine-class record (pipeline/machine.py): its fields come from the running process, and its one-line
form refuses a record that lacks one."""
from __future__ import annotations

import numpy
import pytest
import torch

from pipeline.machine import FIELDS, UNRECORDED, cpu_model, machine_class, machine_metrics, machine_record


def test_record_names_this_process(one_thread):
    record = machine_record("cpu")
    assert tuple(record) == FIELDS and all(isinstance(v, str) and v for v in record.values())
    assert record["isa"] == torch.backends.cpu.get_cpu_capability()
    assert record["torch"] == torch.__version__ and record["numpy"] == numpy.__version__
    assert record["threads"] == f"1/{torch.get_num_interop_threads()}"  # one_thread set the intra-op count
    assert record["accelerator"] == "none" and record["cpu"] == cpu_model()
    torch.set_num_threads(2)
    assert machine_record()["threads"].startswith("2/")  # read when called, not cached


def test_one_line_form_and_metrics_keys():
    record = {"cpu": "Some CPU", "isa": "AVX2", "torch": "2.0", "numpy": "1.0", "threads": "4/4",
              "accelerator": "none"}
    line = machine_class(record)
    assert line == "Some CPU; isa AVX2; torch 2.0; numpy 1.0; threads 4/4; accelerator none"
    assert machine_class(dict(record, isa="AVX512")) != line  # another instruction set: another class
    assert machine_class(None) == UNRECORDED
    assert machine_metrics(None, record) == {"machine_train": UNRECORDED, "machine_eval": line}
    with pytest.raises(ValueError, match="field 'threads'"):
        machine_class({k: v for k, v in record.items() if k != "threads"})
