"""Data-parallel training (torchrun / DDP) on CPU with the gloo backend: two ranks, one run."""
import socket

import torch
import torch.multiprocessing as mp

from retrieval_fixtures import ddp_worker


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_ranks_train_one_model(tmp_path):
    mp.spawn(ddp_worker, args=(2, free_port(), str(tmp_path)), nprocs=2, join=True)
    r0, r1 = torch.load(tmp_path / "rank0.pt"), torch.load(tmp_path / "rank1.pt")
    assert r0["epochs"] == r1["epochs"] == 2
    assert r0["best_epoch"] == r1["best_epoch"]  # rank 1 follows rank 0's model selection
    assert (tmp_path / "model" / "model.pt").is_file() and (tmp_path / "history.json").is_file()
    assert r0["last"] is not None and "classifiers.0.weight" in r0["last"]  # saved without DDP's prefix
