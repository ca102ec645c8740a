"""Markdown tables of the report: our metrics beside the published ones.

Cells that compare read `ours / published`; `–` marks a value that does not exist (not run here,
or not reported by the paper). Our values carry their 95% bootstrap interval as `value [low, high]`
when the record has one (`pipeline.reporting.intervals`).
"""
from __future__ import annotations

from dataclasses import dataclass, replace

from pipeline.reporting.collect import MetricsRecord, column_views
from pipeline.reporting.published import (F1_ROW, F1_TABLE, NDCG_TABLE1, RECALL_ROW, RECALL_ROWS, RECALL_SOURCES,
                                          TABLE1_DATASETS, TABLE1_ROW)

DASH = "–"
RISING_MARK = "↗"  # after a method's name: still rising at its last epoch (pipeline.reporting.convergence)
# The training stage a dual-path row reached (papers/003 reports both): stage I only, or stage II after it.
STAGE_NAMES = {"dual_path": "Stage II", "dual_path_stage1": "Stage I"}


@dataclass(frozen=True)
class Cell:
    """One of our values with its interval (an `Estimate`)."""

    value: float
    interval: object


def fmt(value, digits: int = 1) -> str:
    if isinstance(value, Cell):
        low, high = value.interval.low, value.interval.high
        return f"{value.value:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"
    return DASH if value is None else f"{float(value):.{digits}f}"


def views_with_intervals(record: MetricsRecord) -> list[tuple[str, dict]]:
    """`column_views` whose values that have an interval are `Cell`s."""
    values = {k: Cell(v, record.intervals[k]) if k in record.intervals else v for k, v in record.values.items()}
    return column_views(replace(record, values=values))


def pair(ours, published, digits: int = 1) -> str:
    return f"{fmt(ours, digits)} / {fmt(published, digits)}"


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _recipes(records: list[MetricsRecord]) -> dict[str, str]:
    """Method -> the suffix of its label (`method_label`): ", <recipe>" when it has one, then " ↗" when its
    validation curve was still rising at its last epoch."""
    recipes = {record.method: f", {record.recipe}" for record in records if record.recipe}
    rising = {record.method for record in records if record.still_rising}
    return {m: recipes.get(m, "") + (f" {RISING_MARK}" if m in rising else "") for m in recipes.keys() | rising}


def method_label(method: str, suffixes: dict[str, str]) -> str:
    """"`ss`", "`ss`, official" (trained with a recipe), "`ss`, official ↗" (still rising; `_recipes`)."""
    return f"`{method}`{suffixes.get(method, '')}"


def _by_method_column(records: list[MetricsRecord], keys: tuple[str, ...]) -> dict[tuple[str, str], tuple]:
    """`(method, column) -> values of keys` for the records that have the first key."""
    found = {}
    for record in records:
        for column, view in views_with_intervals(record):
            if keys[0] in view:
                found[(record.method, column)] = tuple(view.get(k) for k in keys)
    return found


def _columns(found: dict, published_columns: tuple[str, ...]) -> list[str]:
    extra = sorted({column for _, column in found} - set(published_columns))
    return list(published_columns) + extra


def _method_rows(found: dict, row_of_method: dict[str, str], published: dict,
                 recipes: dict[str, str] | None = None) -> list[tuple[str, str | None, str | None]]:
    """`(label, our method or None, published row or None)`: the paper's rows in its order, then ours
    (each of ours named with its recipe)."""
    recipes = recipes or {}
    method_of_row = {}
    for method, row in row_of_method.items():
        method_of_row.setdefault(row, method)
    ours = sorted({method for method, _ in found})
    rows = []
    for row in published:
        method = method_of_row.get(row)
        rows.append((f"{row} ({method_label(method, recipes)})" if method else row, method, row))
    rows += [(method_label(m, recipes), m, None) for m in ours if m not in row_of_method]
    return rows


def ndcg_table(records: list[MetricsRecord]) -> str:
    """papers/000 Table 1 layout: methods x datasets, I2T / T2I / Ave NDCG@k x 100."""
    found = _by_method_column(records, ("ndcg_i2t", "ndcg_t2i", "ndcg_ave"))
    columns = _columns(found, TABLE1_DATASETS)
    header = ["Method"] + [f"{c} {d}" for c in columns for d in ("I2T", "T2I", "Ave")]
    rows = []
    for label, method, paper_row in _method_rows(found, TABLE1_ROW, NDCG_TABLE1, _recipes(records)):
        cells = [label]
        for column in columns:
            ours = found.get((method, column), (None, None, None))
            if column in TABLE1_DATASETS:
                published = NDCG_TABLE1.get(paper_row, {}).get(column, (None, None, None))
                cells += [pair(o, p) for o, p in zip(ours, published)]
            else:
                cells += [fmt(o) for o in ours]
        rows.append(cells)
    return markdown_table(header, rows)


def label_metrics_table(records: list[MetricsRecord]) -> str:
    """Every label-wise metric of our runs (NDCG, mAP over the whole ranking, mAP@k)."""
    keys = ("ndcg_i2t", "ndcg_t2i", "ndcg_ave", "map_i2t", "map_t2i", "map_ave", "mapk_i2t", "mapk_t2i", "mapk_ave")
    header = ["Dataset", "Method", "NDCG@k I2T", "NDCG@k T2I", "NDCG@k Ave", "mAP I2T", "mAP T2I", "mAP Ave",
              "mAP@k I2T", "mAP@k T2I", "mAP@k Ave", "k (NDCG / mAP)"]
    rows = []
    for record in records:
        for column, view in views_with_intervals(record):
            if "ndcg_i2t" in view:
                ks = f"{view.get('ndcg_k', DASH)} / {view.get('map_k', DASH)}"
                rows.append([column, method_label(record.method, _recipes(records))]
                            + [fmt(view.get(k)) for k in keys] + [ks])
    return markdown_table(header, rows)


RECALL_KEYS = ("r1_i2t", "r5_i2t", "r10_i2t", "medr_i2t", "r1_t2i", "r5_t2i", "r10_t2i", "medr_t2i", "rsum")


def recall_tables(records: list[MetricsRecord]) -> str:
    """One table per dataset column with instance-level results: ours, then the published rows."""
    found = _by_method_column(records, RECALL_KEYS)
    columns = sorted({column for _, column in found})
    header = ["Method", "I2T R@1", "I2T R@5", "I2T R@10", "I2T MedR", "T2I R@1", "T2I R@5", "T2I R@10",
              "T2I MedR", "rsum"]
    parts = []
    for column in columns:
        rows = []
        for (method, col), values in sorted(found.items()):
            if col == column:
                counterpart = RECALL_ROW.get(method)
                note = f" (cf. {counterpart[0]} '{counterpart[1]}')" if counterpart else ""
                stage = f" {STAGE_NAMES[method]}" if method in STAGE_NAMES else ""
                rows.append([f"{method_label(method, _recipes(records))}{stage}{note}"] + [fmt(v) for v in values])
        for row in RECALL_ROWS:
            if row["dataset"] == column:
                values = row["i2t"] + row["t2i"]
                recalls = [values[i] for i in (0, 1, 2, 4, 5, 6)]
                total = sum(recalls) if None not in recalls else None
                rows.append([f"{row['method']} [published, {RECALL_SOURCES[row['source']]}]"]
                            + [fmt(v) for v in values] + [fmt(total)])
        parts.append(f"#### {column}\n\n" + markdown_table(header, rows))
    return "\n\n".join(parts)


def f1_table(records: list[MetricsRecord]) -> str:
    """Supplementary Table 1 layout: classification Micro-F1 per modality, ours / published."""
    found = _by_method_column(records, ("f1_image", "f1_text"))
    columns = _columns(found, TABLE1_DATASETS)
    header = ["Method"] + [f"{c} {m}" for c in columns for m in ("Image", "Text")]
    rows = []
    for label, method, paper_row in _method_rows(found, F1_ROW, F1_TABLE, _recipes(records)):
        cells = [label]
        for column in columns:
            ours = found.get((method, column), (None, None))
            if column in TABLE1_DATASETS:
                published = F1_TABLE.get(paper_row, {}).get(column, (None, None))
                cells += [pair(o, p, 3) for o, p in zip(ours, published)]
            else:
                cells += [fmt(o, 3) for o in ours]
        rows.append(cells)
    return markdown_table(header, rows)


F1_WAYS = (("f1_{m}", "0.5"), ("f1_{m}_tuned", "val-tuned"), ("f1_{m}_topk", "top-k"))


def f1_three_ways_table(records: list[MetricsRecord]) -> str:
    """Micro-F1 per modality at 0.5, at the validation-tuned threshold and at top-k (ours only)."""
    recipes = _recipes(records)
    header = ["Dataset", "Method"] + [f"{m.capitalize()} {label}" for m in ("image", "text") for _, label in F1_WAYS]
    rows = []
    for record in records:
        for column, view in column_views(record):
            if "f1_image_tuned" in view:
                rows.append([column, method_label(record.method, recipes)]
                            + [fmt(view.get(key.format(m=m)), 3) for m in ("image", "text") for key, _ in F1_WAYS])
    return markdown_table(header, rows)
