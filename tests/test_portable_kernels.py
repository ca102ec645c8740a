"""`train.portable_kernels`: the `xmr` entry point pins the CPU kernels before torch loads, and a tiny training
run then gives the same weights whatever instruction set torch would otherwise have dispatched to.

Each run is a fresh process (the kernels are chosen when torch loads). Only the instruction sets this machine
has can be compared here; agreement across machines is not verified (docs/reliability.md, "Portable kernels").
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import REPO
from pipeline.machine import PORTABLE_ENV
from stages.cli import portable_kernels_asked

TESTS = Path(__file__).parent

# A tiny `ss` training run (2 epochs, synthetic data); prints torch's kernel level and a hash of the weights.
TRAIN = """
import hashlib, sys
from stages.cli import portable_kernels_asked
from pipeline.machine import pin_portable_kernels
if portable_kernels_asked(sys.argv[1:]):
    pin_portable_kernels()
import torch
from pipeline.training.data import RetrievalData
from pipeline.training.loop import train_method
from retrieval_fixtures import make_dataset, small_params
out = sys.argv[3]
data = RetrievalData(*make_dataset(n_images=60, n_val=10, n_test=10), cache_splits=("train", "val"))
train_method("ss", small_params(epochs=2), data, out, out + ".json", dataset="synthetic", progress=False,
             log=lambda _m: None)
state = torch.load(out + "/model.pt", weights_only=True)
digest = hashlib.sha256(b"".join(state[k].numpy().tobytes() for k in sorted(state))).hexdigest()
print(torch.backends.cpu.get_cpu_capability(), digest)
"""


def params_file(tmp_path: Path, portable: bool) -> Path:
    path = tmp_path / f"params_{portable}.yaml"
    path.write_text(yaml.safe_dump({"train": {"portable_kernels": portable}}))
    return path


def train(tmp_path: Path, params: Path, capability: str, name: str) -> tuple[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in PORTABLE_ENV}
    env.update(ATEN_CPU_CAPABILITY=capability, PYTHONPATH=os.pathsep.join([str(REPO), str(TESTS)]))
    proc = subprocess.run([sys.executable, "-c", TRAIN, "--params", str(params), str(tmp_path / name)], env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    level, digest = proc.stdout.split()[-2:]
    return level, digest


def test_params_file_is_read_from_the_command_line(tmp_path, monkeypatch):
    on, off = params_file(tmp_path, True), params_file(tmp_path, False)
    assert portable_kernels_asked(["shapes", "ss", "--params", str(on)])
    assert portable_kernels_asked([f"--params={on}"]) and not portable_kernels_asked(["--params", str(off)])
    assert not portable_kernels_asked(["--params", str(tmp_path / "absent.yaml")])  # the stage names the problem
    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text(on.read_text())
    assert portable_kernels_asked(["shapes", "ss"])  # default: params.yaml


def test_entry_point_pins_the_kernels_before_torch_loads(tmp_path):
    """`xmr check-params --params <portable>` in a fresh process: torch, loaded by the stage, runs its
    unvectorised kernels even though the environment asked for AVX2."""
    script = ("import sys\nfrom stages.cli import app\n"
              "try:\n    app(args=sys.argv[1:])\nexcept SystemExit:\n    pass\n"
              "import torch\nprint('level', torch.backends.cpu.get_cpu_capability())")
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["train"]["portable_kernels"] = True
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    env = dict(os.environ, ATEN_CPU_CAPABILITY="avx2",
               PYTHONPATH=os.pathsep.join([str(REPO), str(tmp_path)]))
    proc = subprocess.run([sys.executable, "-c", script, "check-params", "--params", str(tmp_path / "params.yaml")],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "level DEFAULT" in proc.stdout, proc.stdout + proc.stderr[-1000:]


def test_training_agrees_bit_for_bit_across_instruction_sets_in_portable_mode(tmp_path):
    import torch

    if torch.backends.cpu.get_cpu_capability() == "DEFAULT":
        pytest.skip("this CPU has no vector instruction set torch dispatches to: nothing to compare")
    native = torch.backends.cpu.get_cpu_capability().lower()
    off = params_file(tmp_path, False)
    plain = [train(tmp_path, off, cap, f"off_{cap}") for cap in ("default", native)]
    assert [level for level, _ in plain] == ["DEFAULT", native.upper()]
    assert plain[0][1] != plain[1][1]  # the instruction set changes the weights: the comparison can fail
    on = params_file(tmp_path, True)
    portable = [train(tmp_path, on, cap, f"on_{cap}") for cap in ("default", native)]
    assert [level for level, _ in portable] == ["DEFAULT", "DEFAULT"]
    assert portable[0][1] == portable[1][1]
