"""The `extract` and `detector` params in checked, typed form.

`pipeline.params` checks key names and types (schema in `pipeline.detection.schema`); value ranges
and choices are checked here, where they are used, and every error names the parameter.
"""
from __future__ import annotations

from dataclasses import dataclass

from pipeline.detection.selection import SelectionParams
from pipeline.detection.train import TrainSettings
from pipeline.params import ParamError

DETECTORS = ("butd_r101_c4", "frcnn_r50_fpn_v2_coco", "shapes_frcnn")


@dataclass(frozen=True)
class ExtractSettings:
    detector: str
    weights: str | None
    selection: SelectionParams
    proposals: int
    min_size: int
    max_size: int
    dtype: str
    batch_size: int
    chunk_size: int
    workers: int
    device: str
    autocast: bool
    threads: int
    on_bad_image: str
    image_modes: str


def _choice(value, options, key: str):
    if value not in options:
        raise ParamError(f"params.yaml: parameter '{key}' is {value!r}, expected one of: {', '.join(options)}")
    return value


def _at_least(value, minimum, key: str):
    if value < minimum:
        raise ParamError(f"params.yaml: parameter '{key}' must be >= {minimum}, got {value}")
    return value


def detector_name(params: dict, dataset: str) -> str:
    """The detector `dataset` uses: `extract.detectors.<dataset>` ("auto" when absent, then resolved).

    Per dataset, so that DVC re-runs one dataset's detector and extraction stages when its choice
    changes (dvc.yaml tracks `extract.detectors.${item}`, which the pipeline's params.yaml must hold)."""
    name = params["extract"]["detectors"].get(dataset, "auto")
    key = f"extract.detectors.{dataset}"
    if name == "auto":
        kind = params["data"].get(dataset, {}).get("kind")
        return "shapes_frcnn" if kind == "shapes" else "butd_r101_c4"
    return _choice(name, DETECTORS + ("auto",), key)


def extract_settings(params: dict, dataset: str) -> ExtractSettings:
    ext = params["extract"]
    name = detector_name(params, dataset)
    weights = ext["weights"].get(name)
    if weights is not None and not isinstance(weights, str):
        raise ParamError(f"params.yaml: parameter 'extract.weights.{name}' must be a path string, got {weights!r}")
    try:
        selection = SelectionParams(
            num_boxes=_at_least(ext["num_boxes"], 1, "extract.num_boxes"),
            score_threshold=ext["score_threshold"], nms=ext["nms"], nms_max=ext["nms_max"],
            nms_step=ext["nms_step"], class_score_floor=ext["class_score_floor"])
    except ValueError as exc:
        raise ParamError(f"params.yaml: extract {exc}") from exc
    device = ext["device"]
    if device not in ("auto", "cpu") and not device.startswith("cuda"):
        raise ParamError(f"params.yaml: parameter 'extract.device' is {device!r}, expected auto, cpu or cuda[:N]")
    return ExtractSettings(
        detector=name, weights=weights, selection=selection,
        proposals=_at_least(ext["proposals"], 1, "extract.proposals"),
        min_size=_at_least(ext["min_size"], 32, "extract.min_size"),
        max_size=_at_least(ext["max_size"], ext["min_size"], "extract.max_size"),
        dtype=_choice(ext["dtype"], ("float16", "float32"), "extract.dtype"),
        batch_size=_at_least(ext["batch_size"], 1, "extract.batch_size"),
        chunk_size=_at_least(ext["chunk_size"], 1, "extract.chunk_size"),
        workers=_at_least(ext["workers"], 0, "extract.workers"),
        device=device, autocast=ext["autocast"], threads=_at_least(ext["threads"], 0, "extract.threads"),
        on_bad_image=_choice(ext["on_bad_image"], ("error", "skip"), "extract.on_bad_image"),
        image_modes=_choice(ext["image_modes"], ("convert", "strict"), "extract.image_modes"),
    )


def train_settings(params: dict) -> TrainSettings:
    try:
        return TrainSettings(**params["detector"])
    except ValueError as exc:
        raise ParamError(str(exc)) from exc
