"""Loading and validating `params.yaml`.

Every stage reads its parameters through `load_params`, so a typo or a wrong
type stops the stage with a message naming the key instead of surfacing later
as an obscure failure. The schema is a nested dict of defaults: a missing key
takes its default, an unknown key or a value of the wrong type is an error.
Each dataset entry under `data` is validated against the schema of its `kind`.
"""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml


class ParamError(ValueError):
    """A parameter is unknown, missing or of the wrong type."""


class Optional_:
    """Schema marker: a value of `type_` or null, defaulting to `default`."""

    def __init__(self, type_: type, default: Any = None):
        self.type_ = type_
        self.default = default


class AnyMapping:
    """Schema marker: a free-form mapping (its values are checked by the consumer)."""

    def __init__(self, default: dict | None = None):
        self.default = default or {}


SHAPES_SCHEMA: dict[str, Any] = {
    "kind": "shapes",
    "n_images": 2000,
    "n_val": 200,
    "n_test": 200,
    "image_size": 128,
    "min_objects": 1,
    "max_objects": 4,
    "min_object_size": 18,
    "max_object_size": 52,
    "captions_per_image": 5,
    "clutter": 12,
    "seed": 0,
}

COCO_SCHEMA: dict[str, Any] = {
    "kind": "coco",
    # Root of a COCO-layout folder (annotations/ and one image folder per split file).
    "root": "",
    # Table split name -> annotation-file suffix (annotations/captions_<suffix>.json,
    # images in <root>/<suffix>/).
    "splits": AnyMapping({"train": "train2017", "val": "val2017"}),
}

DATASET_SCHEMAS: dict[str, dict[str, Any]] = {"shapes": SHAPES_SCHEMA, "coco": COCO_SCHEMA}

SCHEMA: dict[str, Any] = {
    # Weight of the context (masked-segment) loss: L = L1 + lambda * L2.
    "lambda": 0.1,
    "seed": 0,
    "datasets": ["shapes"],
    # Dataset name -> its settings; `kind` selects the schema (DATASET_SCHEMAS).
    "data": AnyMapping({"shapes": {"kind": "shapes"}}),
    "prepare": {
        # Images listed in the annotations but carrying no object label: keep (with an
        # empty label list) or drop.
        "images_without_labels": "keep",
        # Captions kept per image (the first ones by annotation id); 0 keeps all.
        "max_captions": 5,
    },
    "text": {
        # Tokens kept per caption (papers/001: maximum sequence length 150).
        "max_len": 150,
        # Training-split count below which a word maps to <unk> (also Word2Vec's min_count).
        "min_count": 1,
        # word2vec-format vectors (binary or text, optionally .gz), e.g. GoogleNews-vectors-negative300.bin.gz;
        # null trains Word2Vec on the training captions instead (offline default).
        "word2vec_path": Optional_(str),
        # Folder for the memory-mappable native copy of word2vec_path; null: next to the file.
        "word2vec_cache_dir": Optional_(str),
        # Word-vector size; a vectors file of another size is an error.
        "embedding_dim": 300,
        # Word2Vec trained on the captions (word2vec_path null): epochs, context window, skip-gram or CBOW.
        "w2v_epochs": 10,
        "w2v_window": 5,
        "w2v_skipgram": False,
    },
}


def _type_name(value: Any) -> str:
    return type(value).__name__


def _check(value: Any, default: Any, key: str, source: str) -> Any:
    """Return `value` validated against the schema entry `default`."""
    where = f"{source}: parameter '{key}'"
    if isinstance(default, Optional_):
        if value is None:
            return None
        return _check(value, default.type_(), key, source)
    if isinstance(default, AnyMapping):
        if not isinstance(value, dict):
            raise ParamError(f"{where} must be a mapping, got {_type_name(value)} {value!r}")
        return copy.deepcopy(value)
    if isinstance(default, dict):
        if not isinstance(value, dict):
            raise ParamError(f"{where} must be a mapping, got {_type_name(value)} {value!r}")
        return _merge(value, default, key + ".", source)
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ParamError(f"{where} must be true or false, got {value!r}")
        return value
    if isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ParamError(f"{where} must be a number, got {_type_name(value)} {value!r}")
        return float(value)
    if isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ParamError(f"{where} must be an integer, got {_type_name(value)} {value!r}")
        return value
    if isinstance(default, str):
        if not isinstance(value, str):
            raise ParamError(f"{where} must be a string, got {_type_name(value)} {value!r}")
        return value
    if isinstance(default, list):
        if not isinstance(value, list):
            raise ParamError(f"{where} must be a list, got {_type_name(value)} {value!r}")
        if default:
            return [_check(v, default[0], f"{key}[{i}]", source) for i, v in enumerate(value)]
        return list(value)
    raise TypeError(f"unsupported schema entry for {key}: {default!r}")


def _default(entry: Any) -> Any:
    if isinstance(entry, (Optional_, AnyMapping)):
        return copy.deepcopy(entry.default)
    if isinstance(entry, dict):
        return {k: _default(v) for k, v in entry.items()}
    return copy.deepcopy(entry)


def _merge(given: dict, schema: dict, prefix: str, source: str) -> dict:
    unknown = sorted(set(given) - set(schema))
    if unknown:
        raise ParamError(
            f"{source}: unknown parameter '{prefix}{unknown[0]}' "
            f"(expected one of: {', '.join(sorted(schema))})"
        )
    out = {}
    for key, entry in schema.items():
        out[key] = _check(given[key], entry, prefix + key, source) if key in given else _default(entry)
    return out


def validate(raw: dict, source: str = "params.yaml") -> dict:
    """Validate a parsed params mapping; returns it with defaults filled in."""
    if not isinstance(raw, dict):
        raise ParamError(f"{source}: expected a mapping at the top level, got {_type_name(raw)}")
    params = _merge(raw, SCHEMA, "", source)
    datasets = {}
    for name, entry in params["data"].items():
        if not isinstance(entry, dict) or "kind" not in entry:
            raise ParamError(f"{source}: parameter 'data.{name}' must be a mapping with a 'kind' "
                             f"(one of: {', '.join(sorted(DATASET_SCHEMAS))})")
        kind = entry["kind"]
        if kind not in DATASET_SCHEMAS:
            raise ParamError(f"{source}: parameter 'data.{name}.kind' is {kind!r}, "
                             f"expected one of: {', '.join(sorted(DATASET_SCHEMAS))}")
        datasets[name] = _merge(entry, DATASET_SCHEMAS[kind], f"data.{name}.", source)
    params["data"] = datasets
    for name in params["datasets"]:
        if name not in datasets:
            raise ParamError(f"{source}: dataset '{name}' is listed in 'datasets' but has no entry "
                             f"under 'data' (known: {', '.join(sorted(datasets)) or 'none'})")
    if params["prepare"]["images_without_labels"] not in ("keep", "drop"):
        raise ParamError(f"{source}: parameter 'prepare.images_without_labels' must be 'keep' or "
                         f"'drop', got {params['prepare']['images_without_labels']!r}")
    return params


def load_params(path: str | Path = "params.yaml") -> dict:
    """Read and validate a params file."""
    path = Path(path)
    if not path.is_file():
        raise ParamError(f"{path}: params file not found")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ParamError(f"{path}: not valid YAML ({exc})") from exc
    return validate(raw, str(path))


def dataset_params(params: dict, name: str, source: str = "params.yaml") -> dict:
    """The validated `data.<name>` entry, or an error listing the known datasets."""
    if name not in params["data"]:
        raise ParamError(f"{source}: unknown dataset '{name}' (known: {', '.join(sorted(params['data']))})")
    return params["data"][name]
