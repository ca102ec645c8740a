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


# Validation quantities worth a panel (the training loop logs every metric as val_<key>); training
# quantities (keys without the val_ prefix) are all drawn except bookkeeping.
VALIDATION_KEYS = ("ndcg_ave", "ndcg_i2t", "ndcg_t2i", "map_ave", "mapk_ave", "rsum", "r1_i2t", "r1_t2i", "f1_image",
                   "f1_text")
BOOKKEEPING = ("epoch", "seconds", "time", "step", "lr")


def _plotted(key: str) -> bool:
    if key.startswith("val_"):
        return key[4:] in VALIDATION_KEYS
    return key not in BOOKKEEPING


def _series(history: list[dict]) -> dict[str, tuple[list[float], list[float]]]:
    """`metric -> (epochs, values)` for the numeric keys worth plotting."""
    series: dict[str, tuple[list, list]] = defaultdict(lambda: ([], []))
    for i, entry in enumerate(history):
        epoch = entry.get("epoch", i + 1)
        for key, value in entry.items():
            if _plotted(key) and isinstance(value, (int, float)) and not isinstance(value, bool):
                series[key][0].append(epoch)
                series[key][1].append(value)
    return dict(series)


def plot_training_curves(histories: dict[str, list[dict]], title: str, out_png: Path) -> list[str]:
    """One panel per logged quantity, one line per method; returns the quantities plotted."""
    per_method = {method: _series(h) for method, h in sorted(histories.items())}
    keys = sorted({k for s in per_method.values() for k in s}, key=lambda k: (k != "loss", k))
    if not keys:
        return []
    cols = min(3, len(keys))
    rows = -(-len(keys) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.2 * rows), squeeze=False)
    for ax, key in zip(axes.flat, keys):
        for method, series in per_method.items():
            if key in series:
                ax.plot(*series[key], marker="o", markersize=2.5, label=method)
        ax.set_title(key)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(keys):]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(out_png, dpi=110)
    plt.close(fig)
    return keys


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
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out_png, dpi=110)
    plt.close(fig)
    return sum(len(m) for m in curves.values())
