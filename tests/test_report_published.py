"""The transcribed published numbers: internal consistency checks that catch transcription slips."""
from __future__ import annotations

import pytest

from pipeline.reporting.published import (F1_TABLE, NDCG_AVE_MISPRINTS, NDCG_TABLE1, RECALL_ROW, RECALL_ROWS,
                                          TABLE1_DATASETS, TABLE1_ROW, F1_ROW)


def test_table1_shape_and_reference_spot_checks():
    assert len(NDCG_TABLE1) == 15 and all(set(r) == set(TABLE1_DATASETS) for r in NDCG_TABLE1.values())
    # the values ../shared/notes/reference.md quotes
    assert NDCG_TABLE1["Ours"] == {"FLICKR25K": (66.3, 71.3, 68.8), "NUS-WIDE": (75.2, 75.3, 75.3),
                                   "COCO1K": (77.2, 90.0, 83.6), "COCO5K": (72.1, 82.7, 77.4)}
    assert NDCG_TABLE1["DSCMR"]["COCO1K"] == (74.5, 85.6, 80.1)
    assert NDCG_TABLE1["CCA"]["NUS-WIDE"] == (51.3, 50.5, 50.9)
    assert NDCG_TABLE1["SCML"]["COCO1K"] == (None, None, None)


def test_table1_ave_is_the_mean_except_the_known_misprints():
    off = {(row, d) for row, cells in NDCG_TABLE1.items() for d, (a, b, ave) in cells.items()
           if a is not None and abs((a + b) / 2 - ave) > 0.1 + 1e-9}
    assert off == set(NDCG_AVE_MISPRINTS)


def test_f1_table():
    assert list(F1_TABLE) == ["Independent", "DSCMR", "Ours+Con", "Ours"]
    assert F1_TABLE["Ours"]["FLICKR25K"] == (0.690, 0.556)
    assert F1_TABLE["DSCMR"]["COCO5K"] == (0.538, 0.538)
    assert all(0 < v < 1 for row in F1_TABLE.values() for cell in row.values() for v in cell)


def test_recall_rows_are_monotone_in_k():
    for row in RECALL_ROWS:
        for direction in ("i2t", "t2i"):
            recalls = [v for v in row[direction][:3] if v is not None]
            assert recalls == sorted(recalls), (row["method"], row["dataset"], direction)
            assert all(0 < v <= 100 for v in recalls)


def test_method_mappings_point_at_existing_rows():
    assert set(TABLE1_ROW.values()) == set(NDCG_TABLE1)
    assert set(F1_ROW.values()) == set(F1_TABLE)
    published = {(r["source"], r["method"]) for r in RECALL_ROWS}
    for method, key in RECALL_ROW.items():
        assert key in published, method


@pytest.mark.parametrize("dataset,source,method,i2t_r1", [
    ("COCO1K", "002", "Ours", 73.0), ("Flickr30k", "002", "Ours", 68.5), ("Flickr8k", "002", "Ours", 53.7),
    ("COCO5K", "003", "Ours (ResNet-50) Stage II", 41.2), ("Flickr30k", "003", "Ours (ResNet-152) Stage II", 55.6),
])
def test_recall_spot_checks(dataset, source, method, i2t_r1):
    rows = [r for r in RECALL_ROWS if (r["dataset"], r["source"], r["method"]) == (dataset, source, method)]
    assert len(rows) == 1 and rows[0]["i2t"][0] == i2t_r1
