"""PNG figures of the report (matplotlib, Agg backend: no display needed)."""
from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from pipeline.reporting.collect import ReportInputError, read_json  # noqa: E402


def read_history(path: Path) -> list[dict]:
    """A training history: a JSON list of per-epoch dicts of numbers (`epoch` optional)."""
    history = read_json(path, "training history")
    if not isinstance(history, list) or not all(isinstance(e, dict) for e in history):
        raise ReportInputError(f"{path}: a training history must be a JSON list of per-epoch objects")
    return history


# The validation metric drawn per family: what each family is selected and compared on (NDCG over shared
# labels for label-wise methods, rsum over each image's own captions for instance-level ones); rsum when a
# dataset has no labels.
FAMILY_METRIC = {"label-wise": ("val_ndcg_ave", "validation NDCG"), "instance-level": ("val_rsum", "validation rsum")}
FALLBACK_METRIC = ("val_rsum", "validation rsum")


def is_closed_form_fit(history: list[dict]) -> bool:
    """A closed-form fit (CCA, LCFS, JFSSL): one entry with `fit_*` facts; it belongs in a table, not on a curve."""
    return len(history) == 1 and any(k.startswith("fit_") for k in history[0])


def _curve(history: list[dict], key: str) -> tuple[list, list]:
    points = [(e.get("epoch", i + 1), e.get(key)) for i, e in enumerate(history)]
    points = [(x, y) for x, y in points if isinstance(y, (int, float)) and not isinstance(y, bool)]
    return [x for x, _ in points], [y for _, y in points]


def _family(method: str) -> str:
    from pipeline.training.registry import METHODS

    entry = METHODS.get(method)
    return entry.family if entry else "label-wise"


def plot_training_curves(histories: dict[str, list[dict]], title: str, out_png: Path) -> list[str]:
    """`training_figure` saved as a PNG; returns the titles of the panels drawn (none: no file)."""
    fig, panels = training_figure(histories, title)
    if fig is not None:
        fig.savefig(out_png, dpi=110, bbox_inches="tight")
        plt.close(fig)
    return panels


def training_figure(histories: dict[str, list[dict]], title: str):
    """Per method family: the validation metric against epoch (top) and the training loss (bottom), one line
    per method, legends beside the axes. Closed-form fits are left out (see `closed_form_rows`).
    Returns `(figure or None, panel titles)`."""
    families: dict[str, dict[str, list[dict]]] = defaultdict(dict)
    for method, history in sorted(histories.items()):
        if history and not is_closed_form_fit(history):
            families[_family(method)][method] = history
    panels = []
    for family, methods in sorted(families.items()):
        key, label = FAMILY_METRIC.get(family, FALLBACK_METRIC)
        if not any(_curve(h, key)[0] for h in methods.values()):
            key, label = FALLBACK_METRIC
        panels.append((f"{family}: {label}", key, methods))
        panels.append((f"{family}: training loss", "loss", methods))
    panels = [(t, k, m) for t, k, m in panels if any(_curve(h, k)[0] for h in m.values())]
    if not panels:
        return None, []
    cols = len(families)
    fig, axes = plt.subplots(2, cols, figsize=(6.4 * cols, 6.4), squeeze=False)
    for i, (panel_title, key, methods) in enumerate(panels):
        ax = axes[i % 2][i // 2]
        for j, (method, history) in enumerate(methods.items()):
            ax.plot(*_curve(history, key), marker="o", markersize=3, color=f"C{j % 10}",
                    linestyle="-" if j < 10 else "--", label=method)
        ax.set_title(panel_title, fontsize=10)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)  # beside, never on data
    used = {(i % 2, i // 2) for i in range(len(panels))}
    for r in range(2):
        for c in range(cols):
            if (r, c) not in used:
                axes[r][c].axis("off")
    fig.suptitle(title)
    fig.tight_layout()
    return fig, [t for t, _, _ in panels]


def closed_form_rows(histories: dict[str, list[dict]]) -> list[dict]:
    """One row per closed-form fit: method, training pairs, objective, validation metrics, seconds."""
    rows = []
    for method, history in sorted(histories.items()):
        if history and is_closed_form_fit(history):
            entry = history[0]
            rows.append({"method": method, "pairs": entry.get("fit_pairs"), "objective": entry.get("loss"),
                         "val_ndcg_ave": entry.get("val_ndcg_ave"), "val_rsum": entry.get("val_rsum"),
                         "seconds": entry.get("seconds")})
    return rows


def plot_lambda_sensitivity(points: list[dict], out_png: Path, param: str = "lambda") -> int:
    """NDCG vs the parameter per dataset (one panel each): T2I solid, I2T dotted, as papers/001 Figure 3.

    Only (dataset, method) pairs with at least two parameter values are drawn; returns their number.
    """
    groups: dict[str, dict[str, list[dict]]] = defaultdict(lambda: defaultdict(list))
    for p in points:
        groups[p["dataset"]][p["method"]].append(p)
    curves = {ds: {m: sorted(ps, key=lambda p: p[param]) for m, ps in methods.items()
                   if len({p[param] for p in ps}) >= 2} for ds, methods in groups.items()}
    curves = {ds: methods for ds, methods in sorted(curves.items()) if methods}
    if not curves:
        return 0
    fig, axes = plt.subplots(1, len(curves), figsize=(4.8 * len(curves), 3.6), squeeze=False)
    for ax, (dataset, methods) in zip(axes.flat, curves.items()):
        positive = [p[param] for ps in methods.values() for p in ps if p[param] > 0]
        for i, (method, ps) in enumerate(sorted(methods.items())):
            x = [p[param] for p in ps]
            color = f"C{i}"
            ax.plot(x, [p["ndcg_t2i"] for p in ps], "-o", color=color, markersize=3, label=f"{method} T2I")
            ax.plot(x, [p["ndcg_i2t"] for p in ps], ":s", color=color, markersize=3, label=f"{method} I2T")
        if positive:
            ax.set_xscale("symlog", linthresh=min(positive))
        ax.set_title(dataset)
        ax.set_xlabel(param)
        ax.set_ylabel("NDCG x 100")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)  # beside the data
    fig.tight_layout()
    fig.savefig(out_png, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return sum(len(m) for m in curves.values())
