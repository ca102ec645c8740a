"""Training the shapes detector: it learns, a killed run resumes to the same weights, metrics are right."""
from __future__ import annotations

import json

import pytest
import torch

import pipeline.detection.train as train_mod
from detection_helpers import shapes_table
from pipeline.data.table import read_table
from pipeline.detection.train import TrainSettings, evaluate, load_shapes_detector, train_shapes_detector
from pipeline.machine import machine_record

SETTINGS = TrainSettings(iterations=12, batch_size=2, lr=0.004, warmup=0.0, width=8, representation=32,
                         proposals=50, checkpoint_every=4)


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    return read_table(shapes_table(tmp_path_factory.mktemp("t"), 8))


def test_training_learns_and_resumes_to_identical_weights(table, tmp_path, monkeypatch):
    ref = train_shapes_detector(table, tmp_path / "ref", SETTINGS, seed=3, progress=False)
    losses = [h["loss"] for h in ref["history"]]
    assert losses[-1] < 0.95 * losses[0]  # the loss falls (recall on real data: reports/detector)
    meta = json.loads((tmp_path / "ref" / "config.json").read_text())
    assert meta["class_names"][0] == "red circle" and meta["metrics"]["split"] == "val"
    assert meta["machine"] == machine_record()  # the machine class that trained the weights

    real = train_mod._lr_factor

    def crash_at_10(it, settings):
        if it == 10:
            raise KeyboardInterrupt
        return real(it, settings)

    resume = tmp_path / ".detector.resume.pt"
    monkeypatch.setattr(train_mod, "_lr_factor", crash_at_10)
    with pytest.raises(KeyboardInterrupt):
        train_shapes_detector(table, tmp_path / "run", SETTINGS, seed=3, resume_file=resume, progress=False)
    assert resume.is_file() and not (tmp_path / "run").exists()
    monkeypatch.setattr(train_mod, "_lr_factor", real)
    again = train_shapes_detector(table, tmp_path / "run", SETTINGS, seed=3, resume_file=resume, progress=False)
    assert again["resumed_at"] == 8 and not resume.exists()
    a, _ = load_shapes_detector(tmp_path / "ref")
    b, names = load_shapes_detector(tmp_path / "run")
    assert len(names) == 24
    for (k, va), vb in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(va, vb), k


class FixedDetections(torch.nn.Module):
    """Stands in for a detector: returns the given detections."""

    def __init__(self, outputs):
        super().__init__()
        self.outputs = outputs

    def forward(self, images):
        return self.outputs[: len(images)]


def test_recall_and_precision_are_counted_per_box():
    gt_boxes = [torch.tensor([[0.0, 0, 10, 10], [20, 20, 40, 40]]), torch.tensor([[5.0, 5, 25, 25]])]
    gt_labels = [torch.tensor([1, 2]), torch.tensor([3])]
    outputs = [
        {"boxes": torch.tensor([[0.0, 0, 10, 11], [20, 20, 40, 40], [50, 50, 60, 60]]),
         "labels": torch.tensor([1, 5, 1]), "scores": torch.tensor([0.9, 0.8, 0.7])},
        {"boxes": torch.tensor([[5.0, 5, 25, 25]]), "labels": torch.tensor([3]), "scores": torch.tensor([0.3])},
    ]
    images = [torch.zeros(3, 64, 64, dtype=torch.uint8)] * 2
    m = evaluate(FixedDetections(outputs), images, gt_boxes, gt_labels, score=0.5)
    assert m["recall"] == pytest.approx(1 / 3)  # right class and place: only the first box
    assert m["recall_class_agnostic"] == pytest.approx(2 / 3)  # the 0.3-score detection is below the bar
    assert m["precision"] == pytest.approx(1 / 3) and m["detections"] == 3 and m["gt_boxes"] == 3
    low = evaluate(FixedDetections(outputs), images, gt_boxes, gt_labels, score=0.25)
    assert low["recall"] == pytest.approx(2 / 3)
    assert m["recall_by_score"] == {"0.05": pytest.approx(2 / 3, abs=1e-4), "0.3": pytest.approx(2 / 3, abs=1e-4),
                                    "0.5": pytest.approx(1 / 3, abs=1e-4)}


def test_training_refuses_tables_without_training_rows(table, tmp_path):
    only_val = table.filter(torch.tensor([s == "val" for s in table.column("split").to_pylist()]).numpy())
    with pytest.raises(ValueError, match="no 'train' rows"):
        train_shapes_detector(only_val, tmp_path / "x", SETTINGS, progress=False)
    with pytest.raises(ValueError, match="detector.iterations"):
        TrainSettings(iterations=0)
