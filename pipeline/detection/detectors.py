"""Detector names -> loaded models with everything the store records about them.

Each detector is a torchvision `GeneralizedRCNN` (so `regions.candidate_regions` serves all) plus
its class names, feature dimension and the SHA-256 of the weights file it was loaded from.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from pipeline.detection import butd, coco_frcnn
from pipeline.detection.convert import load_butd
from pipeline.detection.settings import ExtractSettings
from pipeline.detection.train import load_shapes_detector
from pipeline.data.registry import DEFAULT_REGISTRY
from pipeline.detection.weights import default_weights_path, published_hash, sha256_file, verify


@dataclass
class LoadedDetector:
    name: str
    model: object
    class_names: list[str]
    feature_dim: int
    weights_path: str
    weights_sha256: str
    info: dict = field(default_factory=dict)


def default_weights(name: str, dataset: str, models_dir: str | Path = "models",
                    download: dict | None = None) -> Path:
    """shapes_frcnn: models/<dataset>/detector; others: the registry's file under `download.dir`."""
    if name == "shapes_frcnn":
        return Path(models_dir) / dataset / "detector"
    download = download or {}
    return default_weights_path(name, download.get("dir", "data/downloads"), download.get("registry", DEFAULT_REGISTRY))


def _vg_class_names(weights: Path, n: int) -> list[str]:
    """Visual Genome object names from `objects_vocab.txt` beside the weights (first synonym per line),
    else placeholders `vg_<i>`: the vocabulary ships with the peers' code, not with the weights."""
    vocab = weights.parent / "objects_vocab.txt"
    if vocab.is_file():
        names = [line.split(",")[0].strip() for line in vocab.read_text().splitlines() if line.strip()]
        if len(names) == n:
            return names
    return [f"vg_{i}" for i in range(n)]


def pretrained_record(settings: ExtractSettings, download: dict | None = None) -> dict:
    """What the `train_detector` stage records for a dataset that uses a downloaded detector (nothing to
    train): its name and verified weights, so that the stage's output pins the weights extraction uses."""
    if settings.detector == "shapes_frcnn":
        raise ValueError("shapes_frcnn is trained, not downloaded")
    path = Path(settings.weights) if settings.weights else default_weights(settings.detector, "", download=download)
    digest = verify(path, published_hash(path, (download or {}).get("registry", DEFAULT_REGISTRY)))
    return {"detector": settings.detector, "trained": False, "weights_file": path.name, "weights_sha256": digest}


def load_detector(settings: ExtractSettings, dataset: str, models_dir: str | Path = "models",
                  download: dict | None = None) -> LoadedDetector:
    """Load the detector named in `settings` from its weights (no network). `download` is the
    `download` params section (dir, registry) locating downloaded weights."""
    name = settings.detector
    path = Path(settings.weights) if settings.weights else default_weights(name, dataset, models_dir, download)
    if name == "butd_r101_c4":
        digest = verify(path, published_hash(path, (download or {}).get("registry", DEFAULT_REGISTRY)))
        converted = load_butd(path, min_size=settings.min_size, max_size=settings.max_size,
                              proposals=settings.proposals)
        classes = converted.config.num_classes - 1
        return LoadedDetector(name, converted.model, _vg_class_names(path, classes), butd.FEATURE_DIM, str(path),
                              digest, {"layout": converted.layout, "config": converted.config.as_dict()})
    if name == "frcnn_r50_fpn_v2_coco":
        digest = verify(path, published_hash(path, (download or {}).get("registry", DEFAULT_REGISTRY)))
        model = coco_frcnn.load(path, min_size=settings.min_size, max_size=settings.max_size,
                                proposals=settings.proposals)
        return LoadedDetector(name, model, coco_frcnn.class_names(), coco_frcnn.FEATURE_DIM, str(path), digest)
    if name == "shapes_frcnn":
        model, classes = load_shapes_detector(path)  # its trained input size and proposals (detector.*)
        weights = path / "model.pt"
        return LoadedDetector(name, model, classes, model.shapes_config.representation, str(weights),
                              sha256_file(weights), {"config": model.shapes_config.as_dict()})
    raise ValueError(f"unknown detector {name!r}")
