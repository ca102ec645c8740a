"""The `download` stage. The embedded `shapes` dataset is generated offline from its seed."""
from __future__ import annotations

from pathlib import Path

from pipeline.data import shapes
from pipeline.data.prepare import raw_dir


def download_dataset(dataset: str, dparams: dict, data_dir: str | Path = "data") -> dict:
    """Materialise `data/<dataset>/raw`; returns per-split image counts."""
    if dparams["kind"] == "shapes":
        return shapes.generate(raw_dir(data_dir, dataset), dparams)
    raise ValueError(
        f"params: data.{dataset} has kind '{dparams['kind']}', which is read in place from data.{dataset}.root "
        f"by `xmr prepare {dataset}`; it has nothing to download"
    )
