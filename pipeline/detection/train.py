"""Training and evaluating the small `shapes` detector on the prepared table's ground-truth boxes.

Training is deterministic and resumable: the images of iteration `i` and the torch RNG used by the
RPN / RoI samplers derive from `(seed, i)`, and every `checkpoint_every` iterations the model,
optimiser and schedule go to a resume file, so a killed run continues where it stopped and ends
with the same weights. Quality is measured on the validation split: recall of ground-truth boxes
by detections with score >= 0.5 at IoU >= 0.5 (with and without the class), and precision.
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import torch
from torchvision.ops import box_iou
from tqdm import tqdm

from pipeline.data.table import label_names
from pipeline.detection.images import decode_image
from pipeline.detection.shapes_frcnn import ShapesDetectorConfig, build_shapes_detector, init_weights_
from pipeline.io import atomic_output
from pipeline.machine import machine_record


@dataclass(frozen=True)
class TrainSettings:
    iterations: int = 600
    batch_size: int = 8
    lr: float = 0.002
    weight_decay: float = 1e-4
    warmup: float = 0.1  # fraction of iterations with rising learning rate (one-cycle schedule)
    width: int = 24
    representation: int = 256
    proposals: int = 100
    checkpoint_every: int = 50
    eval_score: float = 0.5
    threads: int = 1  # torch CPU threads of the stage process (set by the stage); 0 keeps torch's default
    image_size: int = 0  # square input size; 0 = the table's largest image width

    def __post_init__(self):
        for name in ("iterations", "batch_size", "width", "representation", "proposals", "checkpoint_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"params: detector.{name} must be >= 1, got {getattr(self, name)}")
        if self.lr <= 0:
            raise ValueError(f"params: detector.lr must be > 0, got {self.lr}")


def load_images(table: pa.Table, rows: np.ndarray) -> list[torch.Tensor]:
    """Decoded uint8 [3, H, W] tensors of the given table rows (checked against the table's sizes)."""
    paths, widths, heights = (table.column(c).to_pylist() for c in ("file_path", "width", "height"))
    out = []
    for r in tqdm(rows, desc="detector: decoding images", unit="img", mininterval=1.0, leave=False):
        arr, _ = decode_image(paths[r], expected_size=(widths[r], heights[r]))
        out.append(torch.from_numpy(arr).permute(2, 0, 1).contiguous())
    return out


def ground_truth(table: pa.Table, rows: np.ndarray) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Boxes [n, 4] (pixels) and 1-based labels (0 is background) of the given rows."""
    boxes, labels = table.column("boxes").to_pylist(), table.column("box_labels").to_pylist()
    out_b = [torch.tensor(boxes[r], dtype=torch.float32).reshape(-1, 4) for r in rows]
    out_l = [torch.tensor(labels[r], dtype=torch.int64) + 1 for r in rows]
    return out_b, out_l


def _batch(images, boxes, labels, picks, rng) -> tuple[list, list]:
    """Float images and targets of one batch, each image flipped left-right with probability 1/2."""
    xs, targets = [], []
    for i in picks:
        x, b = images[i].float() / 255.0, boxes[i]
        if rng.random() < 0.5:
            w = x.shape[-1]
            x, b = x.flip(-1), torch.stack([w - b[:, 2], b[:, 1], w - b[:, 0], b[:, 3]], dim=1)
        xs.append(x)
        targets.append({"boxes": b, "labels": labels[i]})
    return xs, targets


@torch.no_grad()
def evaluate(model, images, boxes, labels, score: float = 0.5, iou: float = 0.5, batch_size: int = 32,
             also_scores: tuple[float, ...] = (0.05, 0.3)) -> dict:
    """Recall of ground-truth boxes (class-aware and class-agnostic) and precision of detections >= `score`;
    `recall_by_score` repeats the class-aware recall at the `also_scores` thresholds."""
    model.eval()
    thresholds = sorted({score, *also_scores})
    counts = {t: {"hit": 0, "hit_any": 0, "det": 0, "correct": 0} for t in thresholds}
    n_gt = 0
    for start in range(0, len(images), batch_size):
        outputs = model([im.float() / 255.0 for im in images[start:start + batch_size]])
        for out, gt_b, gt_l in zip(outputs, boxes[start:start + batch_size], labels[start:start + batch_size]):
            n_gt += len(gt_b)
            for t, c in counts.items():
                keep = out["scores"] >= t
                det_b, det_l = out["boxes"][keep], out["labels"][keep]
                c["det"] += len(det_b)
                if len(det_b) and len(gt_b):
                    overlap = box_iou(gt_b, det_b) >= iou
                    same = overlap & (gt_l[:, None] == det_l[None, :])
                    c["hit"] += int(same.any(1).sum())
                    c["hit_any"] += int(overlap.any(1).sum())
                    c["correct"] += int(same.any(0).sum())
    c = counts[score]
    return {"recall": c["hit"] / max(n_gt, 1), "recall_class_agnostic": c["hit_any"] / max(n_gt, 1),
            "precision": c["correct"] / max(c["det"], 1), "gt_boxes": n_gt, "detections": c["det"],
            "score_threshold": score, "iou_threshold": iou,
            "recall_by_score": {str(t): round(counts[t]["hit"] / max(n_gt, 1), 4) for t in thresholds}}


def _lr_factor(it: int, settings: TrainSettings) -> float:
    """One-cycle: linear warm-up, then cosine decay to zero."""
    warm = max(1, int(settings.warmup * settings.iterations))
    if it < warm:
        return (it + 1) / warm
    return 0.5 * (1 + math.cos(math.pi * (it - warm) / max(1, settings.iterations - warm)))


def train_shapes_detector(table: pa.Table, out_dir: str | Path, settings: TrainSettings, seed: int = 0,
                          resume_file: str | Path | None = None, progress: bool = True) -> dict:
    """Train on the `train` split, evaluate on `val` (or `train` if empty); write `out_dir` atomically.

    `out_dir` receives `model.pt` (state dict) and `config.json` (architecture, class names,
    settings, metrics). Returns the report (settings, loss history, metrics, time).
    """
    splits = np.asarray(table.column("split").to_pylist())
    train_rows = np.nonzero(splits == "train")[0]
    val_rows = np.nonzero(splits == "val")[0]
    if len(train_rows) == 0:
        raise ValueError("prepared table has no 'train' rows to train the detector on")
    if len(val_rows) == 0:
        val_rows = train_rows
    names = label_names(table)
    if not names:
        raise ValueError("prepared table has no label_names: the detector needs its classes")
    size = settings.image_size or int(max(table.column("width").to_pylist()))
    config = ShapesDetectorConfig(num_classes=len(names), image_size=size,
                                  width=settings.width, representation=settings.representation,
                                  proposals=settings.proposals)
    images = load_images(table, train_rows)
    boxes, labels = ground_truth(table, train_rows)
    torch.manual_seed(seed)
    model = init_weights_(build_shapes_detector(config))
    params = [p for p in model.parameters() if p.requires_grad]
    optimiser = torch.optim.AdamW(params, lr=settings.lr, weight_decay=settings.weight_decay)
    signature = {"settings": asdict(settings), "seed": seed, "config": config.as_dict(), "rows": len(train_rows)}
    start, history = 0, []
    resume_file = Path(resume_file) if resume_file else None
    if resume_file and resume_file.is_file():
        state = torch.load(resume_file, map_location="cpu", weights_only=False)
        if state.get("signature") == signature:
            model.load_state_dict(state["model"])
            optimiser.load_state_dict(state["optimiser"])
            start, history = state["iteration"], state["history"]
    t0 = time.perf_counter()
    model.train()
    bar = tqdm(range(start, settings.iterations), desc="detector: training", unit="it", disable=not progress,
               initial=start, total=settings.iterations, mininterval=1.0)
    running = []
    for it in bar:
        rng = np.random.default_rng([seed, it])
        torch.manual_seed(seed * 1_000_003 + it)
        for group in optimiser.param_groups:
            group["lr"] = settings.lr * _lr_factor(it, settings)
        picks = rng.choice(len(train_rows), size=min(settings.batch_size, len(train_rows)), replace=False)
        xs, targets = _batch(images, boxes, labels, picks, rng)
        losses = model(xs, targets)
        loss = sum(losses.values())
        if not torch.isfinite(loss):
            raise FloatingPointError(f"detector training diverged at iteration {it} (loss {loss.item()}); "
                                     "lower detector.lr")
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        running.append({k: v.item() for k, v in losses.items()})
        if (it + 1) % 10 == 0 or it + 1 == settings.iterations:
            mean = {k: float(np.mean([r[k] for r in running])) for k in running[0]}
            history.append({"iteration": it + 1, "loss": sum(mean.values()), **mean})
            bar.set_postfix(loss=f"{history[-1]['loss']:.3f}")
            running = []
        if resume_file and (it + 1) % settings.checkpoint_every == 0 and it + 1 < settings.iterations:
            with atomic_output(resume_file) as tmp:
                torch.save({"signature": signature, "iteration": it + 1, "history": history,
                            "model": model.state_dict(), "optimiser": optimiser.state_dict()}, tmp)
    train_seconds = time.perf_counter() - t0
    val_images = load_images(table, val_rows)
    val_boxes, val_labels = ground_truth(table, val_rows)
    metrics = evaluate(model, val_images, val_boxes, val_labels, score=settings.eval_score)
    metrics["split"] = "val" if (splits == "val").any() else "train"
    report = {"settings": asdict(settings), "seed": seed, "history": history, "metrics": metrics,
              "train_seconds_this_run": round(train_seconds, 1), "resumed_at": start}
    # the machine class decides the weights' last bits, and every feature and model downstream (pipeline/machine.py)
    save_shapes_detector(model, names, out_dir, {"settings": asdict(settings), "seed": seed, "metrics": metrics,
                                                 "machine": machine_record()})
    if resume_file:
        resume_file.unlink(missing_ok=True)
    return report


def save_shapes_detector(model, class_names: list[str], out_dir: str | Path, extra: dict | None = None) -> None:
    """Write `model.pt` (state dict) and `config.json` (architecture, class names, `extra`) atomically."""
    meta = {"detector": "shapes_frcnn", "config": model.shapes_config.as_dict(), "class_names": list(class_names)}
    with atomic_output(out_dir) as tmp:
        tmp.mkdir(parents=True)
        torch.save(model.state_dict(), tmp / "model.pt")
        (tmp / "config.json").write_text(json.dumps({**meta, **(extra or {})}, indent=2) + "\n")


def load_shapes_detector(model_dir: str | Path, **overrides):
    """The trained detector of `model_dir` (eval mode) and its class names; `overrides` change
    test-time config fields (e.g. proposals)."""
    from pipeline.detection.convert import CheckpointError

    model_dir = Path(model_dir)
    config_path, weights = model_dir / "config.json", model_dir / "model.pt"
    if not config_path.is_file() or not weights.is_file():
        raise CheckpointError(f"{model_dir}: trained shapes detector not found (run `xmr train-detector` first)")
    meta = json.loads(config_path.read_text())
    config = ShapesDetectorConfig(**{**meta["config"], **overrides,
                                     "anchor_sizes": tuple(meta["config"]["anchor_sizes"])})
    model = build_shapes_detector(config)
    try:
        model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True), strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"{weights}: keys or shapes do not match the config in {config_path} "
                              f"({' '.join(str(exc).split())[:300]})") from exc
    return model.eval(), list(meta["class_names"])
