"""The registry: every method declared in `pipeline/methods/`, by name, and how to build one.

Torch-free: listing or checking names imports no model (the builder is imported on first use). Adding a
method means: its code (a `pipeline.contract.method.RetrievalMethod` subclass) and its declaration
(a module of `pipeline/methods/`: builder, paper, family, params section with defaults and value rules),
and its tests; nothing here changes. `tests/test_method_registry.py` checks that the declaration agrees
with the class and with params.yaml.
"""
from __future__ import annotations

import importlib
from typing import Any

from pipeline.methods import INSTANCE_LEVEL, LABEL_WISE, Declaration
from pipeline.training.schema import DECLARATIONS, METHOD_SCHEMAS, USES_LAMBDA

__all__ = ["INSTANCE_LEVEL", "LABEL_WISE", "METHODS", "MethodEntry", "build_method", "check_method", "method_class",
           "rebuild_method", "uses_lambda", "USES_LAMBDA"]

MethodEntry = Declaration  # the name callers used before the declarations moved to pipeline/methods/
METHODS: dict[str, Declaration] = DECLARATIONS


class UnknownMethodError(ValueError):
    """A method name that is not registered."""


def check_method(name: str) -> None:
    """Raise UnknownMethodError listing the known names unless `name` is registered."""
    if name not in METHODS:
        raise UnknownMethodError(f"unknown method '{name}' (known: {', '.join(sorted(METHODS))}; "
                                 f"`xmr methods` describes them)")
    if name not in METHOD_SCHEMAS:
        raise UnknownMethodError(f"method '{name}' has no parameter section (its declaration in pipeline/methods/)")


def uses_lambda(name: str) -> bool:
    """The method's objective reads the top-level `lambda` (it has a context loss)."""
    return name in USES_LAMBDA


def method_class(name: str) -> type:
    check_method(name)
    module, _, attr = METHODS[name].builder.partition(":")
    return getattr(importlib.import_module(module), attr)


def build_method(name: str, params: dict, info, word_vectors=None, dataset: str | None = None):
    """A freshly initialised method from validated params (`methods.<name>` with `per_dataset.<dataset>`'s
    settings and its recipe's values for `dataset`'s kind, `lambda`); `info` is the dataset's
    `pipeline.contract.batches.DataInfo`, `word_vectors` an optional `[V, word_dim]` array. The context weight is `lambda * lambda_scale`."""
    from pipeline.training.recipes import dataset_kind, resolve_settings

    check_method(name)
    settings = resolve_settings(params, name, dataset_kind(params, dataset), dataset)
    lam = None
    if uses_lambda(name):
        lam = float(params["lambda"]) * float(settings.get("lambda_scale") or 1.0)
    return method_class(name)(name, settings, info, lam, word_vectors=word_vectors)


def rebuild_method(config: dict[str, Any]):
    """A method (random weights) from the `config()` it saved; raises ValueError on a bad config."""
    from pipeline.contract.batches import DataInfo

    for key in ("method", "settings", "info"):
        if key not in config:
            raise ValueError(f"model config lacks '{key}'")
    name = config["method"]
    check_method(name)
    cls = method_class(name)
    saved = config.get("config_version", 1)  # configs written before versions existed are version 1
    if saved != cls.config_version:
        raise ValueError(f"model config version {saved}, but method '{name}' now builds version "
                         f"{cls.config_version} (another model for the same settings); retrain it")
    return cls(name, config["settings"], DataInfo.from_json(config["info"]), config.get("lambda"))
