"""One declaration per retrieval method: what the registry, the params schema, `xmr methods`, dvc.yaml's
stages and the docs read about it. Torch-free (the CLI answers a wrong name before torch loads).

A method is declared in a module of this package (one per method family: `semantic_sharing`, `scan`,
`dual_path`, `baselines`, ...), as `DECLARED = [Declaration(...), ...]`; its code is the class named by
`builder`, imported on first use. Every module here is found by listing the package, so adding a method
means adding its declaration module and its code module, and editing no shared file.
"""
from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass, field
from typing import Any, Callable

LABEL_WISE, INSTANCE_LEVEL = "label-wise", "instance-level"

# A value rule: `rule(key_prefix, section, fail)` calls `fail(key, expected, value)` on a bad value.
Rule = Callable[[str, dict, Callable[[str, str, Any], None]], None]


@dataclass(frozen=True)
class Declaration:
    name: str
    builder: str         # "module:Class" of the pipeline.contract.method.RetrievalMethod
    paper: str
    family: str          # LABEL_WISE (multi-label relevance, NDCG) or INSTANCE_LEVEL (own pairs, R@K)
    needs_labels: bool   # the objective reads label annotations (the class says the same)
    description: str     # one line, shown by `xmr methods`
    schema: dict = field(default_factory=dict)  # params section `methods.<name>` with its defaults
    rules: tuple = ()    # value rules of the section (Rule), beyond the type checks of the schema
    closed_form: bool = False  # fitted once on arrays instead of trained by epochs

    @property
    def reads_lambda(self) -> bool:
        """The objective has a masked-segment context term weighed by the top-level `lambda`."""
        return "mask_prob" in self.schema

    @property
    def module(self) -> str:
        return self.builder.partition(":")[0]


def between(key: str, low: float | None = None, high: float | None = None, low_open: bool = False,
            high_open: bool = False, integer: bool = False) -> Rule:
    """A rule: `key` (when present and not null) lies in the range; a list value: each element."""
    lo = "(" if low_open else "["
    hi = ")" if high_open else "]"
    if low is not None and high is not None:
        expected = f"in {lo}{low:g}, {high:g}{hi}"
    elif low is not None:
        expected = ("an integer " if integer else "") + (f"> {low:g}" if low_open else f">= {low:g}")
    else:
        expected = f"< {high:g}" if high_open else f"<= {high:g}"

    def rule(prefix: str, s: dict, fail) -> None:
        if s.get(key) is None:
            return
        for v in (s[key] if isinstance(s[key], list) else [s[key]]):
            if (low is not None and not (v > low if low_open else v >= low)) or \
                    (high is not None and not (v < high if high_open else v <= high)):
                fail(prefix + key, expected, s[key])
    return rule


def one_of(key: str, *choices: str) -> Rule:
    """A rule: `key` (when present and not null) is one of `choices`."""
    def rule(prefix: str, s: dict, fail) -> None:
        if s.get(key) is not None and s[key] not in choices:
            fail(prefix + key, " or ".join(choices), s[key])
    return rule


def transformer_shape(prefix: str, s: dict, fail) -> None:
    """A rule: positive `layers`, `heads`, `d_ff`, and `heads` dividing `d_model`."""
    for sub in ("layers", "heads", "d_ff"):
        if s[sub] < 1:
            fail(prefix + sub, "an integer >= 1", s[sub])
    if s["d_model"] % s["heads"]:
        fail(prefix + "heads", f"a divisor of d_model ({s['d_model']})", s["heads"])


def _modules() -> list[str]:
    return [f"{__name__}.{info.name}" for info in pkgutil.iter_modules(__path__) if not info.name.startswith("_")]


def declarations() -> dict[str, Declaration]:
    """Every declared method by name, in the order of each module's `ORDER` (then its list)."""
    found: list[tuple[int, str, int, Declaration]] = []
    for module_name in _modules():
        module = importlib.import_module(module_name)
        for i, decl in enumerate(getattr(module, "DECLARED", [])):
            found.append((getattr(module, "ORDER", 100), module_name, i, decl))
    found.sort(key=lambda t: t[:3])
    out: dict[str, Declaration] = {}
    for *_, decl in found:
        if decl.name in out:
            raise ValueError(f"method '{decl.name}' is declared twice ({out[decl.name].builder}, {decl.builder})")
        out[decl.name] = decl
    return out


def declaration_module(name: str) -> str:
    """The module of this package that declares method `name` (dvc.yaml's stages depend on it)."""
    for module_name in _modules():
        if any(d.name == name for d in getattr(importlib.import_module(module_name), "DECLARED", [])):
            return module_name
    raise KeyError(name)
