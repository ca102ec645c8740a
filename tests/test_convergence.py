"""Convergence flags (issue 14 item 5): statuses of synthetic validation curves, and the report's mark."""
from __future__ import annotations

import pytest

from pipeline.reporting.convergence import (CLOSED_FORM, CONVERGED, ONE_EPOCH, RISING, convergence,
                                            selection_metric)
from pipeline.reporting.report import build_report
from test_report_build import cells, recall_metrics, reports, write  # noqa: F401 (fixture)


def curve(values, key="val_ndcg_ave"):
    return [{"epoch": i + 1, "loss": 1.0 / (i + 1), key: v} for i, v in enumerate(values)]


@pytest.mark.parametrize("values, status, selected, gain", [
    ([60.0, 70.0, 75.0], RISING, 3, 5.0),            # climbing at the last epoch
    ([60.0, 70.0, 70.1], CONVERGED, 3, 0.1),         # a last gain within the tolerance (0.2 points)
    ([60.0, 70.0, 70.0], CONVERGED, 2, 0.0),         # flat: the first of tied epochs is the one selected
    ([60.0, 75.0, 70.0], CONVERGED, 2, -5.0),        # falling: peaked earlier
    ([80.0, 70.0, 80.3], RISING, 3, 0.3),            # back above the best earlier epoch by more than 0.2
])
def test_status_of_curves(values, status, selected, gain):
    c = convergence("ss", curve(values))
    assert (c.status, c.best_epoch, c.epochs, c.metric) == (status, selected, len(values), "val_ndcg_ave")
    assert c.last_gain == pytest.approx(gain) and c.best == max(values)


def test_one_epoch_and_closed_form():
    assert convergence("scan_i2t", curve([120.0], "val_rsum")).status == ONE_EPOCH
    fit = [{"epoch": 1, "loss": 0.2, "fit_pairs": 800, "val_ndcg_ave": 61.5, "seconds": 0.3}]
    c = convergence("cca", fit)
    assert c.status == CLOSED_FORM and c.best_epoch is None and c.last_gain is None


def test_instance_level_methods_are_judged_on_rsum_with_its_range():
    history = [{"epoch": e, "val_ndcg_ave": 50.0 + 10 * e, "val_rsum": r} for e, r in ((1, 100.0), (2, 101.0))]
    assert selection_metric("dual_path", history) == "val_rsum"
    c = convergence("dual_path", history)   # NDCG climbs 10 points, but rsum gains 1.0 < 1.2 (0.2% of 600)
    assert c.status == CONVERGED and c.tolerance == pytest.approx(1.2)
    assert convergence("dual_path", history, select_metric="ndcg_ave").status == RISING
    assert selection_metric("ss", [{"val_rsum": 1.0}]) == "val_rsum"   # no NDCG in the history: rsum


def test_report_marks_rising_methods_and_lists_every_status(reports, tmp_path):  # noqa: F811
    write(reports / "training/shapes/ss.json", curve([60.0, 70.0, 75.0]))           # still rising
    write(reports / "training/shapes/novel.json", curve([60.0, 70.0, 69.0]))        # converged
    write(reports / "metrics/shapes/dual_path_stage1.json", {"protocol": "all", **recall_metrics(30.0)})
    summary = build_report(reports, tmp_path / "data", current_lambda=0.1)
    text = (reports / "results.md").read_text()
    assert summary["still_rising"] == ["ss"]
    assert "## Convergence on shapes" in text and "Still rising: `ss`." in text
    section = text.split("## Convergence on shapes")[1].split("\n## ")[0]
    assert cells(section, "`ss` |") == ["`ss`", "still rising", "ndcg_ave", "3", "3", "75.00", "+5.00"]
    assert cells(section, "`novel` |")[1:4] == ["converged", "ndcg_ave", "3"]
    assert "Ours (`ss`, official ↗)" not in text and "Ours (`ss` ↗)" in text     # ss has no recipe here
    assert "| shapes | `ss` ↗ |" in text and "| shapes | `novel` |" in text
    assert "`dual_path_stage1` Stage I (cf. 003 'Ours (ResNet-50) Stage I')" in text


def test_mark_follows_the_recipe(reports, tmp_path):  # noqa: F811
    write(reports / "training/flickr30k/scan_consistency.json", curve([100.0, 150.0], "val_rsum"))
    build_report(reports, tmp_path / "data", current_lambda=0.1, recipes={"scan_consistency": "official"})
    text = (reports / "results.md").read_text()
    assert "`scan_consistency`, official ↗ (cf. 002 'Ours')" in text
