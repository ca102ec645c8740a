"""Optimiser and learning-rate schedule of the training loop (generic: every gradient method).

`train.optimizer`: "adam" (papers/000, SCAN; betas `train.adam_betas`, (0.5, 0.999) in DSCMR's official
code) or "sgd_nesterov" (the dual-path official code: SGD with Nesterov momentum). A method's
`lr_groups()` gives each parameter group a multiplier `lr_mult` on the learning rate (the dual-path
official per-layer rates). `train.lr_decay_epoch` N > 0: epochs 1..N train at `lr`, later ones at
`lr * lr_decay_factor` (SCAN's official `lr_update`: 15 of 30 on Flickr30k, 10 of 20 on COCO).
The optimisers are `pipeline.training.optimizers`: torch.optim's arithmetic without its import of
torch._dynamo.
"""
from __future__ import annotations

from pipeline.training.optimizers import SGD, Adam


def epoch_lr(settings: dict, epoch: int) -> float:
    """Learning rate of 0-based `epoch`."""
    decay = settings.get("lr_decay_epoch", 0)
    if decay > 0 and epoch >= decay:
        return settings["lr"] * settings.get("lr_decay_factor", 0.1)
    return settings["lr"]


def make_optimizer(trainable: list, settings: dict) -> Adam | SGD:
    """The optimiser over `trainable`: a list of parameters (multiplier 1) or of `(multiplier, parameters)`."""
    if trainable and isinstance(trainable[0], tuple):
        groups = [{"params": list(params), "lr_mult": float(mult), "lr": settings["lr"] * float(mult)}
                  for mult, params in trainable]
    else:
        groups = [{"params": list(trainable), "lr_mult": 1.0}]
    if settings.get("optimizer", "adam") == "sgd_nesterov":
        return SGD(groups, lr=settings["lr"], momentum=settings.get("momentum", 0.9), nesterov=True,
                   weight_decay=settings["weight_decay"])
    betas = tuple(float(b) for b in settings.get("adam_betas", (0.9, 0.999)))
    return Adam(groups, lr=settings["lr"], betas=betas, weight_decay=settings["weight_decay"])


def set_epoch_lr(optimizer: Adam | SGD, settings: dict, epoch: int) -> float:
    """Set every parameter group's learning rate for `epoch` (the epoch's rate times the group's `lr_mult`;
    also right after a resume); returns the epoch's base rate."""
    lr = epoch_lr(settings, epoch)
    for group in optimizer.param_groups:
        group["lr"] = lr * group.get("lr_mult", 1.0)
    return lr
