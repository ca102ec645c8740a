"""Loading and validating `params.yaml`: every key of every section is checked here, at load.

Every stage reads its parameters through `load_params`, so a typo, a wrong type or a value out of range
stops the stage with a message naming the key instead of surfacing later (after a training epoch, or
after DVC removed the stage's outputs). The schema is a nested dict of defaults: a missing key takes its
default, an unknown key or a value of the wrong type is an error (`pipeline.param_checks`).
One module per area holds its section's schema and value checks, and this loader calls each:
`pipeline.training.schema` (`train`, `methods`, `lambda`), `pipeline.detection.schema` (`extract`,
`detector`), `pipeline.metrics.schema` (`metrics`); the data, download, prepare, text and report sections
are defined here. Each dataset entry under `data` is validated against the schema of its `kind`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from pipeline.detection.schema import DETECTOR_SCHEMA, EXTRACT_SCHEMA, check_detection_params
from pipeline.metrics.schema import METRICS_SCHEMA, check_metrics_params
from pipeline.param_checks import (AnyMapping, Optional_, ParamError, check_name, check_value, failer, merge_section,
                                   shown)
from pipeline.training.schema import (METHOD_SCHEMAS, METHOD_TRAIN_OVERRIDES, TRAIN_SCHEMA,
                                      check_training_params)

__all__ = ["ParamError", "load_params", "validate", "dataset_params", "SCHEMA", "DATASET_SCHEMAS"]


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
    # Images of the train file moved to `val` (the first n_val by sha256("<split_seed>:<image id>"),
    # pipeline/data/splits.py), for a folder without a val file of its own (`splits` maps no `val`).
    "n_val": 0,
    "split_seed": 0,
}

# Real datasets (pipeline/data/mirflickr.py, nuswide.py, karpathy.py; docs/datasets.md "Real datasets"). An empty
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
    # Caps on what one archive may extract to: total GB its members declare, and bytes per archive byte
    # (the largest registry archive, train2014.zip, extracts to ~13.5 GB at ~1x; a zip bomb to 1000x).
    "max_extract_gb": 50.0,
    "max_extract_ratio": 100.0,
}

SCHEMA: dict[str, Any] = {
    # Weight of the context (masked-segment) loss: L = L1 + lambda * L2.
    "lambda": 0.1,
    "seed": 0,
    "datasets": ["shapes"],
    # Methods run by dvc.yaml's train/evaluate stages (pipeline/dvc_stages.py): null = every declared
    # method, less `exclude`.
    "run": {"methods": Optional_(list), "exclude": []},
    # Shared training settings and one section per method (pipeline/training/schema.py).
    "train": TRAIN_SCHEMA,
    # Each method section may hold `train: {epochs, lr, batch_size}` overriding the shared `train` values.
    "methods": {name: {**schema, "train": AnyMapping()} for name, schema in METHOD_SCHEMAS.items()},
    # Dataset name -> its settings; `kind` selects the schema (DATASET_SCHEMAS).
    "data": AnyMapping({"shapes": {"kind": "shapes"}}),
    # Dataset name -> settings sized for it: `train` loop keys and `methods.<m>` options (with their own
    # `train`), over the shared values; precedence in pipeline/training/recipes.py. A dataset without an
    # entry trains with its recipe's values and the shared sections.
    "per_dataset": AnyMapping({}),
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
    # `datasets`: <dataset>: {key: value} overrides of the keys above for one dataset.
    "detector": {**DETECTOR_SCHEMA, "datasets": AnyMapping()},
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
        # SCAN's official text (a text-side option: it applies to every method of the dataset, since the
        # tokenize stage is shared): "drop" (default) or "keep" punctuation marks as tokens; wrap every
        # caption in <start> ... <end>. The official vocabulary threshold 4 is `min_count: 4`.
        "punctuation": "drop",
        "start_end_tokens": False,
    },
    # Retrieval / classification metrics (each key explained in pipeline/metrics/schema.py).
    "metrics": METRICS_SCHEMA,
    # `xmr report`: queries per direction on each qualitative page, thumbnail size (px), methods drawn
    # in the lambda-sensitivity plot (papers/001 Figure 3 shows the full model); the bootstrap over test
    # queries behind every interval (resamples, seed) and the method every other is compared with;
    # the seeds of a seed sweep in the experiments file to aggregate (mean ± std, claims): [] for none.
    "report": {"qualitative_queries": 6, "thumbnail_px": 128, "lambda_methods": ["ss"],
               "bootstrap_resamples": 1000, "bootstrap_seed": 0, "reference_method": "ss", "seeds": []},
}


def validate(raw: dict, source: str = "params.yaml") -> dict:
    """Validate a parsed params mapping; returns it with defaults filled in."""
    if not isinstance(raw, dict):
        raise ParamError(f"{source}: expected a mapping at the top level, got {type(raw).__name__}")
    params = merge_section(raw, SCHEMA, "", source)
    datasets = {}
    for name, entry in params["data"].items():
        check_name(name, "data", source)
        if not isinstance(entry, dict) or "kind" not in entry:
            raise ParamError(f"{source}: parameter 'data.{name}' must be a mapping with a 'kind' "
                             f"(one of: {', '.join(sorted(DATASET_SCHEMAS))})")
        kind = entry["kind"]
        if kind not in DATASET_SCHEMAS:
            raise ParamError(f"{source}: parameter 'data.{name}.kind' is {shown(kind)}, "
                             f"expected one of: {', '.join(sorted(DATASET_SCHEMAS))}")
        datasets[name] = merge_section(entry, DATASET_SCHEMAS[kind], f"data.{name}.", source)
    params["data"] = datasets
    for name in params["datasets"]:
        check_name(name, "datasets", source)
        if name not in datasets:
            raise ParamError(f"{source}: dataset '{name}' is listed in 'datasets' but has no entry "
                             f"under 'data' (known: {', '.join(sorted(datasets)) or 'none'})")
    _check_run_lists(params["run"], source)
    for name, section in params["methods"].items():
        section["train"] = _train_overrides(section["train"], f"methods.{name}.train.", source)
    params["per_dataset"] = {name: _dataset_layer(entry, name, source)
                             for name, entry in params["per_dataset"].items()}
    if params["prepare"]["images_without_labels"] not in ("keep", "drop"):
        raise ParamError(f"{source}: parameter 'prepare.images_without_labels' must be 'keep' or "
                         f"'drop', got {shown(params['prepare']['images_without_labels'])}")
    _check_data_values(params, source)
    check_text_params(params["text"], source)
    check_training_params(params, source)
    check_detection_params(params, source)
    check_metrics_params(params["metrics"], source)
    _check_seeds(params, source)
    return params


def _train_overrides(given: dict, prefix: str, source: str) -> dict:
    """Loop keys a method or a dataset may override (METHOD_TRAIN_OVERRIDES), each checked against `train`."""
    for key in given:
        if key not in METHOD_TRAIN_OVERRIDES:
            raise ParamError(f"{source}: unknown parameter '{prefix}{key}' "
                             f"(expected one of: {', '.join(METHOD_TRAIN_OVERRIDES)})")
    return {key: check_value(value, SCHEMA["train"][key], prefix + key, source) for key, value in given.items()}


def _dataset_layer(entry: Any, name: str, source: str) -> dict:
    """`per_dataset.<name>` checked key by key; only the keys written are kept (they override, see
    pipeline/training/recipes.py), so a missing key keeps the shared value rather than a default. As
    `extract.detectors`, an entry may name a dataset that `data` does not define now (it is then unused)."""
    where = f"per_dataset.{name}"
    if entry is None:
        return {}
    if not isinstance(entry, dict) or set(entry) - {"train", "methods"}:
        raise ParamError(f"{source}: parameter '{where}' must be a mapping with keys among train, methods, "
                         f"got {entry!r}")
    layer = {}
    if "train" in entry:
        layer["train"] = _train_overrides(check_value(entry["train"], AnyMapping(), f"{where}.train", source),
                                          f"{where}.train.", source)
    methods = check_value(entry.get("methods") or {}, AnyMapping(), f"{where}.methods", source)
    for method, own in methods.items():
        if method not in METHOD_SCHEMAS:
            raise ParamError(f"{source}: parameter '{where}.methods' names unknown method '{method}' "
                             f"(known: {', '.join(sorted(METHOD_SCHEMAS))})")
        own = check_value(own or {}, AnyMapping(), f"{where}.methods.{method}", source)
        schema = {**METHOD_SCHEMAS[method], "train": AnyMapping()}
        unknown = sorted(set(own) - set(schema))
        if unknown:
            raise ParamError(f"{source}: unknown parameter '{where}.methods.{method}.{unknown[0]}' "
                             f"(expected one of: {', '.join(sorted(schema))})")
        checked = {k: check_value(v, schema[k], f"{where}.methods.{method}.{k}", source)
                   for k, v in own.items() if k != "train"}
        if "train" in own:
            checked["train"] = _train_overrides(own["train"], f"{where}.methods.{method}.train.", source)
        if checked:
            layer.setdefault("methods", {})[method] = checked
    return layer


# Choices of the dataset kinds' string params (the readers in pipeline/data/ rely on them).
_DATA_CHOICES = {"restval": ("train", "drop"), "missing_images": ("drop", "error"),
                 "tag_vocabulary": ("common", "all")}


def _check_data_values(params: dict, source: str) -> None:
    """Ranges and choices of `data.<name>.*`, `prepare`, `download` and `report`."""
    fail = failer(source)
    for name, entry in params["data"].items():
        for key, options in _DATA_CHOICES.items():
            if key in entry and entry[key] not in options:
                fail(f"data.{name}.{key}", " or ".join(repr(o) for o in options), entry[key])
        for key in ("n_images", "image_size", "min_objects", "captions_per_image", "top_concepts"):
            if key in entry and entry[key] < 1:
                fail(f"data.{name}.{key}", "an integer >= 1", entry[key])
        for key in ("n_val", "n_test", "clutter", "expected_pairs"):
            if key in entry and entry[key] < 0:
                fail(f"data.{name}.{key}", "an integer >= 0", entry[key])
        if entry["kind"] == "shapes":
            if entry["max_objects"] < entry["min_objects"]:
                fail(f"data.{name}.max_objects", f">= min_objects ({entry['min_objects']})", entry["max_objects"])
            if not 1 <= entry["min_object_size"] <= entry["max_object_size"]:
                fail(f"data.{name}.min_object_size", f"in [1, max_object_size ({entry['max_object_size']})]",
                     entry["min_object_size"])
        if entry["kind"] == "coco" and entry["n_val"] and ("val" in entry["splits"] or "train" not in entry["splits"]):
            fail(f"data.{name}.n_val", f"0 when data.{name}.splits maps a val file or no train file "
                                       f"(n_val moves train images to val)", entry["n_val"])
        if "annotation_sets" in entry and not all(isinstance(v, str) and v for v in entry["annotation_sets"]):
            fail(f"data.{name}.annotation_sets", "a list of annotation-file suffixes (e.g. train2014)",
                 entry["annotation_sets"])
    if params["prepare"]["max_captions"] < 0:
        fail("prepare.max_captions", "an integer >= 0", params["prepare"]["max_captions"])
    download = params["download"]
    if download["retries"] < 0:
        fail("download.retries", "an integer >= 0", download["retries"])
    for key in ("retry_wait", "timeout"):
        if not download[key] >= 0:
            fail(f"download.{key}", ">= 0", download[key])
    for key in ("max_extract_gb", "max_extract_ratio"):
        if not download[key] > 0:
            fail(f"download.{key}", "> 0", download[key])
    report = params["report"]
    for key in ("qualitative_queries", "thumbnail_px", "bootstrap_resamples"):
        if report[key] < 1:
            fail(f"report.{key}", "an integer >= 1", report[key])
    for name in report["lambda_methods"]:
        if name not in METHOD_SCHEMAS:
            fail("report.lambda_methods", f"a list of known methods ({', '.join(sorted(METHOD_SCHEMAS))})", name)
    seeds = report["seeds"]
    if any(isinstance(s, bool) or not isinstance(s, int) or s < 0 for s in seeds) or len(set(seeds)) != len(seeds):
        fail("report.seeds", "a list of distinct non-negative integers (the seeds of a seed sweep)", seeds)
    if len(seeds) == 1:
        fail("report.seeds", "[] (no seed sweep) or at least two seeds (a spread needs two runs)", seeds)


def check_text_params(text: dict, source: str = "params.yaml") -> None:
    """Range checks of the `text` section that its type checks cannot express."""
    for key in ("max_len", "min_count", "embedding_dim", "w2v_epochs", "w2v_window"):
        if text[key] < 1:
            raise ParamError(f"{source}: parameter 'text.{key}' must be at least 1, got {shown(text[key])}")
    if text.get("punctuation", "drop") not in ("drop", "keep"):
        raise ParamError(f"{source}: parameter 'text.punctuation' must be 'drop' or 'keep', "
                         f"got {shown(text['punctuation'])}")


def _check_seeds(params: dict, source: str) -> None:
    """Every seed is a non-negative integer (the type is checked by the schema; numpy refuses negatives)."""
    seeds = {"seed": params["seed"], "report.bootstrap_seed": params["report"]["bootstrap_seed"]}
    for name, entry in params["data"].items():
        seeds.update({f"data.{name}.{key}": entry[key] for key in ("seed", "split_seed") if key in entry})
    for key, value in seeds.items():
        if value < 0:
            raise ParamError(f"{source}: parameter '{key}' must be a non-negative integer, got {shown(value)}")


def _check_run_lists(run: dict, source: str) -> None:
    """`run.methods` and `run.exclude` name declared methods."""
    for key in ("methods", "exclude"):
        for name in run[key] or []:
            if not isinstance(name, str) or name not in METHOD_SCHEMAS:
                raise ParamError(f"{source}: parameter 'run.{key}' names unknown method {name!r} "
                                 f"(known: {', '.join(sorted(METHOD_SCHEMAS))})")


MAX_PARAM_NODES = 1_000_000


def _expanded_nodes(root) -> int:
    """How many values a composed YAML document holds once its aliases are expanded (aliases share nodes,
    so this counts each shared node once per use, in time linear in the file)."""
    memo: dict[int, int] = {}

    def count(node) -> int:
        if id(node) in memo:
            return memo[id(node)]
        if isinstance(node, yaml.MappingNode):
            total = 1 + sum(count(k) + count(v) for k, v in node.value)
        elif isinstance(node, yaml.SequenceNode):
            total = 1 + sum(count(v) for v in node.value)
        else:
            total = 1
        memo[id(node)] = total
        return total

    return count(root) if root is not None else 0


def load_params(path: str | Path = "params.yaml") -> dict:
    """Read and validate a params file."""
    path = Path(path)
    if not path.is_file():
        raise ParamError(f"{path}: params file not found")
    text = path.read_text()
    try:
        expanded = _expanded_nodes(yaml.compose(text, Loader=yaml.SafeLoader))
        if expanded > MAX_PARAM_NODES:  # nested aliases ("billion laughs"): every reader that walks it explodes
            raise ParamError(f"{path}: its YAML aliases expand to {expanded:.3g} values (at most {MAX_PARAM_NODES:,}); "
                             f"refusing what looks like an alias bomb")
        raw = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ParamError(f"{path}: not valid YAML ({shown(str(exc), 300)})") from exc
    return validate(raw, str(path))


def dataset_params(params: dict, name: str, source: str = "params.yaml") -> dict:
    """The validated `data.<name>` entry, or an error listing the known datasets."""
    if name not in params["data"]:
        raise ParamError(f"{source}: unknown dataset '{name}' (known: {', '.join(sorted(params['data']))})")
    return params["data"][name]
