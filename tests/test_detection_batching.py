"""An image's regions do not depend on the batch it is extracted in (the reference extractors run one
image at a time, unpadded): the same image alone, in any batch and in any position gives the same
proposals, boxes, scores and features to float32 tolerance."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from detection_helpers import params, tiny_detector
from pipeline.detection.butd import ButdConfig, build_butd, init_random_
from pipeline.detection.detectors import LoadedDetector
from pipeline.detection.extract import describe_batch
from pipeline.detection.regions import candidate_regions
from pipeline.detection.settings import extract_settings
from pipeline.detection.train import load_shapes_detector

SIZES = [(40, 56), (56, 40), (40, 56), (32, 72)]  # (H, W); two share a size, so they are batched together


def images(seed: int = 0) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return [torch.rand(3, h, w, generator=gen) for h, w in SIZES]


def per_image(model, batch_images) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """(boxes, probs, features) of each image of one candidate_regions call."""
    cand = candidate_regions(model, batch_images)
    out = []
    for k in range(len(batch_images)):
        n = int(cand.valid[k].sum())
        out.append((cand.boxes[k, :n], cand.probs[k, :n], cand.features[k, :n]))
    return out


def assert_batch_independent(model):
    imgs = images()
    alone = [per_image(model, [im])[0] for im in imgs]
    for batch in ([0, 1, 2, 3], [3, 2, 1, 0]):
        for i, regions in zip(batch, per_image(model, [imgs[j] for j in batch])):
            for got, want in zip(regions, alone[i]):
                torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)


@pytest.fixture(scope="module")
def butd_model():
    return init_random_(build_butd(ButdConfig(blocks=(1, 1, 2), min_size=96, max_size=160, proposals=12, pool_size=4)))


def test_butd_regions_are_batch_independent(butd_model):
    assert butd_model.transform.size_divisible == 1  # no padding, as the references
    assert_batch_independent(butd_model)


def test_shapes_detector_regions_are_batch_independent(tmp_path):
    model, _ = load_shapes_detector(tiny_detector(tmp_path))
    assert_batch_independent(model)


def test_selected_rois_are_batch_independent(butd_model):
    detector = LoadedDetector("butd_r101_c4", butd_model, [f"vg_{i}" for i in range(1600)], 2048, "random", "0" * 64)
    settings = extract_settings(params(dtype="float32"), "tiny")
    imgs = [(im * 255).to(torch.uint8) for im in images(1)]
    together = describe_batch(detector, imgs, settings, torch.device("cpu"))
    for i, im in enumerate(imgs):
        alone = describe_batch(detector, [im], settings, torch.device("cpu"))
        for name in ("features", "boxes", "scores"):
            torch.testing.assert_close(torch.from_numpy(together[name][i]), torch.from_numpy(alone[name][0]),
                                       rtol=1e-4, atol=1e-5)
        assert (together["classes"][i] == alone["classes"][0]).all()


def test_extraction_defaults_to_fp32():
    """The references extract in fp32; bf16 autocast is opt-in (extract.autocast)."""
    import yaml

    from pipeline.detection.schema import EXTRACT_SCHEMA

    assert EXTRACT_SCHEMA["autocast"] is False and extract_settings(params(), "tiny").autocast is False
    with open(Path(__file__).resolve().parents[1] / "params.yaml") as f:
        assert yaml.safe_load(f)["extract"]["autocast"] is False
