"""Method name -> implementing class: the one list of trainable methods.

Entries are import paths so that listing or validating names does not import torch models.
A new method adds one line here and its parameter section in `pipeline/training/schema.py`.
"""
from __future__ import annotations

import importlib
from typing import Any

import numpy as np

from pipeline.training.batches import DataInfo
from pipeline.training.schema import METHOD_SCHEMAS, USES_LAMBDA

_SS = "pipeline.models.semantic_sharing:SemanticSharing"

METHODS: dict[str, str] = {
    "ss": _SS,        # Semantic Sharing (papers/000)
    "ss_con": _SS,    # + triplet consistency loss (Ours+Con)
    "ss_wo_r": _SS,   # global features + one FC shared model
    "ss_wo_t": _SS,   # one FC instead of the transformer
    "ss_wo_c": _SS,   # no masked-segment (context) prediction
    "ss_wo_l": _SS,   # no label prediction
    "st": _SS,        # separate training of each modality
    "imc": _SS,       # Eq. 1 only
    "scan_i2t": "pipeline.models.scan:SCAN",              # SCAN, regions attend words (papers/002)
    "scan_t2i": "pipeline.models.scan:SCAN",              # SCAN, words attend regions
    "scan_consistency": "pipeline.models.scan:SCAN",      # both + semantic consistency
    "dual_path": "pipeline.models.dual_path:DualPath",    # instance loss, two stages (papers/003)
    "cca": "pipeline.models.baselines.cca:CCAMethod",        # Table-1 baselines (pipeline/models/baselines/)
    "lcfs": "pipeline.models.baselines.lcfs:LCFS",
    "jfssl": "pipeline.models.baselines.jfssl:JFSSL",
    "dcca": "pipeline.models.baselines.dcca:DCCA",
    "dscmr": "pipeline.models.baselines.dscmr:DSCMR",
    "scml": "pipeline.models.baselines.scml:SCML",
    "vilbert": "pipeline.models.baselines.vilbert:ViLBERT",
}


class UnknownMethodError(ValueError):
    """A method name that is not registered."""


def check_method(name: str) -> None:
    """Raise UnknownMethodError listing the known names unless `name` is registered."""
    if name not in METHODS:
        raise UnknownMethodError(f"unknown method '{name}' (known: {', '.join(sorted(METHODS))})")
    if name not in METHOD_SCHEMAS:
        raise UnknownMethodError(f"method '{name}' has no parameter section in pipeline/training/schema.py")


def method_class(name: str) -> type:
    check_method(name)
    module, _, attr = METHODS[name].partition(":")
    return getattr(importlib.import_module(module), attr)


def build_method(name: str, params: dict, info: DataInfo, word_vectors: np.ndarray | None = None):
    """A freshly initialised method from validated params (`methods.<name>`, `lambda`)."""
    check_method(name)
    settings = params["methods"][name]
    lam = float(params["lambda"]) if name in USES_LAMBDA else None
    return method_class(name)(name, settings, info, lam, word_vectors=word_vectors)


def rebuild_method(config: dict[str, Any]):
    """A method (random weights) from the `config()` it saved; raises ValueError on a bad config."""
    for key in ("method", "settings", "info"):
        if key not in config:
            raise ValueError(f"model config lacks '{key}'")
    name = config["method"]
    check_method(name)
    return method_class(name)(name, config["settings"], DataInfo.from_json(config["info"]), config.get("lambda"))
