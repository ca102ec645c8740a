"""Adam and SGD with Nesterov momentum, computed as torch.optim computes them, without importing torch.optim's
machinery.

Why: building or stepping a `torch.optim` optimiser imports `torch._dynamo` (its methods are wrapped to stay
out of compiled graphs), about 1.4 s of CPU in every training process; the main job starts 37 of them on
2 cores (reports/benchmarks.md "Optimiser without torch._dynamo"). The update here is torch 2.14's
multi-tensor ("foreach") update, operation for operation. On the CPU a foreach operation applies the
single-tensor operation to each tensor in turn, so a step is bit-identical to `torch.optim.Adam` / `SGD` as they
run on the CPU (their single-tensor path) and, on CUDA, to their foreach default
(tests/test_training_optimizers.py). `state_dict()` has torch.optim's layout, so a `last.pt` written by
either resumes in the other.

Only what the training loop uses: Adam with L2 weight decay (not AdamW, not amsgrad) and SGD with Nesterov
momentum; parameter groups with their own `lr`; parameters without a gradient in a step are left alone.
"""
from __future__ import annotations

import torch

# Hyperparameters a group carries besides `params` (the names torch.optim uses, so that state dicts match).
ADAM_DEFAULTS = {"betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0, "amsgrad": False, "maximize": False,
                 "foreach": None, "capturable": False, "differentiable": False, "fused": None,
                 "decoupled_weight_decay": False}
SGD_DEFAULTS = {"momentum": 0.9, "dampening": 0, "weight_decay": 0, "nesterov": True, "maximize": False,
                "foreach": None, "differentiable": False, "fused": None}


class _Optimizer:
    """Parameter groups, per-parameter state and their (de)serialisation, as torch.optim keeps them."""

    defaults: dict

    def __init__(self, groups: list[dict], lr: float, **hyper):
        self.defaults = {"lr": lr, **self.defaults, **hyper}
        self.param_groups: list[dict] = []
        self.state: dict[torch.Tensor, dict] = {}
        for group in groups:
            params = list(group["params"])
            if not params:
                raise ValueError("an optimiser parameter group has no parameters")
            entry = {"params": params, **{k: v for k, v in group.items() if k != "params"}}
            for key, value in self.defaults.items():  # the group's own values first, as torch.optim orders them
                entry.setdefault(key, value)
            self.param_groups.append(entry)

    def zero_grad(self, set_to_none: bool = True) -> None:
        for group in self.param_groups:
            for p in group["params"]:
                if set_to_none:
                    p.grad = None
                elif p.grad is not None:
                    p.grad.zero_()

    def state_dict(self) -> dict:
        """torch.optim's layout: parameters numbered in group order, state keyed by those numbers."""
        index: dict[int, int] = {}
        groups = []
        for group in self.param_groups:
            ids = [index.setdefault(id(p), len(index)) for p in group["params"]]
            groups.append({**{k: v for k, v in group.items() if k != "params"}, "params": ids})
        state = {index[id(p)]: dict(s) for p, s in self.state.items()}
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, saved: dict) -> None:
        """Restore `saved` (from this class or from torch.optim) onto the same parameters in the same groups."""
        groups = saved["param_groups"]
        if len(groups) != len(self.param_groups) or any(
                len(g["params"]) != len(mine["params"]) for g, mine in zip(groups, self.param_groups)):
            raise ValueError("the saved optimiser state has other parameter groups than this model's")
        self.state = {}
        for group, mine in zip(groups, self.param_groups):
            for number, p in zip(group["params"], mine["params"]):
                if number in saved["state"]:
                    self.state[p] = {k: v if k == "step" else v.to(device=p.device, dtype=p.dtype)
                                     for k, v in saved["state"][number].items()}
            mine.update({k: v for k, v in group.items() if k != "params"})

    @torch.no_grad()
    def step(self) -> None:
        """Update each group's parameters that have a gradient; L2 weight decay joins the gradient first."""
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            grads = [p.grad for p in params]
            if group["weight_decay"] != 0:
                grads = torch._foreach_add(grads, params, alpha=group["weight_decay"])
            self._update(group, params, grads)

    def _update(self, group: dict, params: list[torch.Tensor], grads: list[torch.Tensor]) -> None:
        raise NotImplementedError


class Adam(_Optimizer):
    """torch.optim.Adam(groups, lr, betas, weight_decay) with its other options at their defaults."""

    defaults = ADAM_DEFAULTS

    def _update(self, group: dict, params: list[torch.Tensor], grads: list[torch.Tensor]) -> None:
        for p in params:
            if p not in self.state:
                self.state[p] = {"step": torch.tensor(0.0, dtype=torch.float32),
                                 "exp_avg": torch.zeros_like(p, memory_format=torch.preserve_format),
                                 "exp_avg_sq": torch.zeros_like(p, memory_format=torch.preserve_format)}
        states = [self.state[p] for p in params]
        steps = [s["step"] for s in states]
        exp_avgs, exp_avg_sqs = [s["exp_avg"] for s in states], [s["exp_avg_sq"] for s in states]
        (beta1, beta2), lr = group["betas"], group["lr"]
        torch._foreach_add_(steps, torch.tensor(1.0), alpha=1.0)
        torch._foreach_lerp_(exp_avgs, grads, 1 - beta1)
        torch._foreach_mul_(exp_avg_sqs, beta2)
        torch._foreach_addcmul_(exp_avg_sqs, grads, grads, 1 - beta2)
        counts = [s.item() for s in steps]
        step_sizes = [(lr / (1 - beta1 ** n)) * -1 for n in counts]
        denominators = torch._foreach_sqrt(exp_avg_sqs)
        torch._foreach_div_(denominators, [(1 - beta2 ** n) ** 0.5 for n in counts])
        torch._foreach_add_(denominators, group["eps"])
        torch._foreach_addcdiv_(params, exp_avgs, denominators, step_sizes)


class SGD(_Optimizer):
    """torch.optim.SGD(groups, lr, momentum, nesterov=True, weight_decay) with dampening 0."""

    defaults = SGD_DEFAULTS

    def _update(self, group: dict, params: list[torch.Tensor], grads: list[torch.Tensor]) -> None:
        momentum, dampening = group["momentum"], group["dampening"]
        buffers = [self.state.get(p, {}).get("momentum_buffer") for p in params]
        if all(b is not None for b in buffers):
            torch._foreach_mul_(buffers, momentum)
            torch._foreach_add_(buffers, grads, alpha=1 - dampening)
        else:  # a first step: a new buffer starts as the gradient
            for i, (p, grad) in enumerate(zip(params, grads)):
                if buffers[i] is None:
                    buffers[i] = self.state.setdefault(p, {})["momentum_buffer"] = grad.detach().clone()
                else:
                    buffers[i].mul_(momentum).add_(grad, alpha=1 - dampening)
        if group["nesterov"]:
            grads = torch._foreach_add(grads, buffers, alpha=momentum)
        else:
            grads = buffers
        torch._foreach_add_(params, grads, alpha=-group["lr"])
