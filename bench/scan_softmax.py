"""Benchmark: SCAN's attention softmax, torch.softmax against `pipeline.models.scan._Softmax`, in one run.

Times, on one CPU thread as the main job trains, the two softmaxes of a SCAN training batch ([B, B, 36
regions, L words] after the cosines: alpha over the words, beta over the regions), forward and forward +
backward, then a whole `scan_consistency` cross-attention step (scores forward and backward) with each
softmax in place. The "torch" rows swap `_Softmax.apply` for `torch.softmax` for the time of their timing,
so before and after share the process, the inputs and the machine state. Prints a Markdown section;
`--record FILE` appends it.

    python bench/scan_softmax.py [--batch 64] [--words 12] [--repeats 20] [--record reports/benchmarks.md]
"""
from __future__ import annotations

import argparse
import platform
import time
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

import torch

from pipeline.machine import cpu_model
from pipeline.models import scan
from record import emit  # bench/record.py: print and append to reports/benchmarks.md


def seconds(fn, repeats: int) -> float:
    """Median seconds of `fn()` over `repeats` calls after two warm-ups."""
    fn(), fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


@contextmanager
def torch_softmax():
    """`scan._Softmax.apply` replaced by torch.softmax (the code before the change) inside the block."""
    scan._Softmax.apply = lambda x, dim: torch.softmax(x, dim=dim)   # shadows the inherited classmethod
    try:
        yield
    finally:
        del scan._Softmax.apply


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, default=64, help="images and captions of a training batch")
    ap.add_argument("--regions", type=int, default=36)
    ap.add_argument("--words", type=int, default=12, help="padded caption length of the batch")
    ap.add_argument("--dim", type=int, default=128, help="SCAN's d_model (params.yaml: 128 on shapes)")
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--record", type=Path, help="append the Markdown section to this file")
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    b, r, n = args.batch, args.regions, args.words
    x = torch.randn(b, b, r, n, requires_grad=True)
    grad = torch.randn_like(x)
    regions = scan.l2_normalise(torch.randn(b, r, args.dim)).requires_grad_(True)
    lengths = torch.randint(max(1, n // 2), n + 1, (b,))
    words = scan.l2_normalise(torch.randn(b, n, args.dim)) * (torch.arange(n) < lengths[:, None]).unsqueeze(-1)
    words.requires_grad_(True)

    def step() -> None:
        fv, fs = scan.cross_attention_scores(regions, words, lengths, lambda1=9.0, lambda2=9.0)
        (fv + fs).sum().backward()

    rows = []
    for label, dim in (("alpha (over words)", 3), ("beta (over regions)", 2)):
        for part, fn in (("forward", lambda d=dim: scan._Softmax.apply(x.detach(), d)),
                         ("forward + backward", lambda d=dim: torch.autograd.grad(scan._Softmax.apply(x, d), x, grad))):
            with torch_softmax():
                before = seconds(fn, args.repeats)
            after = seconds(fn, args.repeats)
            rows.append((f"{label}, {part}", before, after))
    with torch_softmax():
        before = seconds(step, args.repeats)
    after = seconds(step, args.repeats)
    rows.append(("`scan_consistency` cross-attention step (scores forward + backward)", before, after))

    now = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [f"## SCAN attention softmax (`bench/scan_softmax.py`; {now})", "",
             f"`python bench/scan_softmax.py --batch {b} --words {n} --dim {args.dim} --repeats {args.repeats}`; "
             f"{platform.machine()}, {cpu_model()}, torch {torch.__version__}, 1 thread; "
             f"batch tensor [{b}, {b}, {r}, {n}] float32; median of {args.repeats} calls after two warm-ups.", "",
             "| what | torch.softmax ms | `_Softmax` ms | speed-up |", "|---|---|---|---|"]
    lines += [f"| {what} | {1e3 * t0:.1f} | {1e3 * t1:.1f} | {t0 / t1:.2f}x |" for what, t0, t1 in rows]
    emit("\n".join(lines) + "\n", args.record)


if __name__ == "__main__":
    main()
