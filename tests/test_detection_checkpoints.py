"""Reading the published bottom-up-attention files as they may exist: every layout and wrapper, every
pickle protocol 2-5, numpy arrays inside torch files, and hostile or broken files refused by name.

The fakes carry the real key names, block counts and wrappers of both published files (MILVLG's
`.pth`: `model` wrapper, BatchNorm `num_batches_tracked`, the stored `cell_anchors.0`; airsplay's
`.pkl`: `{'model': numpy arrays, '__author__': ...}`), written by the tests from the facts in
`reference.md`, independently of the reader. Where shapes do not matter (reading), the arrays are tiny.
"""
from __future__ import annotations

import _codecs
import io
import os
import pickle
from collections import OrderedDict

import numpy as np
import pytest
import torch

from pipeline.detection.butd import ButdConfig, build_butd, cell_anchors, init_random_
from pipeline.detection.convert import CheckpointError, load_butd, read_checkpoint
from pipeline.detection.rcnn_parts import ScaledMinSizeRPN
from pipeline.detection.regions import candidate_regions
from pipeline.detection.safe_pickle import UnsafePickleError, load_pickle, load_weights_file
from test_detection_convert import SMALL, foreign_layout, random_weights

FULL = (3, 4, 23)
PROTOCOLS = (2, 3, 4, 5)
ANCHORS_KEY = "proposal_generator.anchor_generator.cell_anchors.0"


def tiny_arrays(layout: str, seed: int = 0) -> dict[str, np.ndarray]:
    """Every real key of a full ResNet-101 checkpoint, each a tiny array of its real rank."""
    rng = np.random.default_rng(seed)
    return {k: rng.standard_normal(tuple(min(d, 2) for d in shape)).astype(np.float32)
            for k, shape in foreign_layout(layout, blocks=FULL, attributes=True).items()}


def milvlg_state(weights: dict, as_numpy: bool = False, anchors: bool = True) -> OrderedDict:
    """MILVLG's state dict: tensors (or numpy arrays), BN counters, and the stored Caffe cell anchors."""
    state = OrderedDict((k, v if as_numpy else torch.from_numpy(v)) for k, v in weights.items())
    state["backbone.res4.0.conv1.norm.num_batches_tracked"] = torch.tensor(0)
    state["roi_heads.res5.0.conv1.norm.num_batches_tracked"] = torch.tensor(0)
    if anchors:
        state[ANCHORS_KEY] = cell_anchors(ButdConfig(anchors="caffe"))
    return state


def same(a, b) -> bool:
    return np.array_equal(np.asarray(a), np.asarray(b))


@pytest.mark.parametrize("protocol", (0, 1) + PROTOCOLS)
def test_airsplay_pickle_reads_in_every_protocol(tmp_path, protocol):
    weights = tiny_arrays("detectron2")
    path = tmp_path / "faster_rcnn_from_caffe.pkl"
    with open(path, "wb") as f:  # numpy arrays in a plain dict, as detectron2's Caffe converter wrote it
        pickle.dump({"model": weights, "__author__": "airsplay", "matching_heuristics": True}, f, protocol=protocol)
    got = read_checkpoint(path)
    assert set(got) == set(weights) and len(got) > 300
    assert all(same(got[k], weights[k]) for k in weights)


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("as_numpy", [False, True], ids=["tensors", "numpy"])
@pytest.mark.parametrize("wrapper", ["model", "state_dict", None])
def test_milvlg_torch_file_reads_in_every_protocol_and_wrapper(tmp_path, protocol, as_numpy, wrapper):
    weights = tiny_arrays("bua")
    state = milvlg_state(weights, as_numpy=as_numpy)
    obj = {wrapper: state, "iteration": 180000} if wrapper else state
    path = tmp_path / "bua-caffe-frcn-r101-k36.pth"
    torch.save(obj, path, pickle_protocol=protocol)
    got = read_checkpoint(path)
    assert not any(k.endswith("num_batches_tracked") for k in got)
    assert set(got) == set(weights) | {ANCHORS_KEY}
    assert all(same(got[k], weights[k]) for k in weights)


def test_legacy_torch_format_reads(tmp_path):
    weights = tiny_arrays("bua")
    path = tmp_path / "old.pth"
    torch.save({"model": milvlg_state(weights)}, path, _use_new_zipfile_serialization=False)
    got = read_checkpoint(path)
    assert all(same(got[k], weights[k]) for k in weights)


class _CreatesFile:
    """Unpickling this would create `path` (open(path, 'w')): it must never happen."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


class _RunsShell:
    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (os.system, (f"touch {self.path}",))


@pytest.mark.parametrize("protocol", (0, 1) + PROTOCOLS)
@pytest.mark.parametrize("payload", [_CreatesFile, _RunsShell], ids=["open", "system"])
def test_hostile_pickle_is_refused_without_running_anything(tmp_path, protocol, payload):
    marker = tmp_path / "pwned"
    path = tmp_path / "faster_rcnn_from_caffe.pkl"
    with open(path, "wb") as f:
        pickle.dump({"model": {"backbone.stem.conv1.weight": np.zeros(2, np.float32), "x": payload(marker)}}, f,
                    protocol=protocol)
    with pytest.raises(CheckpointError, match=r"faster_rcnn_from_caffe\.pkl: not a readable checkpoint .*"
                                              r"refusing to load (builtins\.open|io\.open|posix\.system|nt\.system)"):
        load_butd(path)
    assert not marker.exists()


def test_hostile_torch_file_is_refused_without_running_anything(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "bua-caffe-frcn-r101-k36.pth"
    torch.save({"model": {"a": torch.zeros(2), "b": _CreatesFile(marker)}}, path)
    with pytest.raises(CheckpointError, match=r"bua-caffe-frcn-r101-k36\.pth: .*refusing to load (builtins|io)\.open"):
        load_butd(path)
    assert not marker.exists()


def test_allow_listed_codec_is_latin1_only():
    # A protocol-2 `bytes` is _codecs.encode(text, 'latin1'); any other codec is refused.
    class OtherCodec:
        def __reduce__(self):
            return (_codecs.encode, ("x", "zlib_codec"))

    hostile = pickle.dumps(OtherCodec(), protocol=2)
    with pytest.raises(UnsafePickleError, match="zlib_codec"):
        load_pickle(io.BytesIO(hostile))
    assert load_pickle(io.BytesIO(pickle.dumps(b"\xff\x00", protocol=2))) == b"\xff\x00"


def test_truncated_checkpoints_are_named(tmp_path):
    weights = tiny_arrays("bua")
    for name, write in (("t.pth", lambda p: torch.save({"model": milvlg_state(weights)}, p)),
                        ("t.pkl", lambda p: p.write_bytes(pickle.dumps({"model": weights}, protocol=4)))):
        path = tmp_path / name
        write(path)
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
        with pytest.raises(CheckpointError, match=rf"{name.replace('.', '[.]')}: not a readable checkpoint"):
            load_butd(path)


def test_full_milvlg_file_with_numpy_arrays_and_anchors_loads(tmp_path):
    """The real MILVLG layout at full size: `.pth`, numpy arrays inside, stored anchors, BN counters."""
    weights = random_weights(foreign_layout("bua", blocks=FULL, attributes=True), dtype=np.float16)
    path = tmp_path / "bua-caffe-frcn-r101-k36.pth"
    torch.save({"model": milvlg_state(weights, as_numpy=True)}, path)
    conv = load_butd(path)
    assert conv.layout == "bua" and conv.config.blocks == FULL and conv.config.num_attributes == 401
    assert conv.config.rpn_min_size == 16.0 and conv.config.no_attribute_index == 0
    assert conv.model.roi_heads.attribute_head.no_attribute_index == 0


def test_layout_parity_settings(tmp_path):
    path = tmp_path / "faster_rcnn_from_caffe_attr.pkl"
    with open(path, "wb") as f:
        pickle.dump({"model": random_weights(foreign_layout("detectron2", attributes=True))}, f, protocol=2)
    conv = load_butd(path, blocks=SMALL)
    # airsplay: no minimum proposal size; "no attribute" is the last of the 401 attribute classes.
    assert conv.config.rpn_min_size == 0.0 and conv.config.no_attribute_index == 400
    assert conv.model.roi_heads.attribute_head.no_attribute_index == 400
    assert isinstance(conv.model.rpn, ScaledMinSizeRPN) and not conv.model.rpn.legacy_widths


def test_rpn_minimum_size_is_16_original_pixels():
    model = init_random_(build_butd(ButdConfig(blocks=SMALL, min_size=96, max_size=400, proposals=40,
                                               pre_nms_proposals=400)))
    rpn = model.rpn
    assert rpn.min_size_for(1.5) == pytest.approx(23.0)  # 16 x 1.5 with "+1" widths
    image = torch.rand(3, 48, 64)  # resized by 2: boxes narrower than 32 - 1 px are dropped
    cand = candidate_regions(model, [image])
    boxes = cand.boxes[0][cand.valid[0]]
    widths, heights = (boxes[:, 2] - boxes[:, 0]) * 2, (boxes[:, 3] - boxes[:, 1]) * 2
    assert len(boxes) > 0 and (widths >= 31 - 1e-3).all() and (heights >= 31 - 1e-3).all()


def test_stored_anchors_must_match_the_computed_ones(tmp_path):
    weights = random_weights(foreign_layout("bua"))
    state = milvlg_state(weights)
    state[ANCHORS_KEY] = state[ANCHORS_KEY] * 2  # e.g. a config with other anchor sizes
    path = tmp_path / "bua.pth"
    torch.save({"model": state}, path)
    with pytest.raises(CheckpointError, match=r"bua\.pth: stored anchors '.*cell_anchors\.0' \[\[.*\]\] differ from "
                                              r"the caffe anchors xmr computes \[\[-38\.0, -16\.0, 53\.0, 31\.0\]"):
        load_butd(path, blocks=SMALL)


def test_other_architectures_are_named(tmp_path):
    path = tmp_path / "r50.pth"
    torch.save({"model": milvlg_state(random_weights(foreign_layout("bua")))}, path)
    with pytest.raises(CheckpointError, match=r"r50\.pth: res2/res3/res4 have \(1, 1, 2\) blocks, expected \(3, 4, 23\)"):
        load_butd(path)
    shapes = foreign_layout("bua")
    for key in ("roi_heads.box_predictor.cls_score.weight", "roi_heads.box_predictor.cls_score.bias"):
        shapes[key] = (81,) + shapes[key][1:]
    shapes["roi_heads.box_predictor.bbox_pred.weight"] = (81 * 4, 2048)
    shapes["roi_heads.box_predictor.bbox_pred.bias"] = (81 * 4,)
    torch.save({"model": milvlg_state(random_weights(shapes))}, tmp_path / "coco.pth")
    with pytest.raises(CheckpointError, match=r"coco\.pth: .*cls_score\.weight' has 81 classes, expected 1601"):
        load_butd(tmp_path / "coco.pth", blocks=SMALL)


def test_non_array_entries_are_named(tmp_path):
    path = tmp_path / "odd.pkl"
    with open(path, "wb") as f:
        pickle.dump({"model": {"backbone.stem.conv1.weight": [1.0, 2.0]}}, f, protocol=4)
    with pytest.raises(CheckpointError, match=r"odd\.pkl: entry 'backbone\.stem\.conv1\.weight' is a list"):
        load_butd(path)


def test_plain_containers_and_scalars_round_trip(tmp_path):
    obj = {"model": OrderedDict(a=np.arange(3)), "meta": (1, 2.5, "x", b"y", None, True, {3}, frozenset({4})),
           "s": np.float32(1.5)}
    for protocol in PROTOCOLS:
        path = tmp_path / f"p{protocol}.pkl"
        path.write_bytes(pickle.dumps(obj, protocol=protocol))
        got = load_weights_file(path)
        assert same(got["model"]["a"], np.arange(3)) and got["meta"] == obj["meta"] and got["s"] == np.float32(1.5)
