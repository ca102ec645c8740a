"""`make gpu-check` without a GPU: the peak-ratio arithmetic, and a dry run of the whole check (the gpu
tests on the CPU, the five benchmarks at tiny sizes, the JSON and the Markdown section), so that the
one command a GPU session runs cannot rot."""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# bench/ is no package and holds modules named like others (train, metrics): load the one file
_spec = importlib.util.spec_from_file_location("gpu_peaks", REPO / "bench" / "gpu_peaks.py")
gpu_peaks = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(gpu_peaks)
limit_ratio, peaks_for = gpu_peaks.limit_ratio, gpu_peaks.peaks_for


def test_peak_rows_match_the_device_name():
    assert peaks_for("NVIDIA H200")["name"] == "H200 SXM"
    assert peaks_for("NVIDIA H100 80GB HBM3")["name"] == "H100 SXM"
    assert peaks_for("NVIDIA H100 PCIe")["name"] == "H100 PCIe"
    assert peaks_for("NVIDIA GeForce RTX 4090") is None
    assert "no peak numbers" in limit_ratio(items_per_s=1.0, flops_per_item=1.0, bytes_per_item=None, peaks=None,
                                            precision="fp32")["note"]


def test_the_binding_limit_is_the_lower_ceiling_with_the_arithmetic_written_out():
    h200 = peaks_for("NVIDIA H200")
    # 1 TFLOP and 1 GB per item: compute ceiling 989.4 items/s (bf16), memory ceiling 4,800 items/s
    r = limit_ratio(items_per_s=98.94, flops_per_item=1e12, bytes_per_item=1e9, peaks=h200, precision="bf16")
    assert r["bound"] == "compute" and r["ratio"] == pytest.approx(0.1)
    assert r["ceiling_items_per_s"] == pytest.approx(989.4)
    assert "1,000.000 GFLOP/item x 98.9 items/s = 98.94 TFLOP/s of 989.4 bf16 peak = 10.0%" == r["compute"]
    # the same item on fp32 CUDA cores: 66.9 items/s compute vs 4,800 memory
    m = limit_ratio(items_per_s=48.0, flops_per_item=1e9, bytes_per_item=1e9, peaks=h200, precision="fp32")
    assert m["bound"] == "memory" and m["ratio"] == pytest.approx(0.01)
    assert m["memory"].endswith("of 4.8 TB/s HBM = 1.0%")


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("gpu-check")
    record = out / "benchmarks.md"
    record.write_text("# earlier sections\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    env.pop("XMR_GPU_DRY_RUN", None)
    proc = subprocess.run([sys.executable, str(REPO / "bench" / "gpu_check.py"), "--dry-run", "--out",
                           str(out / "gpu_check.json"), "--record", str(record)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=900)
    return proc, out, record


def test_the_dry_run_passes_every_gpu_test_on_the_cpu(dry_run):
    proc, out, _ = dry_run
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads((out / "gpu_check.json").read_text())
    tests = report["tests"]
    assert tests["failed"] == 0 and tests["skipped"] == 0, tests
    assert tests["passed"] >= 12, tests  # extraction, 8 method families, metrics, DDP, resume
    assert report["dry_run"] and report["environment"]["gpu"] == "none (CPU dry run)"
    assert report["imported_beyond_need"] == []


def test_the_dry_run_measures_every_bench_with_both_ratios(dry_run):
    proc, out, record = dry_run
    report = json.loads((out / "gpu_check.json").read_text())
    assert set(report["benches"]) == {"butd_extraction", "ss_training", "scan_scoring", "ndcg", "scan_eval_coco5k"}
    for name, bench in report["benches"].items():
        assert "error" not in bench, bench.get("traceback")
        for mode in (bench.get("modes") or {"": bench}).values():
            assert mode["items_per_s"] > 0 and mode["vs_cpu"] > 0, name
            assert 0 < mode["limit"]["ratio"] < 1 and mode["limit"]["bound"] in ("compute", "memory"), name
    assert set(report["benches"]["butd_extraction"]["modes"]) == {"fp32", "bf16"}
    assert report["benches"]["ss_training"]["projected_45_epochs_s"] > 0
    assert report["benches"]["scan_scoring"]["target"]["text"].startswith("COCO-5K")
    coco5k = report["benches"]["scan_eval_coco5k"]  # the whole evaluation path ran (tiny), not a projection
    assert coco5k["measured"] == "the whole run" and coco5k["score_s"] > 0 and coco5k["metrics_s"] > 0
    assert coco5k["coco5k_eval_s"] == pytest.approx(coco5k["encode_s"] + coco5k["score_s"] + coco5k["metrics_s"])

    text = record.read_text()
    assert text.startswith("# earlier sections\n")  # appended, not rewritten
    section = text.split("\n## GPU check (`make gpu-check`): CPU dry run", 1)[1]
    assert "Peak numbers (H200 SXM, assumed for the dry run)" in section
    for row in ("| butd_extraction fp32 |", "| butd_extraction bf16 |", "| ss_training |", "| scan_scoring |",
                "| ndcg |", "| scan_eval_coco5k |"):
        assert row in section
    assert "GFLOP/item x" in section and "TB/s HBM" in section and "GPU tests (" in section
