"""The `download` stage. The embedded `shapes` dataset is generated offline from its seed; the real
datasets and the assets (word vectors, detector weights) are fetched from the registry.

A real dataset's `data/<dataset>/raw/` holds only `manifest.json` (which source files, their sha256
and where they were extracted): the large files live in `download.dir`, shared between datasets (the
Karpathy archive serves COCO, Flickr30k and Flickr8k) and kept out of the DVC cache.
"""
from __future__ import annotations

import copy
from pathlib import Path

from pipeline.data import archives, registry as reg, shapes
from pipeline.data.fetch import FetchSettings, check_mirrors, fetch_file
from pipeline.data.prepare import MANIFEST, raw_dir
from pipeline.io import write_json
from pipeline.params import DOWNLOAD_SCHEMA, AnyMapping
from pipeline.project_paths import project_path


def default_download_params() -> dict:
    return {k: (copy.deepcopy(v.default) if isinstance(v, AnyMapping) else v) for k, v in DOWNLOAD_SCHEMA.items()}


def user_provided(dparams: dict, source_name: str) -> bool:
    """Whether the user points at their own copy of a source, so nothing needs downloading."""
    if source_name == "karpathy":
        return bool(dparams.get("karpathy_json"))
    return bool(dparams.get("root"))


def fetch_source(src: reg.Source, settings: FetchSettings) -> dict:
    """Download every file of a source and extract its archives; returns its manifest entry."""
    files = {}
    check_mirrors(src, settings.mirrors)
    for entry in src.files:
        info = fetch_file(entry, settings, src.alternatives)
        if entry.extract:
            archives.extract_once(info["path"], reg.extracted_dir(settings.download_dir, src.name), info["sha256"],
                                  settings.progress, settings.max_extract_gb, settings.max_extract_ratio)
        files[entry.name] = info
    out = {"files": files}
    if any(e.extract for e in src.files):
        out["extracted"] = str(reg.extracted_dir(settings.download_dir, src.name))
    return out


def download_dataset(dataset: str, dparams: dict, data_dir: str | Path = "data",
                     download_params: dict | None = None) -> dict:
    """Materialise `data/<dataset>/raw`; returns per-split image counts (shapes) or per-source file counts."""
    kind = dparams["kind"]
    if kind == "shapes":
        return shapes.generate(raw_dir(data_dir, dataset), dparams)
    if kind == "coco":
        return record_local_coco(dataset, dparams, data_dir)
    download_params = download_params or default_download_params()
    settings = FetchSettings.from_params(download_params)
    sources = reg.load_registry(download_params["registry"])
    needed = reg.sources_for_kind(sources, kind)
    if not needed:
        raise reg.RegistryError(f"{download_params['registry']}: no source is used by dataset kind '{kind}'")
    manifest = {"dataset": dataset, "kind": kind, "sources": {}, "user_provided": []}
    for src in needed:
        if user_provided(dparams, src.name):
            manifest["user_provided"].append(src.name)
            continue
        fetched = fetch_source(src, settings)
        # Only what identifies the bytes: the manifest is a DVC output and must not change with the mirror used.
        fetched["files"] = {name: {k: f[k] for k in ("path", "sha256", "size")} for name, f in fetched["files"].items()}
        manifest["sources"][src.name] = fetched
    write_json(raw_dir(data_dir, dataset) / MANIFEST, manifest)
    return {name: len(entry["files"]) for name, entry in manifest["sources"].items()}


def record_local_coco(dataset: str, dparams: dict, data_dir: str | Path = "data") -> dict:
    """Kind `coco` is read in place from `data.<dataset>.root`: nothing to fetch. Checks that the folder
    holds every split's annotation files and image folder, and records their sha256 and image counts in
    `data/<dataset>/raw/manifest.json`, the stage's output (prepare checks it: `check_local_coco`)."""
    root = project_path(dparams["root"]) if dparams["root"] else None
    if root is None or not root.is_dir():
        raise FileNotFoundError(f"params: data.{dataset}.root is {dparams['root']!r}: expected the folder of a "
                                f"COCO-layout dataset (annotations/, one image folder per split), not found")
    manifest = {"dataset": dataset, "kind": "coco", "root": str(dparams["root"]), "sources": {},
                "user_provided": ["root"], "annotations": local_coco_hashes(root, dparams["splits"])}
    write_json(raw_dir(data_dir, dataset) / MANIFEST, manifest)
    return {suffix: sum(1 for f in (root / suffix).iterdir() if f.is_file()) for suffix in dparams["splits"].values()}


def local_coco_hashes(root: Path, splits: dict) -> dict[str, str]:
    """sha256 of each annotation file the split suffixes name; a missing file or image folder is an error."""
    from pipeline.data.splits import file_sha256

    out = {}
    for suffix in dict.fromkeys(splits.values()):
        if not (root / suffix).is_dir():
            raise FileNotFoundError(f"{root / suffix}: image folder of split file suffix '{suffix}' not found")
        for name in (f"captions_{suffix}.json", f"instances_{suffix}.json"):
            path = root / "annotations" / name
            if not path.is_file():
                raise FileNotFoundError(f"{path}: annotation file not found")
            out[name] = file_sha256(path)
    return out


def download_asset(name: str, download_params: dict | None = None) -> dict:
    """Fetch an asset source (word2vec, weights) into `download.dir/<name>/`; returns its manifest entry."""
    download_params = download_params or default_download_params()
    sources = reg.load_registry(download_params["registry"])
    src = reg.source(sources, name)
    if "asset" not in src.used_by:
        raise reg.RegistryError(f"source '{name}' belongs to a dataset; download it with `xmr download <dataset>` "
                                f"for a dataset of kind {', '.join(src.used_by)}")
    return fetch_source(src, FetchSettings.from_params(download_params))

