"""Pairwise scoring of a split in blocks: equal to the one-shot matrix, resumable after a kill, and
never mixing blocks of another model or split (pipeline/training/partial_scores.py)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from pipeline.contract.batches import DataInfo
from pipeline.contract.method import RetrievalMethod
from pipeline.training import scoring
from pipeline.training.partial_scores import PartialScores, ProgressLines, discard


class Killed(RuntimeError):
    """Stands for the process being killed in the middle of scoring."""


class Bilinear(RetrievalMethod):
    """A pairwise method with its own `similarity` that counts its calls and can die after some."""

    def __init__(self, die_after: int | None = None):
        super().__init__("bilinear", {}, DataInfo(feature_dim=3, num_regions=1, num_detector_classes=1, vocab_size=2, word_dim=3,
                                                    num_labels=0))
        self.weight = torch.nn.Parameter(torch.randn(3, 3, generator=torch.Generator().manual_seed(0)))
        self.calls, self.die_after = 0, die_after

    def similarity(self, image_repr, text_repr):
        if self.die_after is not None and self.calls >= self.die_after:
            raise Killed
        self.calls += 1
        return image_repr @ self.weight @ text_repr.T


@pytest.fixture
def small_blocks(monkeypatch):
    monkeypatch.setattr(scoring, "DENSE_IMAGE_CHUNK", 2)  # 7 images: blocks at rows 0, 2, 4, 6


def _reps(seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(7, 3, generator=g), torch.randn(11, 3, generator=g)


def test_blocks_equal_the_one_shot_matrix(small_blocks, tmp_path):
    images, texts = _reps()
    method = Bilinear()
    whole = method.similarity(images, texts)
    blocked = scoring.score_source(method, images, texts, 7, 11, partial=PartialScores(tmp_path, {"m": 1}))
    assert torch.equal(blocked, whole.float())
    assert method.calls == 1 + 4


def test_a_killed_run_resumes_from_its_finished_blocks(small_blocks, tmp_path):
    images, texts = _reps()
    reference = scoring.score_source(Bilinear(), images, texts, 7, 11)
    dying = Bilinear(die_after=3)
    with pytest.raises(Killed):
        scoring.score_source(dying, images, texts, 7, 11, partial=PartialScores(tmp_path, {"m": 1}))
    assert sorted(p.name for p in tmp_path.glob("rows-*.npy")) == ["rows-0.npy", "rows-2.npy", "rows-4.npy"]
    resumed = Bilinear()
    again = scoring.score_source(resumed, images, texts, 7, 11, partial=PartialScores(tmp_path, {"m": 1}))
    assert resumed.calls == 1  # only the block at row 6 was left
    assert torch.equal(again, reference)
    discard(tmp_path)
    assert not tmp_path.exists()


def test_blocks_of_another_key_or_shape_are_not_used(small_blocks, tmp_path):
    images, texts = _reps()
    scoring.score_source(Bilinear(), images, texts, 7, 11, partial=PartialScores(tmp_path, {"m": 1}))
    other_model = Bilinear()
    scoring.score_source(other_model, images, texts, 7, 11, partial=PartialScores(tmp_path, {"m": 2}))
    assert other_model.calls == 4  # the other key's blocks were discarded
    np.save(tmp_path / "rows-2.npy", np.zeros((2, 5), dtype=np.float32))    # wrong shape
    (tmp_path / "rows-4.npy").write_bytes(b"not a numpy file")             # damaged
    same = Bilinear()
    out = scoring.score_source(same, images, texts, 7, 11, partial=PartialScores(tmp_path, {"m": 2}))
    assert same.calls == 2
    assert torch.equal(out, scoring.score_source(Bilinear(), images, texts, 7, 11))


def test_progress_lines_say_what_is_left(capsys, monkeypatch):
    clock = iter([0.0, 120.0, 150.0, 240.0])
    monkeypatch.setattr("pipeline.training.partial_scores.time.monotonic", lambda: next(clock))
    lines = ProgressLines("scoring", total=4, every=60.0)
    lines.update(1, 1)   # t=120 s: one block computed, three left
    lines.update(2, 2)   # t=150 s: less than a minute since the last line
    lines.update(4, 4)   # done: no line
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["scoring: 1/4 blocks, 2.0 min elapsed, about 6.0 min left"]


def test_evaluate_stage_resumes_a_killed_scoring_and_cleans_up(tmp_path, monkeypatch):
    """`xmr evaluate` of a pairwise method killed mid-scoring: the rerun computes only the missing blocks,
    gives the metrics of an uninterrupted run, and leaves no blocks behind."""
    import json

    import yaml
    from typer.testing import CliRunner

    from pipeline.models.scan import SCAN
    from pipeline.training.data import RetrievalData
    from retrieval_fixtures import make_dataset
    from stages.cli import app

    params = {"datasets": ["synth"], "data": {"synth": {"kind": "shapes"}}, "lambda": 0.1,
              "train": {"batch_size": 16, "lr": 3e-3, "epochs": 1, "device": "cpu", "threads": 1},
              "methods": {"scan_t2i": {"d_model": 16}}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    monkeypatch.setattr(RetrievalData, "open", staticmethod(lambda data_dir, dataset, **kw:
                                                            RetrievalData(*make_dataset(), **kw)))
    monkeypatch.chdir(tmp_path)
    torch.set_num_threads(1)

    def xmr(*args):
        return CliRunner().invoke(app, [*args, "--no-progress"])

    assert xmr("train", "synth", "scan_t2i").exit_code == 0
    monkeypatch.setattr(scoring, "DENSE_IMAGE_CHUNK", 4)  # 20 test images: 5 blocks
    calls = []
    similarity = SCAN.similarity

    def dying(self, images, texts):
        if len(calls) == 3:
            raise Killed
        calls.append(1)
        return similarity(self, images, texts)

    monkeypatch.setattr(SCAN, "similarity", dying)
    assert isinstance(xmr("evaluate", "synth", "scan_t2i").exception, Killed)
    partial = tmp_path / "reports" / ".partial" / "synth" / "scan_t2i"
    assert len(list(partial.glob("rows-*.npy"))) == 3
    assert not (tmp_path / "reports" / "metrics" / "synth" / "scan_t2i.json").exists()

    calls.clear()
    monkeypatch.setattr(SCAN, "similarity", lambda self, i, t: (calls.append(1), similarity(self, i, t))[1])
    assert xmr("evaluate", "synth", "scan_t2i").exit_code == 0
    assert len(calls) == 2 and not partial.exists()
    resumed = json.loads((tmp_path / "reports" / "metrics" / "synth" / "scan_t2i.json").read_text())
    calls.clear()
    assert xmr("evaluate", "synth", "scan_t2i").exit_code == 0
    assert len(calls) == 5
    assert json.loads((tmp_path / "reports" / "metrics" / "synth" / "scan_t2i.json").read_text()) == resumed
