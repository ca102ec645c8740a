"""Benchmark: training-step cost of each method's `official` recipe against its `paper` recipe.

The main job's time on `shapes` must not grow with the new default recipes. On the embedded dataset the
recipes change behaviours only (loop sizes stay the `train` section's), so the cost per optimizer step
is what can change: LogSumExp vs mean, LeakyReLU vs relu, sigmoid cross-entropy, hardest-of-pool
negatives, label-count similarity. Times `--steps` forward+backward steps of each method on synthetic
region/caption batches (batch 64, 36 regions, shapes-sized models from params.yaml) under both recipes,
interleaved, in one process; prints a Markdown section with the ratios (`--record FILE` appends it).

    python -P bench/recipe_cost.py --steps 10 [--record reports/benchmarks.md]
"""
from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import numpy as np
import torch

from pipeline.contract.batches import DataInfo, ImageBatch, PairBatch, TextBatch
from pipeline.params import load_params
from pipeline.training.registry import build_method
from record import emit  # bench/record.py: print and append to reports/benchmarks.md

METHODS = ("ss", "scan_i2t", "scan_t2i", "scan_consistency", "dual_path", "dscmr")


def _batch(info: DataInfo, b: int, rng: np.random.Generator) -> PairBatch:
    rows = torch.as_tensor(rng.choice(info.num_images, b, replace=False))
    lengths = torch.as_tensor(rng.integers(5, 14, b))
    ids = torch.zeros(b, int(lengths.max()), dtype=torch.long)
    for i, n in enumerate(lengths.tolist()):
        ids[i, :n] = torch.as_tensor(rng.integers(3, info.vocab_size, n))
    labels = torch.as_tensor(rng.random((b, info.num_labels)) < 0.2, dtype=torch.float32)
    images = ImageBatch(features=torch.randn(b, 36, info.feature_dim), positions=torch.rand(b, 36, 5),
                        classes=torch.as_tensor(rng.integers(0, info.num_detector_classes, (b, 36))),
                        labels=labels, rows=rows)
    texts = TextBatch(captions=torch.arange(b), ids=ids, lengths=lengths, labels=labels, rows=rows)
    return PairBatch(images=images, texts=texts)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--record", type=Path)
    args = ap.parse_args()
    torch.set_num_threads(1)
    params = load_params("params.yaml")
    info = DataInfo(feature_dim=256, num_regions=36, num_detector_classes=8, vocab_size=300, word_dim=300, num_labels=8,
                    num_images=1600)
    rng = np.random.default_rng(0)
    batches = [_batch(info, 64, rng) for _ in range(args.steps)]
    lines = [f"## Recipe cost per training step (bench/recipe_cost.py; {platform.processor() or platform.machine()}, "
             f"1 torch thread, {time.strftime('%Y-%m-%d')})", "",
             "| method | paper s/step | official s/step | official / paper |", "|---|---|---|---|"]
    for name in METHODS:
        times = {}
        for recipe in ("paper", "official"):
            p = {**params, "methods": {**params["methods"], name: {**params["methods"][name], "recipe": recipe}}}
            torch.manual_seed(0)
            method = build_method(name, p, info, dataset="shapes")
            method.start_epoch(5)  # dual-path: stage II (ranking loss on)
            opt = torch.optim.Adam(method.parameters(), lr=1e-4)
            method.training_loss(batches[0])[0].backward()  # warm-up
            start = time.perf_counter()
            for batch in batches:
                opt.zero_grad()
                method.training_loss(batch)[0].backward()
                opt.step()
            times[recipe] = (time.perf_counter() - start) / len(batches)
        lines.append(f"| {name} | {times['paper']:.4f} | {times['official']:.4f} | "
                     f"{times['official'] / times['paper']:.2f} |")
    text = "\n".join(lines) + "\n"
    emit(text, args.record)


if __name__ == "__main__":
    main()
