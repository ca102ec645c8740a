"""Peak numbers of the GPUs `bench/gpu_check.py` may run on, and the ratio arithmetic against them.

Dense (no structured sparsity) tensor-core peaks and HBM bandwidth of the SXM/PCIe parts, from NVIDIA's
datasheets: "NVIDIA H100 Tensor Core GPU" datasheet (H100 SXM / PCIe columns; the datasheet prints
the with-sparsity figure for tensor cores, the dense peak is half of it), "NVIDIA H200 Tensor Core GPU"
datasheet (H200 SXM column) and "NVIDIA A100 Tensor Core GPU" datasheet (A100 SXM 80GB column).
A GPU not in the table gets no hardware ratio (the JSON then says so); add its row here.
"""
from __future__ import annotations

# TFLOP/s (dense) and TB/s; matched against torch.cuda.get_device_name() by the substrings in `match`.
PEAKS: list[dict] = [
    {"name": "H200 SXM", "match": ("H200",), "bf16_tflops": 989.4, "tf32_tflops": 494.7, "fp32_tflops": 66.9,
     "hbm_tbps": 4.8, "source": "NVIDIA H200 Tensor Core GPU datasheet (H200 SXM; sparse tensor figures halved)"},
    {"name": "H100 PCIe", "match": ("H100 PCIe",), "bf16_tflops": 756.5, "tf32_tflops": 378.0,
     "fp32_tflops": 51.2, "hbm_tbps": 2.0,
     "source": "NVIDIA H100 Tensor Core GPU datasheet (H100 PCIe; sparse tensor figures halved)"},
    {"name": "H100 SXM", "match": ("H100",), "bf16_tflops": 989.4, "tf32_tflops": 494.7, "fp32_tflops": 66.9,
     "hbm_tbps": 3.35, "source": "NVIDIA H100 Tensor Core GPU datasheet (H100 SXM; sparse tensor figures halved)"},
    {"name": "A100 SXM 80GB", "match": ("A100",), "bf16_tflops": 312.0, "tf32_tflops": 156.0,
     "fp32_tflops": 19.5, "hbm_tbps": 2.039, "source": "NVIDIA A100 Tensor Core GPU datasheet (A100 80GB SXM)"},
]


def peaks_for(device_name: str) -> dict | None:
    """The first table row whose `match` substrings occur in the device name (most specific first)."""
    for row in PEAKS:
        if any(m in device_name for m in row["match"]):
            return row
    return None


def limit_ratio(*, items_per_s: float, flops_per_item: float | None, bytes_per_item: float | None,
                peaks: dict | None, precision: str) -> dict:
    """Achieved rate against the compute and the memory-bandwidth limit, arithmetic written out.

    `precision` names the peak column that the work runs on (`bf16`, `tf32` or `fp32`). The binding
    limit is the one with the lower ceiling in items/s; `ratio` = achieved / that ceiling.
    """
    out: dict = {"precision": precision}
    if peaks is None:
        out["note"] = "no peak numbers for this device (bench/gpu_peaks.py): hardware ratio not computed"
        return out
    ceilings = {}
    if flops_per_item:
        peak = peaks[f"{precision}_tflops"] * 1e12
        ceilings["compute"] = peak / flops_per_item
        out["compute"] = (f"{flops_per_item / 1e9:,.3f} GFLOP/item x {items_per_s:,.1f} items/s = "
                          f"{flops_per_item * items_per_s / 1e12:,.2f} TFLOP/s of {peaks[f'{precision}_tflops']:,.1f} "
                          f"{precision} peak = {flops_per_item * items_per_s / peak:.1%}")
    if bytes_per_item:
        peak = peaks["hbm_tbps"] * 1e12
        ceilings["memory"] = peak / bytes_per_item
        out["memory"] = (f"{bytes_per_item / 1e6:,.3f} MB/item x {items_per_s:,.1f} items/s = "
                         f"{bytes_per_item * items_per_s / 1e12:,.3f} TB/s of {peaks['hbm_tbps']} TB/s HBM = "
                         f"{bytes_per_item * items_per_s / peak:.1%}")
    if ceilings:
        bound = min(ceilings, key=ceilings.get)
        out.update(bound=bound, ceiling_items_per_s=ceilings[bound], ratio=items_per_s / ceilings[bound])
    return out
