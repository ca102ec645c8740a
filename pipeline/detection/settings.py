"""The `extract` and `detector` params in checked, typed form.

`pipeline.params` checks every key, type, range and choice when params are loaded (the checks are in
`pipeline.detection.schema`); this module turns the checked values into typed settings.
"""
from __future__ import annotations

from dataclasses import dataclass

from pipeline.detection.selection import SelectionParams
from pipeline.detection.train import TrainSettings


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


def detector_name(params: dict, dataset: str) -> str:
    """The detector `dataset` uses: `extract.detectors.<dataset>` ("auto" when absent, then resolved).

    Per dataset, so that DVC re-runs one dataset's detector and extraction stages when its choice
    changes (dvc.yaml tracks `extract.detectors.${item}`, which the pipeline's params.yaml must hold)."""
    name = params["extract"]["detectors"].get(dataset, "auto")
    if name == "auto":
        kind = params["data"].get(dataset, {}).get("kind")
        return "shapes_frcnn" if kind == "shapes" else "butd_r101_c4"
    return name


def extract_settings(params: dict, dataset: str) -> ExtractSettings:
    """The checked `extract` section (`pipeline.params.load_params`) as typed settings for `dataset`."""
    ext = params["extract"]
    name = detector_name(params, dataset)
    selection = SelectionParams(num_boxes=ext["num_boxes"], score_threshold=ext["score_threshold"], nms=ext["nms"],
                                nms_max=ext["nms_max"], nms_step=ext["nms_step"],
                                class_score_floor=ext["class_score_floor"])
    return ExtractSettings(
        detector=name, weights=ext["weights"].get(name), selection=selection, proposals=ext["proposals"],
        min_size=ext["min_size"], max_size=ext["max_size"], dtype=ext["dtype"], batch_size=ext["batch_size"],
        chunk_size=ext["chunk_size"], workers=ext["workers"], device=ext["device"], autocast=ext["autocast"],
        threads=ext["threads"], on_bad_image=ext["on_bad_image"], image_modes=ext["image_modes"],
    )


def train_settings(params: dict, dataset: str | None = None) -> TrainSettings:
    """The checked `detector` section, with `detector.datasets.<dataset>` applied, as the shapes detector's
    training settings."""
    from pipeline.detection.schema import dataset_detector

    return TrainSettings(**dataset_detector(params["detector"], dataset or ""))
