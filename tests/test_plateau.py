"""The stopping rule (issue 27): one definition of "still improving" for the loop's early stopping and the
report's convergence flags; the loop stops on a flat validation curve whatever selects its model."""
from __future__ import annotations

import json
import random

import pytest

from pipeline.reporting.convergence import CONVERGED, RISING, convergence
from pipeline.training.plateau import improves, step, stop_epoch, tolerance


def curve(values, key="val_ndcg_ave"):
    return [{"epoch": i + 1, "loss": 1.0 / (i + 1), key: v} for i, v in enumerate(values)]


def test_tolerance_is_a_share_of_the_metric_range():
    assert tolerance("val_ndcg_ave") == pytest.approx(0.2) and tolerance("val_map_ave") == pytest.approx(0.2)
    assert tolerance("val_rsum") == pytest.approx(1.2)


@pytest.mark.parametrize("value, best, expected", [
    (70.3, 70.0, True),       # beyond the tolerance
    (70.2, 70.0, False),      # exactly the tolerance: a tie, not an improvement
    (70.0, 70.0, False),
    (65.0, 70.0, False),
    (-5.0, float("-inf"), True),   # the first epoch always improves
])
def test_improves(value, best, expected):
    assert improves(value, best, 0.2) is expected


def test_the_best_is_the_running_maximum():
    # a small gain raises the best without resetting the count: a curve creeping up by 0.15 an epoch is flat
    best, flat = step(70.0, 0, 70.15, 0.2)
    assert (best, flat) == (70.15, 1)
    assert stop_epoch([70.0, 70.15, 70.3, 70.45], 0.2, patience=3) == 4
    # 70.15 + 0.2 < 70.4 counts as an improvement against the running best (70.15), so the count restarts
    assert stop_epoch([70.0, 70.15, 70.4, 70.4, 70.4], 0.2, patience=2) == 5


@pytest.mark.parametrize("values, patience, start, expected", [
    ([60, 70, 75, 80], 2, 0, None),            # improving throughout: trains to the cap
    ([60, 70, 70, 70, 90], 2, 0, 4),           # two flat epochs in a row
    ([60, 70, 70, 80, 80, 80], 2, 0, 6),       # an improvement resets the count
    ([60, 60, 60, 60], 0, 0, None),            # patience 0: never
    ([60, 60, 60, 60, 60], 2, 3, 5),           # the first 3 epochs (a first stage) are never counted
    ([60, 50, 50, 50], 1, 0, 2),
])
def test_patience_counts_flat_epochs_in_a_row(values, patience, start, expected):
    assert stop_epoch(values, 0.2, patience, start) == expected


def test_a_run_stopped_by_patience_is_converged_in_the_report_and_one_at_its_cap_rising_only_if_it_gained():
    rng = random.Random(0)
    for _ in range(300):
        n, patience = rng.randint(2, 12), rng.randint(1, 3)
        values = [round(rng.uniform(40, 60) + 2 * rng.random() * i, 1) for i in range(n)]
        stop = stop_epoch(values, tolerance("val_ndcg_ave"), patience)
        ran = values[:stop or n]
        if len(ran) < 2:
            continue
        status = convergence("ss", curve(ran)).status
        if stop is not None:
            assert status == CONVERGED, (values, patience)
        else:  # trained to its cap: rising exactly when the last epoch improved the curve
            last_improved = improves(ran[-1], max(ran[:-1]), tolerance("val_ndcg_ave"))
            assert status == (RISING if last_improved else CONVERGED)


# --- the loop -----------------------------------------------------------------------------------------

torch = pytest.importorskip("torch")

from pipeline.training.checkpoint import load_state  # noqa: E402
from pipeline.training.data import RetrievalData  # noqa: E402
from pipeline.training.loop import train_method  # noqa: E402
from retrieval_fixtures import make_dataset, small_params  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def data():
    return RetrievalData(*make_dataset(), cache_splits=("train", "val"))


def quiet(_msg):
    pass


def flat_params(epochs=8, patience=2):
    """`ss` on its official recipe (the model selected on the training loss), with a learning rate so small
    that its validation NDCG cannot move by the tolerance: a flat validation curve."""
    return small_params(epochs=epochs, patience=patience, lr=1e-9)


def test_the_loop_stops_on_a_flat_validation_curve_when_selecting_on_training_loss(data, tmp_path):
    messages = []
    result = train_method("ss", flat_params(), data, tmp_path / "m", tmp_path / "h.json", dataset="synthetic",
                          progress=False, log=messages.append)
    assert result.select_key == "train_loss"
    assert result.stopped_early and result.epochs_done == 3        # epoch 1 improves, 2 and 3 are flat
    history = json.loads((tmp_path / "h.json").read_text())
    assert len(history) == 3 and all(e["validate_seconds"] <= e["seconds"] for e in history)
    assert convergence("ss", history).status == CONVERGED          # the report agrees with the loop
    assert any("stopped after epoch 3" in m and "val_ndcg_ave" in m for m in messages)


def test_the_loop_trains_to_its_cap_while_the_curve_improves_and_the_report_says_so(data, tmp_path):
    params = small_params(epochs=2, patience=1)
    params["methods"]["ss"]["train"]["select_metric"] = "ndcg_ave"
    result = train_method("ss", params, data, tmp_path / "m", tmp_path / "h.json", dataset="synthetic",
                          progress=False, log=quiet)
    history = json.loads((tmp_path / "h.json").read_text())
    values = [e["val_ndcg_ave"] for e in history]
    stopped = stop_epoch(values, tolerance("val_ndcg_ave"), 1)
    assert result.stopped_early == (stopped is not None) and result.epochs_done == (stopped or 2)
    if not result.stopped_early:
        assert convergence("ss", history).status == (RISING if values[1] > values[0] + 0.2 else CONVERGED)


def test_resume_in_the_middle_of_a_plateau_stops_where_an_uninterrupted_run_does(data, tmp_path):
    params = flat_params()
    whole = train_method("ss", params, data, tmp_path / "a", tmp_path / "a.json", dataset="synthetic",
                         progress=False, log=quiet)

    def crash(epoch, step):
        if epoch == 2 and step == 1:       # in epoch 3, after one flat epoch (epoch 2)
            raise KeyboardInterrupt("simulated kill")

    with pytest.raises(KeyboardInterrupt):
        train_method("ss", params, data, tmp_path / "b", tmp_path / "b.json", dataset="synthetic",
                     progress=False, step_hook=crash, log=quiet)
    saved = load_state(tmp_path / "b" / "last.pt")
    assert saved["epoch"] == 2 and saved["flat_epochs"] == 1
    resumed = train_method("ss", params, data, tmp_path / "b", tmp_path / "b.json", dataset="synthetic",
                           progress=False, log=quiet)
    assert resumed.resumed_at == 2 and resumed.stopped_early and resumed.epochs_done == whole.epochs_done == 3
    a, b = load_state(tmp_path / "a" / "last.pt"), load_state(tmp_path / "b" / "last.pt")
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    drop = ("seconds", "validate_seconds")
    assert ([{k: v for k, v in e.items() if k not in drop} for e in json.loads((tmp_path / "a.json").read_text())]
            == [{k: v for k, v in e.items() if k not in drop} for e in json.loads((tmp_path / "b.json").read_text())])
    # a stopped run is not continued by a higher cap: the rule still stops it
    more = train_method("ss", flat_params(epochs=10), data, tmp_path / "b", tmp_path / "b.json",
                        dataset="synthetic", progress=False, log=quiet)
    assert more.resumed_at == 3 and more.epochs_done == 3
