"""pipeline.training.optimizers against torch.optim on the CPU: the same bits after every step, the same state
dict, and no torch._dynamo import (the reason the module exists). The same comparison on CUDA, against
torch.optim's foreach default there, is tests/test_gpu.py::test_optimisers_match_torch_optim_on_the_device
(`make gpu-check`)."""
from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from pipeline.training.optimizers import SGD, Adam
from pipeline.training.schedule import make_optimizer

STEPS = 6


def model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.ModuleDict({"embed": torch.nn.Embedding(11, 5), "gru": torch.nn.GRU(5, 6, batch_first=True),
                                "head": torch.nn.Linear(6, 3)})


def groups(m: torch.nn.Module) -> list[dict]:
    """Two groups with their own rates, as `make_optimizer` builds for a method's `lr_groups()`; the head
    shares its group with the GRU, so that group's parameters start their state at different steps."""
    return [{"params": list(m["gru"].parameters()) + list(m["head"].parameters()), "lr_mult": 1.0, "lr": 3e-3},
            {"params": list(m["embed"].parameters()), "lr_mult": 0.1, "lr": 3e-4}]


def backward(m: torch.nn.Module, step: int) -> None:
    """A loss over the model; on even steps the head gets no gradient (its parameters must stay untouched), so
    its state starts at step 1, after the others' (SGD's momentum buffers: some new, some not)."""
    g = torch.Generator().manual_seed(step)
    words = torch.randint(0, 11, (4, 7), generator=g)
    out, _ = m["gru"](m["embed"](words))
    loss = m["head"](out).sin().sum() if step % 2 else out.pow(2).mean()
    loss.backward()


def build(kind: str, ours: bool, m: torch.nn.Module):
    if kind == "adam":
        cls = Adam if ours else torch.optim.Adam
        return cls(groups(m), lr=3e-3, betas=(0.5, 0.999), weight_decay=1e-4)
    cls = SGD if ours else torch.optim.SGD
    return cls(groups(m), lr=3e-3, momentum=0.9, nesterov=True, weight_decay=1e-4)


def train(kind: str, ours: bool, steps: int = STEPS, resume_from: dict | None = None, swap_at: int | None = None):
    """Run `steps` steps; at `swap_at`, hand the state to the other implementation through its state dict."""
    m = model()
    opt = build(kind, ours, m)
    for step in range(steps):
        if step == swap_at:
            saved = opt.state_dict()
            opt = build(kind, not ours, m)
            opt.load_state_dict(saved)
        opt.zero_grad(set_to_none=True)
        backward(m, step)
        opt.step()
    return m, opt


@pytest.mark.parametrize("kind", ["adam", "sgd"])
def test_every_step_matches_torch_optim_bit_for_bit(kind):
    ours, theirs = model(), model()
    a, b = build(kind, True, ours), build(kind, False, theirs)
    for step in range(STEPS):
        head_before = [p.clone() for p in ours["head"].parameters()]
        for m, opt in ((ours, a), (theirs, b)):
            opt.zero_grad(set_to_none=True)
            backward(m, step)
            opt.step()
        for (name, p), q in zip(ours.named_parameters(), theirs.parameters()):
            assert torch.equal(p, q), f"{kind} step {step}: {name} differs from torch.optim"
        head_moved = not all(torch.equal(p, q) for p, q in zip(ours["head"].parameters(), head_before))
        assert head_moved == (step % 2 == 1), f"{kind} step {step}: the head moved without a gradient or stayed"


@pytest.mark.parametrize("kind", ["adam", "sgd"])
def test_state_dict_has_torch_optims_layout_and_resumes_either_way(kind):
    _, a = train(kind, True)
    _, b = train(kind, False)
    sa, sb = a.state_dict(), b.state_dict()
    assert sa["param_groups"] == sb["param_groups"]
    assert [list(g) for g in sa["param_groups"]] == [list(g) for g in sb["param_groups"]]  # key order too
    assert sa["state"].keys() == sb["state"].keys()
    for number, state in sa["state"].items():
        assert state.keys() == sb["state"][number].keys()
        assert all(torch.equal(state[k], sb["state"][number][k]) for k in state)
    straight, _ = train(kind, True)
    for ours_first in (True, False):
        swapped, _ = train(kind, ours_first, swap_at=3)
        assert all(torch.equal(p, q) for p, q in zip(straight.parameters(), swapped.parameters()))


def test_a_state_for_other_groups_is_refused():
    m = model()
    saved = build("adam", True, m).state_dict()
    saved["param_groups"] = saved["param_groups"][:1]
    with pytest.raises(ValueError, match="other parameter groups"):
        build("adam", True, m).load_state_dict(saved)


def test_make_optimizer_builds_these_and_torch_dynamo_is_never_imported():
    code = ("import sys, torch\n"
            "from pipeline.training.schedule import make_optimizer\n"
            "m = torch.nn.Linear(3, 2)\n"
            "for name in ('adam', 'sgd_nesterov'):\n"
            "    opt = make_optimizer(list(m.parameters()), {'lr': 0.1, 'weight_decay': 0.0, 'optimizer': name})\n"
            "    m(torch.ones(1, 3)).sum().backward(); opt.step(); opt.zero_grad()\n"
            "print(type(opt).__module__, 'torch._dynamo' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["pipeline.training.optimizers", "False"]
    assert isinstance(make_optimizer([torch.nn.Parameter(torch.ones(1))], {"lr": 0.1, "weight_decay": 0.0}), Adam)
