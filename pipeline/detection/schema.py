"""Parameter schema of the `extract` and `detector` sections and every check of their values.

Kept free of torch imports: every stage reads it. `pipeline.params` adds the two free-form mappings of
`extract` (`detectors`, `weights`) and calls `check_detection_params` when params are loaded, so a bad
value stops before any stage runs (and before DVC removes a stage's outputs); `pipeline.detection.settings`
turns the checked values into typed settings.
"""
from __future__ import annotations

from typing import Any

from pipeline.param_checks import failer

DETECTORS = ("butd_r101_c4", "frcnn_r50_fpn_v2_coco", "shapes_frcnn")

EXTRACT_SCHEMA: dict[str, Any] = {
    # The detector is chosen per dataset in `extract.detectors.<dataset>` (added by pipeline.params):
    # butd_r101_c4 | frcnn_r50_fpn_v2_coco | shapes_frcnn, or "auto" (shapes_frcnn for the embedded
    # `shapes` kind, butd_r101_c4 otherwise); weights file per detector: `extract.weights.<detector>`.
    # RoI selection (papers/001): exactly num_boxes per image; score threshold; per-class NMS IoU,
    # relaxed by nms_step up to nms_max when too few survive; class scores below the floor skip NMS.
    "num_boxes": 36,
    "score_threshold": 0.5,
    "nms": 0.3,
    "nms_max": 0.9,
    "nms_step": 0.1,
    "class_score_floor": 0.01,
    # butd / COCO detectors: RPN proposals per image, image resize (short side, long-side cap).
    # (shapes_frcnn keeps its trained input size and `detector.proposals`.)
    "proposals": 300,
    "min_size": 600,
    "max_size": 1000,
    # Stored feature dtype (float16 | float32); images per batch; images per store chunk (resume unit).
    "dtype": "float16",
    "batch_size": 8,
    "chunk_size": 64,
    # DataLoader decode workers (more on a GPU machine); device auto | cpu | cuda[:N]; bfloat16 autocast
    # on CUDA (off by default: the reference extractors run float32; bf16 is faster and its deviation is
    # in reports/benchmarks.md); torch CPU threads of the extracting process (0 = torch default; 1 is fastest for the small
    # shapes detector and robust on a shared machine, where spinning OpenMP threads cost 6-18x:
    # reports/benchmarks.md).
    "workers": 2,
    "device": "auto",
    "autocast": False,
    "threads": 1,
    # Unreadable image: error (stop, naming the file) or skip (valid=False row, counted);
    # unusual modes (grey, 16-bit, CMYK, palette, alpha): convert (documented rules) or strict (error).
    "on_bad_image": "error",
    "image_modes": "convert",
}

DETECTOR_SCHEMA: dict[str, Any] = {
    # Training of the shapes detector (xmr train-detector): AdamW iterations of batch_size images,
    # peak lr with linear warm-up over `warmup` of the run then cosine decay.
    "iterations": 600,
    "batch_size": 8,
    "lr": 0.002,
    "weight_decay": 0.0001,
    "warmup": 0.1,
    # Backbone width (channels of the first stage), RoI feature size, RPN proposals kept at test time
    # (also when `xmr extract` runs it).
    "width": 24,
    "representation": 256,
    "proposals": 100,
    # Resume file written every checkpoint_every iterations; score for the reported recall/precision;
    # torch CPU threads (0 = torch default; 1 stays fast when the machine is shared).
    "checkpoint_every": 50,
    "eval_score": 0.5,
    "threads": 1,
    # Square input size the detector trains and extracts at (images are scaled to fit); 0 = the table's
    # largest image width (the shapes images' own size).
    "image_size": 0,
}


def check_detection_params(params: dict, source: str = "params.yaml") -> None:
    """Value checks of the type-checked `extract` and `detector` sections; raises ParamError naming the key."""
    fail = failer(source)
    ext = params["extract"]

    def choice(key: str, options: tuple[str, ...]) -> None:
        if ext[key] not in options:
            fail(f"extract.{key}", "one of: " + ", ".join(options), ext[key])

    for dataset, name in ext["detectors"].items():
        if name not in DETECTORS + ("auto",):
            fail(f"extract.detectors.{dataset}", "one of: " + ", ".join(DETECTORS + ("auto",)), name)
    for name, path in ext["weights"].items():
        if name not in DETECTORS:
            fail(f"extract.weights.{name}", f"keyed by a detector ({', '.join(DETECTORS)})", path)
        if not isinstance(path, str):
            fail(f"extract.weights.{name}", "a path string", path)
    for key, minimum in (("num_boxes", 1), ("proposals", 1), ("min_size", 32), ("batch_size", 1),
                         ("chunk_size", 1), ("workers", 0), ("threads", 0), ("max_size", ext["min_size"])):
        if ext[key] < minimum:
            fail(f"extract.{key}", f">= {minimum}", ext[key])
    if not 0.0 < ext["nms"] <= ext["nms_max"] <= 1.0:
        fail("extract.nms", f"in (0, extract.nms_max = {ext['nms_max']}] with nms_max <= 1", ext["nms"])
    if not ext["nms_step"] > 0:
        fail("extract.nms_step", "> 0", ext["nms_step"])
    if not 0.0 <= ext["class_score_floor"] < 1.0:
        fail("extract.class_score_floor", "in [0, 1)", ext["class_score_floor"])
    choice("dtype", ("float16", "float32"))
    choice("on_bad_image", ("error", "skip"))
    choice("image_modes", ("convert", "strict"))
    device = ext["device"]
    if device not in ("auto", "cpu") and not (device == "cuda" or (device.startswith("cuda:") and device[5:].isdigit())):
        fail("extract.device", "auto, cpu or cuda[:N]", device)
    for dataset, overrides in params["detector"].get("datasets", {}).items():
        if not isinstance(overrides, dict):
            fail(f"detector.datasets.{dataset}", "a mapping of detector keys", overrides)
        _check_detector(dataset_detector(params["detector"], dataset, source), fail, f"detector.datasets.{dataset}.")
    _check_detector(params["detector"], fail, "detector.")


def dataset_detector(detector: dict, dataset: str, source: str = "params.yaml") -> dict:
    """The `detector` section as `dataset` trains with it: the shared keys, then `detector.datasets.<dataset>`
    (a dataset sized apart, e.g. real COCO images at a smaller input size and fewer iterations)."""
    from pipeline.param_checks import ParamError, check_value

    overrides = detector.get("datasets", {}).get(dataset, {})
    out = {k: v for k, v in detector.items() if k != "datasets"}
    for key, value in overrides.items():
        if key not in DETECTOR_SCHEMA:
            raise ParamError(f"{source}: unknown parameter 'detector.datasets.{dataset}.{key}' (expected one of: "
                             f"{', '.join(DETECTOR_SCHEMA)})")
        out[key] = check_value(value, DETECTOR_SCHEMA[key], f"detector.datasets.{dataset}.{key}", source)
    return out


def _check_detector(det: dict, fail, prefix: str) -> None:
    def where(key: str) -> str:
        return prefix + key

    for key in ("iterations", "batch_size", "width", "representation", "proposals", "checkpoint_every"):
        if det[key] < 1:
            fail(where(key), ">= 1", det[key])
    if not det["lr"] > 0:
        fail(where("lr"), "> 0", det["lr"])
    for key in ("weight_decay", "threads"):
        if det[key] < 0:
            fail(where(key), ">= 0", det[key])
    if not 0 <= det["warmup"] < 1:
        fail(where("warmup"), "in [0, 1)", det["warmup"])
    if not 0 <= det["eval_score"] <= 1:
        fail(where("eval_score"), "in [0, 1]", det["eval_score"])
    if det["image_size"] != 0 and det["image_size"] < 32:
        fail(where("image_size"), "0 (the table's largest width) or >= 32", det["image_size"])
