"""Choosing exactly `num_boxes` RoIs per image from a detector's scored proposals.

The rule of papers/001 (supplementary): keep the RoIs whose detection score is above
`score_threshold` (0.5); if fewer than `num_boxes` (36) qualify, take the top `num_boxes` by score
regardless of the threshold. As in bottom-up-attention, a proposal's detection score is its best
class score among the classes in which it survives per-class NMS (IoU `nms`, 0.3) over the
proposal boxes, and its class is its best-scoring foreground class.

With a fixed count both branches of the rule select the `num_boxes` highest-scoring survivors (when
more qualify, the best of them; when fewer, all of them plus the best of the rest), so the threshold
does not change which RoIs are chosen; `Selection.num_above` reports how many qualified.

When an image has fewer than `num_boxes` survivors, NMS is relaxed as the peers do
(airsplay/py-bottom-up-attention): the IoU threshold rises by `nms_step` up to `nms_max` until
enough survive. If still too few, proposals that survive in no class follow, ranked by their best
class score; if the image has fewer proposals than `num_boxes` at all, the chosen ones are repeated
in rank order to fill the slots (`Selection.num_unique` counts the distinct RoIs).

Class/proposal pairs scoring below `class_score_floor` take no part in NMS (with 1600 classes most
pairs are negligible); a proposal with no pair above the floor counts as a non-survivor.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

# Classes are processed in chunks so that the [images, classes, proposals] work tensors hold about
# this many elements (a memory bound; results do not depend on it).
CHUNK_ELEMENTS = 1 << 23


@dataclass(frozen=True)
class SelectionParams:
    num_boxes: int = 36
    score_threshold: float = 0.5
    nms: float = 0.3
    nms_max: float = 0.9
    nms_step: float = 0.1
    class_score_floor: float = 0.01

    def __post_init__(self):
        if self.num_boxes < 1:
            raise ValueError(f"selection: num_boxes must be >= 1, got {self.num_boxes}")
        if not 0.0 < self.nms <= self.nms_max <= 1.0:
            raise ValueError(f"selection: need 0 < nms <= nms_max <= 1, got nms={self.nms}, nms_max={self.nms_max}")
        if self.nms_step <= 0:
            raise ValueError(f"selection: nms_step must be > 0, got {self.nms_step}")
        if not 0.0 <= self.class_score_floor < 1.0:
            raise ValueError(f"selection: class_score_floor must be in [0, 1), got {self.class_score_floor}")

    def levels(self) -> list[float]:
        """The NMS IoU thresholds tried in order: nms, nms + step, ..., nms_max."""
        out, t = [], self.nms
        while t < self.nms_max - 1e-9:
            out.append(round(t, 6))
            t += self.nms_step
        out.append(self.nms_max)
        return out

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class Selection:
    """Per image: `index [B, K]` into the candidates, their `scores`, `classes` (0-based foreground),
    `num_above [B]` survivors above the threshold, `nms_used [B]`, `num_unique [B]` distinct RoIs."""

    index: torch.Tensor
    scores: torch.Tensor
    classes: torch.Tensor
    num_above: torch.Tensor
    nms_used: torch.Tensor
    num_unique: torch.Tensor


def pairwise_iou(boxes: torch.Tensor) -> torch.Tensor:
    """IoU of every pair of boxes of each image: [B, R, 4] -> [B, R, R]."""
    area = (boxes[..., 2] - boxes[..., 0]).clamp(min=0) * (boxes[..., 3] - boxes[..., 1]).clamp(min=0)
    lt = torch.maximum(boxes[:, :, None, :2], boxes[:, None, :, :2])
    rb = torch.minimum(boxes[:, :, None, 2:], boxes[:, None, :, 2:])
    inter = (rb - lt).clamp(min=0).prod(dim=-1)
    union = area[:, :, None] + area[:, None, :] - inter
    return torch.where(union > 0, inter / union.clamp(min=1e-12), torch.zeros_like(inter))


def surviving_scores(boxes: torch.Tensor, probs: torch.Tensor, valid: torch.Tensor,
                     iou: float, floor: float) -> torch.Tensor:
    """Per proposal, the best class score among the classes where it survives per-class NMS.

    boxes [B, R, 4], probs [B, R, C] (foreground classes), valid [B, R]; returns [B, R] with -1
    where the proposal survives in no class. All classes share the proposal boxes, so the overlap
    matrix of each image is computed once; greedy NMS then walks the ranks of every (image, class)
    list in step, vectorised over images and classes (exact greedy NMS, ties by proposal order).
    """
    B, R, C = probs.shape
    best = torch.full((B, R), -1.0, dtype=torch.float32, device=probs.device)
    cand = (probs >= floor) & valid[..., None]
    active = cand.flatten(0, 1).any(0).nonzero().squeeze(1)
    if B == 0 or active.numel() == 0:
        return best
    overlap = pairwise_iou(boxes.float()) > iou  # [B, R, R]
    rows = torch.arange(B, device=probs.device)[:, None]
    per_chunk = max(1, CHUNK_ELEMENTS // (B * R))
    for classes in active.split(per_chunk):
        c_cand = cand[..., classes].transpose(1, 2)  # [B, Cc, R]
        scores = probs[..., classes].float().transpose(1, 2).masked_fill(~c_cand, -1.0)
        order = scores.argsort(dim=2, descending=True, stable=True)
        n_cand = c_cand.sum(2)
        steps = int(n_cand.max())
        suppressed = torch.zeros_like(c_cand)
        kept = torch.zeros(c_cand.shape[:2] + (steps,), dtype=torch.bool, device=probs.device)
        for k in range(steps):
            i = order[:, :, k]
            alive = (k < n_cand) & ~suppressed.gather(2, i[..., None]).squeeze(2)
            kept[:, :, k] = alive
            suppressed |= overlap[rows, i] & alive[..., None]
        index = order[:, :, :steps]
        values = torch.where(kept, scores.gather(2, index), torch.full_like(kept, -1.0, dtype=torch.float32))
        best.scatter_reduce_(1, index.flatten(1), values.flatten(1), reduce="amax", include_self=True)
    return best


def select_rois(boxes: torch.Tensor, probs: torch.Tensor, valid: torch.Tensor,
                params: SelectionParams) -> Selection:
    """Apply the fixed-count RoI rule to padded candidates (boxes [B,R,4], probs [B,R,C], valid [B,R])."""
    if probs.dim() != 3 or boxes.shape[:2] != probs.shape[:2] or valid.shape != probs.shape[:2]:
        raise ValueError(f"select_rois: shapes disagree: boxes {tuple(boxes.shape)}, probs {tuple(probs.shape)}, "
                         f"valid {tuple(valid.shape)}")
    B, R, _ = probs.shape
    K = params.num_boxes
    n_valid = valid.sum(1)
    if B and int(n_valid.min()) == 0:
        raise ValueError("select_rois: an image has no candidate region at all")
    probs = probs.float()
    levels = params.levels()
    best = surviving_scores(boxes, probs, valid, levels[0], params.class_score_floor)
    nms_used = torch.full((B,), levels[0], dtype=torch.float32, device=probs.device)
    for level in levels[1:]:
        short = ((best >= 0).sum(1) < K).nonzero(as_tuple=True)[0]
        if short.numel() == 0:
            break
        best[short] = surviving_scores(boxes[short], probs[short], valid[short], level, params.class_score_floor)
        nms_used[short] = level
    raw_best, classes = probs.max(dim=2)
    survived = best >= 0
    # Ranking key: survivors by surviving score, then non-survivors by raw score, then padding.
    key = torch.where(survived, best, raw_best - 2.0)
    key = torch.where(valid, key, torch.full_like(key, float("-inf")))
    if R < K:
        key = torch.cat([key, key.new_full((B, K - R), float("-inf"))], dim=1)
    order = key.topk(K, dim=1).indices  # valid candidates rank first
    slot = torch.arange(K, device=probs.device)[None, :]
    n_unique = torch.minimum(n_valid, torch.tensor(K, device=n_valid.device))
    index = order.gather(1, slot % n_unique[:, None])  # repeat the chosen ones when too few exist
    score_of = torch.where(survived, best, raw_best)
    return Selection(
        index=index,
        scores=score_of.gather(1, index),
        classes=classes.gather(1, index),
        num_above=(best > params.score_threshold).sum(1),
        nms_used=nms_used,
        num_unique=n_unique,
    )
