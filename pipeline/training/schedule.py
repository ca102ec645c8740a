"""Optimiser and learning-rate schedule of the training loop (generic: every gradient method).

`train.optimizer`: "adam" (papers/000, SCAN) or "sgd_nesterov" (the dual-path official code: SGD with
Nesterov momentum). `train.lr_decay_epoch` N > 0: epochs 1..N train at `lr`, later ones at
`lr * lr_decay_factor` (SCAN's official `lr_update`: 15 of 30 on Flickr30k, 10 of 20 on COCO).
"""
from __future__ import annotations

import torch


def epoch_lr(settings: dict, epoch: int) -> float:
    """Learning rate of 0-based `epoch`."""
    decay = settings.get("lr_decay_epoch", 0)
    if decay > 0 and epoch >= decay:
        return settings["lr"] * settings.get("lr_decay_factor", 0.1)
    return settings["lr"]


def make_optimizer(trainable: list[torch.nn.Parameter], settings: dict) -> torch.optim.Optimizer:
    if settings.get("optimizer", "adam") == "sgd_nesterov":
        return torch.optim.SGD(trainable, lr=settings["lr"], momentum=settings.get("momentum", 0.9), nesterov=True,
                               weight_decay=settings["weight_decay"])
    return torch.optim.Adam(trainable, lr=settings["lr"], weight_decay=settings["weight_decay"])


def set_epoch_lr(optimizer: torch.optim.Optimizer, settings: dict, epoch: int) -> float:
    """Set every parameter group's learning rate for `epoch` (also right after a resume); returns it."""
    lr = epoch_lr(settings, epoch)
    for group in optimizer.param_groups:
        group["lr"] = lr
    return lr
