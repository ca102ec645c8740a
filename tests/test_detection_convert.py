"""Checkpoint loading: randomly initialised checkpoints written in the two published key layouts.

The layouts are written here from the facts read in the peers' code (module names and shapes of
MILVLG/bottom-up-attention.pytorch and airsplay/py-bottom-up-attention), independently of the
converter, and the converted model is checked against the source tensors.
"""
from __future__ import annotations

import hashlib
import pickle

import numpy as np
import pytest
import torch

from pipeline.detection import coco_frcnn
from pipeline.detection.convert import CheckpointError, load_butd
from pipeline.detection.regions import candidate_regions
from pipeline.detection.weights import WeightsError, published_hash, verify, weights_entry

NORM = ("weight", "bias", "running_mean", "running_var")
SMALL = (1, 1, 2)  # res2..res4 blocks: the layout of ResNet-101 (3, 4, 23) with fewer blocks


def foreign_layout(layout: str, blocks=SMALL, attributes: bool = False) -> dict[str, tuple]:
    """Source key -> shape of a bottom-up-attention checkpoint (detectron2 module names)."""
    shapes = {"backbone.stem.conv1.weight": (64, 3, 7, 7)}
    shapes.update({f"backbone.stem.conv1.norm.{p}": (64,) for p in NORM})

    def block(prefix, cin, mid, cout, first):
        convs = {"conv1": (mid, cin, 1, 1), "conv2": (mid, mid, 3, 3), "conv3": (cout, mid, 1, 1)}
        if first:
            convs["shortcut"] = (cout, cin, 1, 1)
        for name, shape in convs.items():
            shapes[f"{prefix}.{name}.weight"] = shape
            shapes.update({f"{prefix}.{name}.norm.{p}": (shape[0],) for p in NORM})

    cin = 64
    for stage, n, mid in zip(("res2", "res3", "res4"), blocks, (64, 128, 256)):
        for i in range(n):
            block(f"backbone.{stage}.{i}", cin if i == 0 else mid * 4, mid, mid * 4, i == 0)
        cin = mid * 4
    for i in range(3):
        block(f"roi_heads.res5.{i}", 1024 if i == 0 else 2048, 512, 2048, i == 0)
    anchors = 12
    rpn = "proposal_generator.rpn_head"
    shapes.update({f"{rpn}.conv.weight": (512, 1024, 3, 3), f"{rpn}.conv.bias": (512,),
                   f"{rpn}.anchor_deltas.weight": (4 * anchors, 512, 1, 1), f"{rpn}.anchor_deltas.bias": (4 * anchors,)})
    logits = 2 * anchors if layout == "bua" else anchors
    shapes.update({f"{rpn}.objectness_logits.weight": (logits, 512, 1, 1), f"{rpn}.objectness_logits.bias": (logits,)})
    boxes = 1601 * 4 if layout == "bua" else 1600 * 4
    bp = "roi_heads.box_predictor"
    shapes.update({f"{bp}.cls_score.weight": (1601, 2048), f"{bp}.cls_score.bias": (1601,),
                   f"{bp}.bbox_pred.weight": (boxes, 2048), f"{bp}.bbox_pred.bias": (boxes,)})
    if attributes and layout == "bua":
        shapes.update({f"{bp}.cls_embed.weight": (1602, 256), f"{bp}.attr_linear1.weight": (512, 2304),
                       f"{bp}.attr_linear1.bias": (512,), f"{bp}.attr_linear2.weight": (401, 512),
                       f"{bp}.attr_linear2.bias": (401,)})
    if attributes and layout == "detectron2":
        shapes.update({f"{bp}.cls_embedding.weight": (1601, 256), f"{bp}.fc_attr.weight": (512, 2304),
                       f"{bp}.fc_attr.bias": (512,), f"{bp}.attr_score.weight": (401, 512),
                       f"{bp}.attr_score.bias": (401,)})
    return shapes


def random_weights(shapes: dict, seed: int = 0, dtype=np.float32) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    out = {}
    for key, shape in shapes.items():
        if key.endswith("running_var"):
            out[key] = rng.uniform(0.5, 2.0, shape).astype(dtype)
        else:
            fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else 1
            out[key] = (rng.standard_normal(shape) * (0.3 / fan_in) ** 0.5 if len(shape) > 1
                        else rng.standard_normal(shape) * 0.1).astype(dtype)
    return out


def write_checkpoint(path, layout: str, weights: dict) -> None:
    """bua: a torch file {'model': tensors}; detectron2: a pickle {'model': numpy arrays, '__author__': ...}."""
    if layout == "bua":
        torch.save({"model": {k: torch.from_numpy(v) for k, v in weights.items()}}, path)
    else:
        with open(path, "wb") as f:
            pickle.dump({"model": weights, "__author__": "test"}, f)


@pytest.fixture(scope="module")
def bua(tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / "bua-caffe-frcn-r101-k36.pth"
    weights = random_weights(foreign_layout("bua", attributes=True), seed=1)
    write_checkpoint(path, "bua", weights)
    return path, weights, load_butd(path, blocks=SMALL, min_size=96, max_size=128, proposals=6)


@pytest.fixture(scope="module")
def d2(tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / "faster_rcnn_from_caffe.pkl"
    weights = random_weights(foreign_layout("detectron2"), seed=2)
    # Buffers some detectron2 versions also save; the model rebuilds them.
    extra = {"backbone.res2.0.conv1.norm.num_batches_tracked": np.zeros((), np.int64)}
    write_checkpoint(path, "detectron2", {**weights, **extra})
    return path, weights, load_butd(path, blocks=SMALL, min_size=96, max_size=128, proposals=6)


def test_bua_layout_is_recognised_and_copied(bua):
    _, src, conv = bua
    sd = conv.model.state_dict()
    assert conv.layout == "bua" and conv.config.blocks == SMALL and conv.config.anchors == "caffe"
    assert conv.config.num_attributes == 401 and conv.config.legacy_box_coder
    assert np.array_equal(sd["backbone.res3.0.conv2.weight"].numpy(), src["backbone.res3.0.conv2.weight"])
    assert np.array_equal(sd["backbone.res4.1.bn3.running_var"].numpy(), src["backbone.res4.1.conv3.norm.running_var"])
    assert np.array_equal(sd["roi_heads.box_head.res5.0.downsample.1.bias"].numpy(),
                          src["roi_heads.res5.0.shortcut.norm.bias"])
    assert np.array_equal(sd["roi_heads.box_predictor.cls_score.weight"].numpy(), src["roi_heads.box_predictor.cls_score.weight"])
    assert np.array_equal(sd["roi_heads.attribute_head.fc.weight"].numpy(), src["roi_heads.box_predictor.attr_linear1.weight"])
    # conv1 reads RGB: its input channels are the checkpoint's BGR ones reversed.
    assert np.array_equal(sd["backbone.stem.conv1.weight"][:, 0].numpy(), src["backbone.stem.conv1.weight"][:, 2])


def test_bua_two_logit_objectness_equals_softmax(bua):
    _, src, conv = bua
    hidden = torch.randn(1, 512, 3, 5)
    w = torch.from_numpy(src["proposal_generator.rpn_head.objectness_logits.weight"])
    b = torch.from_numpy(src["proposal_generator.rpn_head.objectness_logits.bias"])
    pair = torch.nn.functional.conv2d(hidden, w, b).view(1, 2, 12, 3, 5)
    expected = torch.softmax(pair, dim=1)[:, 1]
    got = torch.sigmoid(conv.model.rpn.head.cls_logits(hidden))
    assert torch.allclose(got, expected, atol=1e-5)


def test_detectron2_layout_reorders_anchors_and_background(d2):
    _, src, conv = d2
    sd = conv.model.state_dict()
    assert conv.layout == "detectron2" and conv.config.anchors == "detectron2" and conv.config.num_attributes == 0
    logits = src["proposal_generator.rpn_head.objectness_logits.weight"]
    deltas = src["proposal_generator.rpn_head.anchor_deltas.weight"]
    cells = conv.model.rpn.anchor_generator.cell_anchors[0]
    sizes, ratios = (64, 128, 256, 512), (0.5, 1.0, 2.0)
    for s, size in enumerate(sizes):
        for r, ratio in enumerate(ratios):
            new, old = r * 4 + s, s * 3 + r  # detectron2: size-major; torchvision: ratio-major
            assert np.array_equal(sd["rpn.head.cls_logits.weight"][new].numpy(), logits[old])
            assert np.array_equal(sd["rpn.head.bbox_pred.weight"][4 * new:4 * new + 4].numpy(), deltas[4 * old:4 * old + 4])
            w, h = (cells[new, 2] - cells[new, 0]).item(), (cells[new, 3] - cells[new, 1]).item()
            assert w * h == pytest.approx(size * size, rel=1e-4) and h / w == pytest.approx(ratio, rel=1e-4)
    cls = src["roi_heads.box_predictor.cls_score.weight"]
    assert np.array_equal(sd["roi_heads.box_predictor.cls_score.weight"][0].numpy(), cls[1600])  # background first
    assert np.array_equal(sd["roi_heads.box_predictor.cls_score.weight"][1:].numpy(), cls[:1600])
    assert not sd["roi_heads.box_predictor.bbox_pred.weight"][:4].any()
    assert np.array_equal(sd["roi_heads.box_predictor.bbox_pred.weight"][4:].numpy(), src["roi_heads.box_predictor.bbox_pred.weight"])


def test_converted_models_describe_regions(bua, d2):
    images = [torch.rand(3, 90, 120), torch.rand(3, 100, 80)]
    for _, _, conv in (bua, d2):
        cand = candidate_regions(conv.model, images, min_candidates=5)
        assert cand.features.shape[0] == 2 and cand.features.shape[2] == 2048
        assert cand.probs.shape[2] == 1600 and torch.isfinite(cand.features).all()
        assert torch.allclose(cand.probs[cand.valid].sum(1) + 0, cand.probs[cand.valid].sum(1))
        assert (cand.valid.sum(1) >= 5).all()


def test_full_resnet101_checkpoint_loads(tmp_path):
    path = tmp_path / "faster_rcnn_from_caffe.pkl"
    write_checkpoint(path, "detectron2", random_weights(foreign_layout("detectron2", blocks=(3, 4, 23)), dtype=np.float16))
    conv = load_butd(path)
    assert conv.config.blocks == (3, 4, 23)
    assert sum(p.numel() for p in conv.model.parameters()) > 60_000_000


def test_missing_extra_and_misshapen_keys_are_named(tmp_path):
    shapes = foreign_layout("bua")
    weights = random_weights(shapes)
    broken = dict(weights)
    del broken["backbone.res3.0.conv2.norm.running_mean"]
    write_checkpoint(tmp_path / "a.pth", "bua", broken)
    with pytest.raises(CheckpointError, match=r"a\.pth: key 'backbone\.res3\.0\.conv2\.norm\.running_mean' missing"):
        load_butd(tmp_path / "a.pth", blocks=SMALL)
    broken = dict(weights, **{"roi_heads.extra.weight": np.zeros(3, np.float32)})
    write_checkpoint(tmp_path / "b.pth", "bua", broken)
    with pytest.raises(CheckpointError, match=r"b\.pth: unexpected key 'roi_heads\.extra\.weight'"):
        load_butd(tmp_path / "b.pth", blocks=SMALL)
    broken = dict(weights, **{"backbone.res3.0.conv2.weight": np.zeros((128, 128, 1, 1), np.float32)})
    write_checkpoint(tmp_path / "c.pth", "bua", broken)
    with pytest.raises(CheckpointError, match=r"c\.pth: 'backbone\.res3\.0\.conv2\.weight' has shape \(128, 128, 1, 1\)"):
        load_butd(tmp_path / "c.pth", blocks=SMALL)
    broken = dict(weights, **{"proposal_generator.rpn_head.objectness_logits.weight": np.zeros((5, 512, 1, 1), np.float32)})
    write_checkpoint(tmp_path / "d.pth", "bua", broken)
    with pytest.raises(CheckpointError, match=r"objectness_logits\.weight' has shape \(5, 512, 1, 1\)"):
        load_butd(tmp_path / "d.pth", blocks=SMALL)


def test_unreadable_and_unsafe_files_are_refused(tmp_path):
    (tmp_path / "junk.pth").write_bytes(b"\x00garbage" * 100)
    with pytest.raises(CheckpointError, match=r"junk\.pth: not a readable checkpoint"):
        load_butd(tmp_path / "junk.pth")
    with pytest.raises(CheckpointError, match="not found"):
        load_butd(tmp_path / "absent.pkl")

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    with open(tmp_path / "evil.pkl", "wb") as f:
        pickle.dump({"model": {"x": Evil()}}, f)
    with pytest.raises(CheckpointError, match="refusing to load builtins.print"):
        load_butd(tmp_path / "evil.pkl")


def test_coco_detector_loads_a_local_state_dict_strictly(tmp_path):
    model = coco_frcnn.build(min_size=64, max_size=96, proposals=20)
    torch.save(model.state_dict(), tmp_path / "w.pth")
    loaded = coco_frcnn.load(tmp_path / "w.pth", min_size=64, max_size=96, proposals=20)
    cand = candidate_regions(loaded, [torch.rand(3, 64, 80)], min_candidates=36)
    assert cand.features.shape[-1] == coco_frcnn.FEATURE_DIM and cand.probs.shape[-1] == len(coco_frcnn.class_names()) == 90
    state = model.state_dict()
    state.pop("roi_heads.box_predictor.cls_score.bias")
    torch.save(state, tmp_path / "bad.pth")
    with pytest.raises(CheckpointError, match=r"bad\.pth: keys or shapes do not match.*cls_score\.bias"):
        coco_frcnn.load(tmp_path / "bad.pth")


def test_weights_come_from_the_download_registry_with_torchvision_hash(tmp_path):
    from torchvision.models.detection import FasterRCNN_ResNet50_FPN_V2_Weights

    from pipeline.detection.detectors import default_weights

    entry = weights_entry("frcnn_r50_fpn_v2_coco")
    published = FasterRCNN_ResNet50_FPN_V2_Weights.COCO_V1.url  # as torchvision publishes it
    assert published in entry.urls and entry.sha256_prefix == "dd69338a" and published.endswith(entry.name)
    assert published_hash(tmp_path / entry.name) == "dd69338a"
    assert default_weights("frcnn_r50_fpn_v2_coco", "coco", download={"dir": str(tmp_path)}) == tmp_path / "weights" / entry.name
    assert default_weights("shapes_frcnn", "shapes", tmp_path / "m") == tmp_path / "m" / "shapes" / "detector"
    payload = b"pretend weights"
    (tmp_path / "w.pth").write_bytes(payload)
    assert verify(tmp_path / "w.pth", hashlib.sha256(payload).hexdigest()[:8]) == hashlib.sha256(payload).hexdigest()
    with pytest.raises(WeightsError, match=r"w\.pth: SHA-256 .* does not match the published dd69338a"):
        verify(tmp_path / "w.pth", "dd69338a")
    with pytest.raises(WeightsError, match="not found"):
        verify(tmp_path / "absent.pth")
