"""RoI selection (papers/001 rule, per-class NMS, relaxation, padding) and position features."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from pipeline.detection.positions import box_positions
from pipeline.detection.selection import SelectionParams, select_rois, surviving_scores


def grid_boxes(n: int, size: float = 10.0, gap: float = 20.0) -> torch.Tensor:
    """n disjoint boxes on a row (no two overlap)."""
    x = torch.arange(n, dtype=torch.float32) * gap
    return torch.stack([x, torch.zeros(n), x + size, torch.full((n,), size)], dim=1)


def one_class(scores) -> torch.Tensor:
    return torch.tensor(scores, dtype=torch.float32)[:, None]


def run(boxes, probs, valid=None, **kw):
    valid = torch.ones(boxes.shape[0], dtype=torch.bool) if valid is None else valid
    return select_rois(boxes[None], probs[None], valid[None], SelectionParams(**kw))


def test_more_than_k_above_threshold_keeps_the_best_k_all_above():
    rng = np.random.default_rng(0)
    scores = np.concatenate([rng.uniform(0.51, 0.99, 40), rng.uniform(0.0, 0.49, 20)])
    sel = run(grid_boxes(60), one_class(scores), num_boxes=36)
    chosen = set(sel.index[0].tolist())
    assert len(chosen) == 36
    assert (sel.scores[0] > 0.5).all()
    assert chosen == set(np.argsort(-scores)[:36].tolist())
    assert int(sel.num_above[0]) == 40


def test_fewer_than_k_above_threshold_fills_with_the_best_below():
    scores = np.concatenate([np.linspace(0.9, 0.6, 10), np.linspace(0.45, 0.05, 40)])
    sel = run(grid_boxes(50), one_class(scores), num_boxes=36)
    chosen = sel.index[0].tolist()
    assert set(range(10)) <= set(chosen)  # every qualifying RoI
    assert set(chosen) == set(range(36))  # then the 26 best below the threshold
    assert int(sel.num_above[0]) == 10
    assert torch.all(sel.scores[0][:-1] >= sel.scores[0][1:])  # ranked by score


def test_per_class_nms_suppresses_within_a_class_only():
    boxes = torch.tensor([[0, 0, 10, 10], [1, 0, 11, 10], [50, 50, 60, 60]], dtype=torch.float32)  # IoU(0,1)=0.82
    same = torch.tensor([[0.9, 0.0], [0.8, 0.0], [0.7, 0.0]])
    best = surviving_scores(boxes[None], same[None], torch.ones(1, 3, dtype=torch.bool), 0.3, 0.01)[0]
    assert best.tolist() == pytest.approx([0.9, -1.0, 0.7])
    other = torch.tensor([[0.9, 0.0], [0.0, 0.8], [0.7, 0.0]])  # box 1 is another class: survives
    best = surviving_scores(boxes[None], other[None], torch.ones(1, 3, dtype=torch.bool), 0.3, 0.01)[0]
    assert best.tolist() == pytest.approx([0.9, 0.8, 0.7])
    both = torch.tensor([[0.9, 0.1], [0.8, 0.6], [0.7, 0.0]])  # suppressed in class 0, survives in class 1
    best = surviving_scores(boxes[None], both[None], torch.ones(1, 3, dtype=torch.bool), 0.3, 0.01)[0]
    assert best.tolist() == pytest.approx([0.9, 0.6, 0.7])


def test_shared_box_nms_equals_per_class_torchvision_nms():
    from torchvision.ops import nms

    rng = np.random.default_rng(3)
    B, R, C = 3, 60, 7
    xy = torch.tensor(rng.uniform(0, 100, (B, R, 2)), dtype=torch.float32)
    boxes = torch.cat([xy, xy + torch.tensor(rng.uniform(5, 40, (B, R, 2)), dtype=torch.float32)], dim=2)
    probs = torch.tensor(rng.dirichlet(np.ones(C) * 0.3, (B, R)), dtype=torch.float32)
    valid = torch.ones(B, R, dtype=torch.bool)
    valid[2, 50:] = False
    got = surviving_scores(boxes, probs, valid, 0.45, 0.05)
    want = torch.full((B, R), -1.0)
    for b in range(B):
        for c in range(C):
            idx = ((probs[b, :, c] >= 0.05) & valid[b]).nonzero().squeeze(1)
            kept = idx[nms(boxes[b, idx], probs[b, idx, c], 0.45)]
            want[b, kept] = torch.maximum(want[b, kept], probs[b, kept, c])
    assert torch.equal(got, want)


def test_suppressed_proposals_rank_after_survivors_and_class_is_argmax():
    boxes = torch.cat([torch.tensor([[0, 0, 10, 10], [1, 0, 11, 10]], dtype=torch.float32), grid_boxes(3) + 100])
    probs = torch.tensor([[0.1, 0.9], [0.2, 0.85], [0.3, 0.2], [0.25, 0.1], [0.05, 0.2]])
    sel = run(boxes, probs, num_boxes=4, nms_max=0.3)
    assert sel.index[0].tolist() == [0, 2, 3, 4]  # box 1 (0.85) is suppressed by box 0 in class 1
    assert sel.classes[0].tolist() == [1, 0, 0, 1]


def test_nms_is_relaxed_until_enough_survive():
    # 40 boxes shifted by 3 px: neighbours overlap with IoU ~0.54, so NMS at 0.3 keeps every other one.
    x = torch.arange(40, dtype=torch.float32) * 3.5
    boxes = torch.stack([x, torch.zeros(40), x + 10, torch.full((40,), 10.0)], dim=1)
    probs = one_class(np.linspace(0.95, 0.55, 40))
    strict = surviving_scores(boxes[None], probs[None], torch.ones(1, 40, dtype=torch.bool), 0.3, 0.01)
    assert int((strict >= 0).sum()) < 36
    sel = run(boxes, probs, num_boxes=36)
    assert float(sel.nms_used[0]) > 0.3
    relaxed = surviving_scores(boxes[None], probs[None], torch.ones(1, 40, dtype=torch.bool),
                               float(sel.nms_used[0]), 0.01)
    assert int((relaxed >= 0).sum()) >= 36
    assert len(set(sel.index[0].tolist())) == 36


def test_too_few_candidates_are_repeated_to_exactly_k():
    boxes, probs = grid_boxes(8), one_class(np.linspace(0.9, 0.2, 8))
    valid = torch.tensor([True] * 5 + [False] * 3)
    sel = run(boxes, probs, valid, num_boxes=36)
    idx = sel.index[0].tolist()
    assert len(idx) == 36 and set(idx) == {0, 1, 2, 3, 4}  # padding candidates never chosen
    assert idx[:5] == [0, 1, 2, 3, 4] and idx[5:10] == [0, 1, 2, 3, 4]
    assert int(sel.num_unique[0]) == 5


def test_batched_selection_equals_per_image_selection():
    rng = np.random.default_rng(1)
    per_image, stacked_b, stacked_p, stacked_v = [], [], [], []
    for n in (50, 20, 45):
        xy = torch.tensor(rng.uniform(0, 200, (n, 2)), dtype=torch.float32)
        wh = torch.tensor(rng.uniform(10, 60, (n, 2)), dtype=torch.float32)
        boxes = torch.cat([xy, xy + wh], dim=1)
        probs = torch.softmax(torch.tensor(rng.normal(0, 2, (n, 5)), dtype=torch.float32), dim=1)
        per_image.append(run(boxes, probs, num_boxes=12))
        pad = 50 - n
        stacked_b.append(torch.cat([boxes, torch.zeros(pad, 4)]))
        stacked_p.append(torch.cat([probs, torch.zeros(pad, 5)]))
        stacked_v.append(torch.arange(50) < n)
    batched = select_rois(torch.stack(stacked_b), torch.stack(stacked_p), torch.stack(stacked_v),
                          SelectionParams(num_boxes=12))
    for b, single in enumerate(per_image):
        assert batched.index[b].tolist() == single.index[0].tolist()
        assert torch.allclose(batched.scores[b], single.scores[0])


def test_selection_params_are_checked():
    with pytest.raises(ValueError, match="num_boxes"):
        SelectionParams(num_boxes=0)
    with pytest.raises(ValueError, match="nms"):
        SelectionParams(nms=0.8, nms_max=0.5)
    assert SelectionParams().levels() == pytest.approx([0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9])


def test_positions_are_normalised_box_and_area():
    boxes = np.array([[[10, 20, 30, 60], [0, 0, 100, 50]]], dtype=np.float32)
    pos = box_positions(boxes, np.array([[100, 50]]))
    assert pos.shape == (1, 2, 5) and pos.dtype == np.float32
    assert pos[0, 0] == pytest.approx([0.1, 0.4, 0.3, 1.2, 20 * 40 / 5000])
    assert pos[0, 1] == pytest.approx([0, 0, 1, 1, 1])
    with pytest.raises(ValueError, match="positive"):
        box_positions(boxes, np.array([[0, 50]]))
