"""`make gpu-check`: run every GPU code path's test and the five GPU benchmarks, in one command.

On a CUDA machine (one GPU; 119 s on an H200, 2026-12-04):
  1. `pytest -m gpu tests/test_gpu.py` (extraction, each method family's training step and scoring,
     metrics, DDP over NCCL, resume after a kill: see that file);
  2. the benchmarks of `bench/gpu_benches.py` at full size with random weights: BUTD R101-C4
     extraction at 600x1000 (fp32 and bf16, peak memory), Semantic Sharing training on MIRFlickr-shaped
     items (samples/s, projected 45-epoch time), SCAN scoring 1,000 x 5,000, NDCG@500 at 2,000 x 190,000,
     and `scan_t2i`'s whole evaluation at COCO 5K (encode, 125M pairs, coco5k/coco1k metrics);
  3. one JSON file (`--out`) and a Markdown section appended to `--record` (reports/benchmarks.md)
     with the GPU name, driver, torch version and date. Each bench states its ratio to the physical
     limit it is bound by (peaks of `bench/gpu_peaks.py`, arithmetic written out) and to the CPU rate of
     the same code, measured in the same run on the same machine at fewer items and scaled per item.

`--dry-run` runs the same sequence on the CPU at tiny sizes (the gpu tests then run on the CPU
instead of skipping: XMR_GPU_DRY_RUN=1); the normal test suite runs it so that the check cannot rot.

    PYTHONPATH=. python bench/gpu_check.py [--dry-run] [--out reports/gpu_check.json] [--record reports/benchmarks.md]
                                           [--benches butd_extraction,ss_training,scan_scoring,ndcg,scan_eval_coco5k]
                                           [--no-tests]
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import time
import traceback
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

FULL = {
    "butd_extraction": {"height": 600, "width": 1000, "batch": 8, "batches": 8, "proposals": 300, "pre_nms": 6000,
                        "blocks": [3, 4, 23], "pool": 14, "num_boxes": 36, "classes": 1601, "cpu_items": 1},
    "ss_training": {"items": 2000, "val": 100, "test": 100, "regions": 36, "feature_dim": 2048, "words": 15,
                    "vocab": 1386, "batch": 64, "steps": 20, "cpu_steps": 1, "model": {}},
    "scan_scoring": {"images": 1000, "captions": 5000, "regions": 36, "max_words": 16, "dim": 1024,
                     "large_memory_mb": 8192, "cpu_items": [20, 200]},
    "ndcg": {"queries": 2000, "gallery": 190_000, "labels": 21, "dim": 21, "k": 500, "cpu_items": 50},
    "scan_eval_coco5k": {"images": 5000, "captions": 25000, "regions": 36, "feature_dim": 2048, "max_words": 16,
                         "dim": 1024, "vocab": 10000, "batch": 128, "memory_mb": [512.0, 8192.0],
                         "max_seconds": 240.0, "cpu_items": [4, 500]},
}
TINY = {
    "butd_extraction": {"height": 64, "width": 96, "batch": 2, "batches": 1, "proposals": 8, "pre_nms": 100,
                        "blocks": [1, 1, 1], "pool": 2, "num_boxes": 4, "classes": 11, "cpu_items": 1},
    "ss_training": {"items": 60, "val": 10, "test": 10, "regions": 8, "feature_dim": 16, "words": 6, "vocab": 40,
                    "batch": 8, "steps": 2, "cpu_steps": 1,
                    "model": {"d_model": 16, "layers": 1, "heads": 2, "d_ff": 32, "text_gru": False}},
    "scan_scoring": {"images": 8, "captions": 40, "regions": 8, "max_words": 10, "dim": 16, "large_memory_mb": 64,
                     "cpu_items": [4, 20]},
    "ndcg": {"queries": 20, "gallery": 500, "labels": 21, "dim": 21, "k": 50, "cpu_items": 5},
    "scan_eval_coco5k": {"images": 100, "captions": 500, "regions": 4, "feature_dim": 16, "max_words": 10,
                         "dim": 16, "vocab": 50, "batch": 32, "memory_mb": [1.0, 64.0], "max_seconds": 240.0,
                         "cpu_items": [2, 20]},
}
NOT_ON_DEVICE = ("gensim", "nltk", "dvc", "pooch", "moto")
# Full shapes with fewer items, for stored CPU references on a machine without a GPU (--cpu-full-shapes)
CPU_FULL_SHAPES = {
    "butd_extraction": {**FULL["butd_extraction"], "batch": 1, "batches": 1},
    "ss_training": {**FULL["ss_training"], "items": 400, "steps": 1},
    "scan_scoring": {**FULL["scan_scoring"], "images": 50, "captions": 500, "large_memory_mb": 2048},
    "ndcg": {**FULL["ndcg"], "queries": 100, "cpu_items": 20},
    "scan_eval_coco5k": {**FULL["scan_eval_coco5k"], "images": 20, "captions": 100, "memory_mb": [512.0]},
}
# Targets of issue 17 (benchmarks, not tests): (value key, comparison, threshold, text)
TARGETS = {
    "butd_extraction": ("fp32 images/s", ">=", 150.0, "fp32 >= 150 images/s (123k COCO images in < 15 min)"),
    "ss_training": ("projected_45_epochs_s", "<", 180.0, "45 MIRFlickr epochs < 3 min"),
    "scan_scoring": ("coco5k_s", "<", 300.0, "COCO-5K scoring (5,000 x 25,000) < 5 min"),
    "scan_eval_coco5k": ("coco5k_eval_s", "<", 300.0, "COCO-5K scan_t2i evaluation (encode, score, metrics) < 5 min"),
}


def environment(device) -> dict:
    import torch

    env = {"date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
           "torch": torch.__version__, "cuda": torch.version.cuda, "python": platform.python_version(),
           "cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(), "device": str(device),
           "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32,
           "float32_matmul_precision": torch.get_float32_matmul_precision()}
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        env.update(gpu=torch.cuda.get_device_name(device), gpu_memory_gib=round(props.total_memory / 2**30, 1),
                   cudnn=torch.backends.cudnn.version(), gpus_visible=torch.cuda.device_count())
        try:
            env["driver"] = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                                           capture_output=True, text=True, timeout=30).stdout.split("\n")[0].strip()
        except (OSError, subprocess.SubprocessError) as err:
            env["driver"] = f"unknown ({err})"
    else:
        env.update(gpu="none (CPU dry run)", driver="none")
    return env


def run_tests(dry_run: bool, workdir: Path) -> dict:
    """`pytest -m gpu tests/test_gpu.py` in a subprocess; counts from its JUnit XML."""
    junit = workdir / "gpu-tests.xml"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    if dry_run:
        env["XMR_GPU_DRY_RUN"] = "1"
    cmd = [sys.executable, "-m", "pytest", "-q", "-m", "gpu", "-p", "no:cacheprovider", f"--junitxml={junit}",
           str(ROOT / "tests" / "test_gpu.py")]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    out = {"command": " ".join(cmd[1:]), "returncode": proc.returncode, "seconds": round(time.perf_counter() - t0, 1),
           "passed": 0, "failed": 0, "skipped": 0, "failures": [], "skips": []}
    print(proc.stdout[-6000:], proc.stderr[-3000:], sep="\n", file=sys.stderr, flush=True)
    if not junit.is_file():
        out["failures"].append(f"pytest wrote no report: {proc.stderr.strip()[-500:] or proc.stdout.strip()[-500:]}")
        out["failed"] = 1
        return out
    for case in ET.parse(junit).getroot().iter("testcase"):
        name = case.get("name")
        bad = case.find("failure") if case.find("failure") is not None else case.find("error")
        skip = case.find("skipped")
        if bad is not None:
            out["failed"] += 1
            out["failures"].append(f"{name}: {(bad.get('message') or '').splitlines()[0][:300] if bad.get('message') else ''}")
        elif skip is not None:
            out["skipped"] += 1
            out["skips"].append(f"{name}: {skip.get('message', '')[:200]}")
        else:
            out["passed"] += 1
    return out


def with_ratios(name: str, result: dict, peaks: dict | None) -> dict:
    """Add the hardware ratio(s), the GPU/CPU ratio and the target verdict to a bench result."""
    from gpu_peaks import limit_ratio

    modes = result.get("modes") or {"": result}
    for mode, r in modes.items():
        precision = mode if mode in ("fp32", "bf16") else r.get("precision", result.get("precision", "fp32"))
        if precision == "fp32" and name == "butd_extraction" and result.get("tf32_convs"):
            precision = "tf32"
        r["limit"] = limit_ratio(items_per_s=r["items_per_s"], flops_per_item=r.get("flops_per_item"),
                                 bytes_per_item=r.get("bytes_per_item", result.get("bytes_per_item")),
                                 peaks=peaks, precision=precision)
        r["vs_cpu"] = r["items_per_s"] / result["cpu_items_per_s"] if result.get("cpu_items_per_s") else None
    if name in TARGETS:
        key, op, threshold, text = TARGETS[name]
        value = result["modes"]["fp32"]["items_per_s"] if key == "fp32 images/s" else result[key]
        result["target"] = {"text": text, "value": value,
                            "met": value >= threshold if op == ">=" else value < threshold}
    return result


def run_benches(names: list[str], device, sizes: dict, peaks: dict | None) -> dict:
    import torch

    from gpu_benches import BENCHES

    results = {}
    for name in names:
        t0 = time.perf_counter()
        print(f"[gpu-check] bench {name} ...", file=sys.stderr, flush=True)
        try:
            result = BENCHES[name](device, sizes[name])
            if name == "butd_extraction":
                result["tf32_convs"] = device.type == "cuda" and torch.backends.cudnn.allow_tf32
            results[name] = with_ratios(name, result, peaks)
        except Exception as err:  # one failing bench must not hide the others' numbers
            results[name] = {"error": f"{type(err).__name__}: {err}", "traceback": traceback.format_exc()[-4000:]}
        results[name]["bench_seconds"] = round(time.perf_counter() - t0, 1)
        print(f"[gpu-check] bench {name}: {results[name].get('error', 'ok')} "
              f"({results[name]['bench_seconds']} s)", file=sys.stderr, flush=True)
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return results


def _fmt(x: float | None, unit: str = "") -> str:
    if x is None:
        return "-"
    return f"{x:,.0f}{unit}" if x >= 100 else f"{x:,.2f}{unit}" if x >= 1 else f"{x:.3g}{unit}"


def markdown(report: dict, command: str) -> str:
    env, tests, peaks = report["environment"], report["tests"], report["peaks"]
    title = {"dry-run": "CPU dry run", "cpu-full-shapes": "CPU at full shapes (fewer items), no GPU"}.get(
        report["mode"], env.get("gpu"))
    lines = [f"## GPU check (`make gpu-check`): {title}, {env['date']}", "",
             f"GPU: {env.get('gpu')}; driver {env.get('driver')}; torch {env['torch']} (CUDA {env['cuda']}, "
             f"cuDNN {env.get('cudnn', '-')}); Python {env['python']}; {env['cpus']} CPUs, {env['torch_threads']} "
             f"torch threads; cuDNN TF32 {env['cudnn_allow_tf32']}, float32 matmul precision "
             f"{env['float32_matmul_precision']}. Command: `{command}`. Random weights throughout.", ""]
    if tests:
        lines += [f"GPU tests (`{tests['command']}`): {tests['passed']} passed, {tests['failed']} failed, "
                  f"{tests['skipped']} skipped in {tests['seconds']} s.", ""]
        lines += [f"- failed: {f}" for f in tests["failures"]] + [f"- skipped: {s}" for s in tests["skips"]]
        if tests["failures"] or tests["skips"]:
            lines.append("")
    if peaks:
        lines += [f"Peak numbers ({peaks['name']}{', assumed for the dry run' if report['dry_run'] else ''}): "
                  f"bf16 {peaks['bf16_tflops']} / TF32 {peaks['tf32_tflops']} / FP32 {peaks['fp32_tflops']} TFLOP/s "
                  f"dense, HBM {peaks['hbm_tbps']} TB/s; source: {peaks['source']}.", ""]
    else:
        lines += ["No peak numbers for this device in `bench/gpu_peaks.py`: hardware ratios not computed.", ""]
    lines += ["| bench | rate on device | peak memory | bound by | ratio to that limit | CPU rate (same code) | "
              "device / CPU | target |", "|---|---|---|---|---|---|---|---|"]
    details = []
    for name, r in report["benches"].items():
        if "error" in r:
            lines.append(f"| {name} | **error**: {r['error'][:200]} | | | | | | |")
            continue
        target = r.get("target")
        verdict = f"{target['text']}: {'met' if target['met'] else '**missed**'}" if target else "-"
        for mode, m in (r.get("modes") or {"": r}).items():
            lim = m["limit"]
            lines.append(f"| {name}{' ' + mode if mode else ''} | {_fmt(m['items_per_s'])} {r['unit']} | "
                         f"{_fmt(m.get('peak_mib'), ' MiB')} | {lim.get('bound', '-')} ({lim['precision']}) | "
                         f"{'%.1f%%' % (100 * lim['ratio']) if 'ratio' in lim else '-'} | "
                         f"{_fmt(r['cpu_items_per_s'])} {r['unit']} | {_fmt(m['vs_cpu'], 'x')} | {verdict} |")
            for kind in ("compute", "memory"):
                if kind in lim:
                    details.append(f"- {name}{' ' + mode if mode else ''}, {kind}: {lim[kind]}")
        details.append(f"- {name}: {r['what']}. CPU: {r['cpu_note']}.")
        if "bytes_note" in r:
            details.append(f"- {name} bytes: {r['bytes_note']}.")
        if "projection" in r:
            details.append(f"- {name}: one `train_method` epoch of {r['epoch_pairs']:,} pairs + {r['epoch_val_items']} "
                           f"val items took {r['epoch_seconds']:.2f} s; projected 45 MIRFlickr epochs = "
                           f"{r['projection']} = {r['projected_45_epochs_s']:,.1f} s.")
        if "coco5k_s" in r:
            budgets = ", ".join(f"{k}: {_fmt(v['items_per_s'])} pairs/s" for k, v in r["budgets"].items())
            details.append(f"- {name}: budgets {budgets}; "
                           f"COCO-5K (125M pairs) at the best: {r['coco5k_s']:,.1f} s.")
        if "coco5k_eval_s" in r:
            budgets = ", ".join(f"{k}: {v:,.1f} s" for k, v in r["projected_scoring_s"].items())
            details.append(f"- {name} ({r['measured']}): encode {r['encode_s']:.1f} s + score {r['score_s']:.1f} s + "
                           f"metrics {r['metrics_s']:.1f} s = {r['coco5k_eval_s']:.1f} s; scoring projected from one "
                           f"block per budget: {budgets}{'; ' + r['skipped'] if 'skipped' in r else ''}.")
        if "seconds" in r:
            details.append(f"- {name}: {r['queries']:,} queries against {r['gallery']:,} items in {r['seconds']:.2f} s.")
        if r.get("profile") and (not target or not target["met"] or report["dry_run"]):
            ops = ", ".join(f"{p['op']} {p['share']:.0%}" for p in r["profile"][:6])
            details.append(f"- {name}, where the time goes (profiler, self time of one call): {ops}.")
    lines += ["", "Arithmetic (FLOPs counted by torch's FlopCounterMode on the real shapes: matmuls and "
              "convolutions only; bytes as stated):", "", *details, ""]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dry-run", action="store_true", help="CPU, tiny sizes, gpu tests run on the CPU")
    ap.add_argument("--out", type=Path, default=ROOT / "reports" / "gpu_check.json")
    ap.add_argument("--record", type=Path, help="append the Markdown section to this file")
    ap.add_argument("--benches", default=",".join(FULL))
    ap.add_argument("--no-tests", action="store_true")
    ap.add_argument("--cpu-full-shapes", action="store_true",
                    help="CPU, full shapes with fewer items (stored CPU references); implies --no-tests")
    ap.add_argument("--assume-gpu", default="H200", help="peak row used for the arithmetic in a dry run")
    args = ap.parse_args(argv)

    import torch

    from gpu_peaks import peaks_for

    if args.cpu_full_shapes:
        args.dry_run, args.no_tests = True, True
        device, sizes = torch.device("cpu"), CPU_FULL_SHAPES
    elif args.dry_run:
        device, sizes = torch.device("cpu"), TINY
    elif not torch.cuda.is_available():
        print("gpu-check: no CUDA device visible to torch; use --dry-run for the CPU rehearsal", file=sys.stderr)
        return 2
    else:
        device, sizes = torch.device("cuda", 0), FULL
    names = [n for n in args.benches.split(",") if n]
    unknown = set(names) - set(FULL)
    if unknown:
        ap.error(f"--benches: unknown {sorted(unknown)}, known {list(FULL)}")
    env = environment(device)
    peaks = peaks_for(args.assume_gpu if args.dry_run else env["gpu"])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tests = None if args.no_tests else run_tests(args.dry_run, args.out.parent)
    mode = "cpu-full-shapes" if args.cpu_full_shapes else "dry-run" if args.dry_run else "gpu"
    report = {"dry_run": args.dry_run, "mode": mode, "environment": env, "peaks": peaks, "sizes": {n: sizes[n] for n in names},
              "tests": tests, "benches": run_benches(names, device, sizes, peaks)}
    # what the device lacks (its README's package list): the check must run without it
    report["imported_beyond_need"] = sorted(m for m in NOT_ON_DEVICE if m in sys.modules)
    command = "python bench/gpu_check.py " + " ".join(argv if argv is not None else sys.argv[1:])
    text = markdown(report, command.strip())
    tmp = args.out.with_name(f".{args.out.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(report, indent=1, default=str))
    os.replace(tmp, args.out)
    print(text)
    if args.record:
        with args.record.open("a") as f:
            f.write("\n" + text)
    failed = (tests is not None and tests["failed"] > 0) or any("error" in r for r in report["benches"].values())
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
