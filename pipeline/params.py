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

from pipeline.detection.schema import DETECTOR_SCHEMA, EXTRACT_SCHEMA
from pipeline.training.schema import (METHOD_SCHEMAS, METHOD_TRAIN_OVERRIDES, TRAIN_SCHEMA, USES_LAMBDA,
                                      check_training_params)


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

# Real datasets (pipeline/data/mirflickr.py, nuswide.py, karpathy.py; README "Datasets"). An empty
# `root` / `karpathy_json` means "the copy fetched by `xmr download <name>`"; split files are frozen
# on first prepare (splits/README.md).
MIRFLICKR_SCHEMA: dict[str, Any] = {
    "kind": "mirflickr",
    # Folder holding the extracted mirflickr25k.zip (mirflickr/) and annotations v080; "" = downloaded copy.
    "root": "",
    # Tags kept in the text: "common" (doc/common_tags.txt, the 1,386 tags used by 20+ images) or "all".
    "tag_vocabulary": "common",
    # Pairs without any of the 24 labels / without any kept tag are dropped (DCMH-style set) or kept.
    "require_label": True,
    "require_tag": True,
    # Eligible pairs the rule must yield (0: no check).
    "expected_pairs": 0,
    "n_val": 2000,
    "n_test": 2000,
    "split_seed": 0,
    "split_file": "splits/mirflickr25k.json",
}

NUSWIDE_SCHEMA: dict[str, Any] = {
    "kind": "nuswide",
    # Folder holding the extracted Groundtruth/NUS_WID_Tags/ImageList/ConceptsList archives; "" = downloaded copy.
    "root": "",
    # The user's copy of the images, laid out as in ImageList/Imagelist.txt (<concept>/<file>.jpg). Required.
    "images_root": "",
    # Concepts kept as labels: the most frequent over all 269,648 images (papers/000: 21).
    "top_concepts": 21,
    # Also require at least one of the 1,000 tags (the paper's 195,834 pairs do not).
    "require_tags": False,
    # Pairs with at least one kept concept (papers/000: 195,834); 0 disables the check.
    "expected_pairs": 195834,
    # Eligible pairs whose image is absent from images_root: dropped (counted) or an error.
    "missing_images": "drop",
    "n_val": 5000,
    "n_test": 1000,
    "split_seed": 0,
    "split_file": "splits/nuswide.json",
}

COCO2014_SCHEMA: dict[str, Any] = {
    "kind": "coco2014",
    # COCO-layout folder (annotations/, train2014/, val2014/); "" = downloaded copy.
    "root": "",
    # Annotation sets read (annotations/captions_<set>.json, instances_<set>.json, images in <root>/<set>/).
    "annotation_sets": ["train2014", "val2014"],
    # Karpathy dataset_coco.json; "" = the downloaded caption_datasets.zip.
    "karpathy_json": "",
    # Karpathy 'restval' images: "train" (113,287 train images) or "drop" (82,783, as papers/000 states).
    "restval": "train",
    "split_file": "splits/coco2014_karpathy.json",
}


def _flickr_schema(kind: str) -> dict[str, Any]:
    return {
        "kind": kind,
        # The user's folder of images (file names as in the Karpathy JSON). Required.
        "images_root": "",
        # Karpathy dataset_<kind>.json; "" = the downloaded caption_datasets.zip.
        "karpathy_json": "",
        # Images listed in the JSON but absent from images_root: "error" or "drop" (counted).
        "missing_images": "error",
        "split_file": f"splits/{kind}_karpathy.json",
    }


DATASET_SCHEMAS: dict[str, dict[str, Any]] = {
    "shapes": SHAPES_SCHEMA, "coco": COCO_SCHEMA, "mirflickr": MIRFLICKR_SCHEMA, "nuswide": NUSWIDE_SCHEMA,
    "coco2014": COCO2014_SCHEMA, "flickr30k": _flickr_schema("flickr30k"), "flickr8k": _flickr_schema("flickr8k"),
}

# Downloads of the real datasets and assets (pipeline/data/registry.yaml, fetch.py).
DOWNLOAD_SCHEMA: dict[str, Any] = {
    # Where archives are downloaded and extracted (data/downloads/<source>/, .../extracted/).
    "dir": "data/downloads",
    # The registry of URLs, sizes and sha256.
    "registry": "pipeline/data/registry.yaml",
    # sha256 recorded at first download for files without a published hash (commit it to pin them).
    "lock_file": "registry.lock.json",
    # Source name -> list of base URLs replacing the registry's URLs (<base>/<file name>), tried in order.
    "mirrors": AnyMapping({}),
    # Extra attempts after a dropped connection (each resumes the partial file), and the wait between them.
    "retries": 3,
    "retry_wait": 2.0,
    # Seconds without data before a connection counts as dropped.
    "timeout": 60.0,
    "progress": True,
}

SCHEMA: dict[str, Any] = {
    # Weight of the context (masked-segment) loss: L = L1 + lambda * L2.
    "lambda": 0.1,
    "seed": 0,
    "datasets": ["shapes"],
    # Methods run by dvc.yaml's train/evaluate stages: those reading `lambda`, and the others.
    "run": {"lambda_methods": ["ss"], "methods": ["cca"]},
    # Shared training settings and one section per method (pipeline/training/schema.py).
    "train": TRAIN_SCHEMA,
    # Each method section may hold `train: {epochs, lr, batch_size}` overriding the shared `train` values.
    "methods": {name: {**schema, "train": AnyMapping()} for name, schema in METHOD_SCHEMAS.items()},
    # Dataset name -> its settings; `kind` selects the schema (DATASET_SCHEMAS).
    "data": AnyMapping({"shapes": {"kind": "shapes"}}),
    "download": DOWNLOAD_SCHEMA,
    "prepare": {
        # Images listed in the annotations but carrying no object label: keep (with an
        # empty label list) or drop.
        "images_without_labels": "keep",
        # Captions kept per image (the first ones by annotation id); 0 keeps all.
        "max_captions": 5,
    },
    # Region features (pipeline/detection/schema.py): `xmr extract`, and `xmr train-detector` for shapes.
    "extract": {**EXTRACT_SCHEMA, "detectors": AnyMapping(), "weights": AnyMapping()},
    "detector": DETECTOR_SCHEMA,
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
    # Retrieval / classification metrics (each key explained in pipeline/metrics/config.py).
    "metrics": {
        "ndcg_k": 500,
        "map_k": 500,
        "map_full": True,
        "recall_ks": [1, 5, 10, 20, 50, 100],
        "f1_threshold": 0.5,
        "chunk_size": 0,
        "memory_mb": 512,
        "t2i_discount": "standard",
        "datasets": AnyMapping({"coco": {"protocols": ["coco5k", "coco1k"]},
                                "mirflickr": {"dedup_texts": True}, "nuswide": {"dedup_texts": True}}),
    },
    # `xmr report`: queries per direction on each qualitative page, thumbnail size (px), methods drawn
    # in the lambda-sensitivity plot (papers/001 Figure 3 shows the full model); the bootstrap over test
    # queries behind every interval (resamples, seed) and the method every other is compared with.
    "report": {"qualitative_queries": 6, "thumbnail_px": 128, "lambda_methods": ["ss"],
               "bootstrap_resamples": 1000, "bootstrap_seed": 0, "reference_method": "ss"},
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
    _check_run_lists(params["run"], source)
    for name, section in params["methods"].items():
        for key, value in section["train"].items():
            if key not in METHOD_TRAIN_OVERRIDES:
                raise ParamError(f"{source}: unknown parameter 'methods.{name}.train.{key}' "
                                 f"(expected one of: {', '.join(METHOD_TRAIN_OVERRIDES)})")
            section["train"][key] = _check(value, SCHEMA["train"][key], f"methods.{name}.train.{key}", source)
    if params["prepare"]["images_without_labels"] not in ("keep", "drop"):
        raise ParamError(f"{source}: parameter 'prepare.images_without_labels' must be 'keep' or "
                         f"'drop', got {params['prepare']['images_without_labels']!r}")
    check_training_params(params, source)
    _check_seeds(params, source)
    if params["report"]["bootstrap_resamples"] < 1:
        raise ParamError(f"{source}: parameter 'report.bootstrap_resamples' must be an integer >= 1, "
                         f"got {params['report']['bootstrap_resamples']!r}")
    return params


def _check_seeds(params: dict, source: str) -> None:
    """Every seed is a non-negative integer (the type is checked by the schema; numpy refuses negatives)."""
    seeds = {"seed": params["seed"], "report.bootstrap_seed": params["report"]["bootstrap_seed"]}
    for name, entry in params["data"].items():
        seeds.update({f"data.{name}.{key}": entry[key] for key in ("seed", "split_seed") if key in entry})
    for key, value in seeds.items():
        if value < 0:
            raise ParamError(f"{source}: parameter '{key}' must be a non-negative integer, got {value!r}")


def _check_run_lists(run: dict, source: str) -> None:
    """`run.lambda_methods` must be exactly the methods reading `lambda`, so DVC reruns the right stages."""
    for key, want_lambda in (("lambda_methods", True), ("methods", False)):
        for name in run[key]:
            if name not in METHOD_SCHEMAS:
                raise ParamError(f"{source}: parameter 'run.{key}' names unknown method '{name}' "
                                 f"(known: {', '.join(sorted(METHOD_SCHEMAS))})")
            if (name in USES_LAMBDA) != want_lambda:
                other = "methods" if want_lambda else "lambda_methods"
                raise ParamError(f"{source}: method '{name}' belongs in 'run.{other}' "
                                 f"({'does not read' if want_lambda else 'reads'} the top-level lambda)")


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
