"""Detector weights: where the extraction finds them and how their identity is checked.

The files are entries of the download registry's `weights` source (pipeline/data/registry.yaml),
fetched by `xmr download weights` with their pinned hash (torchvision publishes the first 8 hex
digits of the SHA-256 in the file name) or, where none is published, a trust-on-first-use lock.
Loading recomputes the full SHA-256 (recorded in the feature store) and checks the published prefix
again, so a swapped or corrupted file is refused by name. Nothing here touches the network.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

from pipeline.data.registry import DEFAULT_REGISTRY, FileEntry, load_registry, local_path

WEIGHTS_SOURCE = "weights"
DEFAULT_FILES = {
    "frcnn_r50_fpn_v2_coco": "fasterrcnn_resnet50_fpn_v2_coco-dd69338a.pth",
    "butd_r101_c4": "bua-caffe-frcn-r101-k36.pth",  # or faster_rcnn_from_caffe.pkl via extract.weights
}


class WeightsError(ValueError):
    """A weights file is missing or does not match its published hash."""


def weights_entry(detector: str, file_name: str | None = None, registry: str | Path = DEFAULT_REGISTRY) -> FileEntry:
    """The registry entry of a detector's weights file (its default file unless `file_name`)."""
    return load_registry(registry)[WEIGHTS_SOURCE].file(file_name or DEFAULT_FILES[detector])


def default_weights_path(detector: str, download_dir: str | Path = "data/downloads",
                         registry: str | Path = DEFAULT_REGISTRY) -> Path:
    return local_path(download_dir, weights_entry(detector, registry=registry))


def published_hash(path: str | Path, registry: str | Path = DEFAULT_REGISTRY) -> str | None:
    """The published SHA-256 (or prefix) of the registry's weights file named like `path`, if any."""
    source = load_registry(registry)[WEIGHTS_SOURCE]
    entry = next((f for f in source.files if f.name == Path(path).name), None)
    return (entry.sha256 or entry.sha256_prefix) if entry else None


def sha256_file(path: str | Path, block: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as f:
        while chunk := f.read(block):
            digest.update(chunk)
    return digest.hexdigest()


def verify(path: str | Path, sha256_prefix: str | None = None) -> str:
    """Full SHA-256 of `path`, checked against a published prefix (or full hash) when given."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{path}: weights file not found (run `xmr download weights`, "
                           "or set extract.weights.<detector>)")
    digest = sha256_file(path)
    if sha256_prefix and not digest.startswith(sha256_prefix):
        raise WeightsError(f"{path}: SHA-256 {digest[:16]}... does not match the published {sha256_prefix}")
    return digest
