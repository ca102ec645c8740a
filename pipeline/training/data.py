"""Training and scoring data: the prepared table, region features and caption tokens as batches.

`RetrievalData` joins the three upstream artifacts by table row (the canonical image order),
checks that they agree before any training starts, and serves `ImageBatch` / `TextBatch` /
`PairBatch` objects. Region features of the splits in use are held in memory as float16 when
they fit in `cache_gb` (None: what the machine has available minus a margin); otherwise they are
streamed from the Zarr store (a training epoch reads them window by window, `epoch_batches`), and only
the boxes' positions and classes are held. `cache_note` says which, and why, in one line.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np
import pyarrow as pa
import torch
from tqdm import tqdm

from pipeline.contract.batches import PAD_ID, DataInfo, ImageBatch, PairBatch, TextBatch
from pipeline.data.labels import multi_hot
from pipeline.data.table import SPLITS, label_names, read_table, table_fingerprint, table_path

READ_CHUNK = 512  # rows per store read while filling the cache
REGION_ARRAYS = ("features", "positions", "classes")  # what a batch reads of the store


def take_rows(values: np.ndarray, index: np.ndarray) -> np.ndarray:
    """`values[index]` along the first axis, copied by torch's `index_select` (on its threads: 1.2x numpy's
    fancy index for 64 rows of 36 x 2048 float16; bench/scale.py's rows from the cache)."""
    return torch.from_numpy(values).index_select(0, torch.from_numpy(np.asarray(index, dtype=np.int64))).numpy()


def available_memory_gb() -> float:
    """Memory this machine can give without swapping now (Linux `MemAvailable`; else the physical total)."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) / 2**20
    except (OSError, ValueError, IndexError):
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30


# How many xmr stages run side by side on this machine (`make repro` sets it to its lanes): each takes that
# share of the available memory for its cache, since they all start by reading the same `MemAvailable`.
CONCURRENT_STAGES = "XMR_CONCURRENT_STAGES"


def concurrent_stages() -> int:
    """`XMR_CONCURRENT_STAGES` as a count >= 1 (1 when unset)."""
    raw = os.environ.get(CONCURRENT_STAGES, "").strip()
    if not raw:
        return 1
    if not raw.isdigit() or int(raw) < 1:
        raise ValueError(f"environment variable {CONCURRENT_STAGES} must be a whole number >= 1 (how many xmr "
                         f"stages run at once on this machine), got {raw!r}")
    return int(raw)


def cache_limit_gb(setting: float | None) -> tuple[float, str]:
    """`(GiB, where the number came from)`: `train.cache_features_gb`, or for null what the machine has
    available, divided among the stages that run at once (`XMR_CONCURRENT_STAGES`), minus a margin of each
    share (a quarter of it, at least 2 GiB) for that stage's model, optimiser and the rest."""
    if setting is not None:
        return float(setting), "train.cache_features_gb"
    available, stages = available_memory_gb(), concurrent_stages()
    share = available / stages
    source = f"the {available:.1f} GiB available minus a margin"
    if stages > 1:
        source = f"a 1/{stages} share ({stages} stages at once, {CONCURRENT_STAGES}) of {source}"
    return max(0.0, share - max(2.0, share / 4)), source


class DataInputError(ValueError):
    """The table, feature store and text store do not fit together."""


@dataclass(frozen=True)
class SplitItems:
    """The images of one split and the captions of those images (caption indices)."""

    image_rows: np.ndarray
    captions: np.ndarray


def features_path(data_dir: str | Path, dataset: str) -> Path:
    return Path(data_dir) / dataset / "features.zarr"


def text_path(data_dir: str | Path, dataset: str) -> Path:
    return Path(data_dir) / dataset / "text"


class RetrievalData:
    """Table + feature store + text store of one dataset, validated against each other."""

    def __init__(self, table: pa.Table, store: Any, text: Any, *, cache_splits: Iterable[str] = (),
                 cache_gb: float | None = 8.0, names: dict[str, str] | None = None, progress: bool = False,
                 log: Callable[[str], None] | None = None):
        names = {"table": "table", "features": "feature store", "text": "text store", **(names or {})}
        self.names = names
        self.table, self.store, self.text = table, store, text
        self.inputs: dict[str, str] = {}  # identities of the files read (`open`), recorded by a trained model
        n = table.num_rows
        if len(store) != n:
            raise DataInputError(f"{names['features']}: {len(store)} rows but {names['table']} has {n} images; "
                                 f"the features must be re-extracted for this table (`xmr extract`)")
        caption_rows = np.asarray(text.caption_rows, dtype=np.int64)
        if caption_rows.size and (caption_rows.min() < 0 or caption_rows.max() >= n):
            raise DataInputError(f"{names['text']}: captions refer to image rows up to {int(caption_rows.max())} "
                                 f"but {names['table']} has {n} images; re-run `xmr tokenize`")
        self.caption_rows = caption_rows
        self.split = np.asarray(table.column("split").to_pylist(), dtype=object)
        # images the extractor could not read have no features: every split leaves them out
        self.valid = np.asarray(getattr(store, "valid", np.ones(n, dtype=bool)), dtype=bool)
        if self.valid.shape != (n,):
            raise DataInputError(f"{names['features']}: 'valid' has shape {self.valid.shape}, expected ({n},)")
        self._has_caption = np.bincount(caption_rows, minlength=n)[:n] > 0
        self.labels = multi_hot(table).astype(np.float32)
        first = store.read(np.array([0]))
        embeddings = np.asarray(text.embeddings)
        self.info = DataInfo(feature_dim=int(first["features"].shape[-1]), num_regions=int(first["features"].shape[1]),
                             num_detector_classes=int(store.num_classes), vocab_size=len(text.vocab),
                             word_dim=int(embeddings.shape[1]), num_labels=len(label_names(table)), num_images=n)
        if int(store.dim) != self.info.feature_dim:
            raise DataInputError(f"{names['features']}: attribute feature_dim {store.dim} but features are "
                                 f"{self.info.feature_dim}-d")
        self._slot = np.full(n, -1, dtype=np.int64)
        self._cache: dict[str, np.ndarray] | None = None
        rows = np.flatnonzero(np.isin(self.split, list(cache_splits)) & self.valid)
        need = len(rows) * self.info.num_regions * self.info.feature_dim * 2 / 2**30
        limit, source = cache_limit_gb(cache_gb)
        if len(rows) and need <= limit:
            self._fill_cache(rows, progress, REGION_ARRAYS)
            self.cache_note = (f"features of {', '.join(cache_splits)}: held in memory ({need:.2f} GiB; limit "
                               f"{limit:.1f} GiB from {source})")
        else:
            self.cache_note = (f"features of {', '.join(cache_splits)}: streamed from {names['features']}: they need "
                               f"{need:.2f} GiB, over the limit of {limit:.1f} GiB from {source}")
            boxes = len(rows) * self.info.num_regions * (5 * 4 + 8) / 2**30  # positions float32, classes int64
            if len(rows) and boxes <= limit:  # 0.7% of 2048-d features: spares each read two small arrays
                self._fill_cache(rows, progress, ("positions", "classes"))
                self.cache_note += f"; their boxes' positions and classes are held in memory ({boxes:.2f} GiB)"
        if log is not None and len(rows):
            log(self.cache_note)

    @classmethod
    def open(cls, data_dir: str | Path, dataset: str, **kwargs) -> "RetrievalData":
        """Open `data/<dataset>/{table.parquet, features.zarr, text/}` (errors name the missing file)."""
        from pipeline.detection.store import FeatureStore
        from pipeline.text.store import TextData

        tpath, fpath, xpath = table_path(data_dir, dataset), features_path(data_dir, dataset), text_path(data_dir, dataset)
        table = read_table(tpath)
        if not fpath.exists():
            raise FileNotFoundError(f"{fpath}: feature store not found (run `xmr extract {dataset}` / `dvc repro`)")
        store = FeatureStore(fpath)
        text = TextData.load(xpath)
        names = {"table": str(tpath), "features": str(fpath), "text": str(xpath)}
        want = table_fingerprint(table)
        for label, path, got in (("feature store", fpath, store.table_fingerprint),
                                 ("text store", xpath / "tokens.parquet", text.identity.get("table_fingerprint"))):
            if got != want:
                made = f"table {got}" if got else "a table it does not record (made before stores recorded one)"
                raise DataInputError(f"{path}: {label} was made from {made}, but {tpath} is table {want}; rerun "
                                     f"`xmr {'extract' if label == 'feature store' else 'tokenize'} {dataset}` "
                                     f"(or `dvc repro`)")
        data = cls(table, store, text, names=names, **kwargs)
        data.inputs = {"table": want, "features": store.fingerprint, "text": text.identity.get("text_fingerprint")}
        return data

    # --- items -------------------------------------------------------------------------------
    def split_items(self, split: str, max_images: int = 0) -> SplitItems:
        """Images of `split` that have features and at least one caption, and their captions;
        `max_images` > 0 keeps the first that many images in table order (SCAN's official COCO
        validation on the first 1,000 dev images).

        An image without any caption (a NUS-WIDE pair without any of the 1k tags, kept by
        `require_tags: false`) forms no image-text pair: it is never trained on, and scoring leaves it
        out, since its instance-level rank is undefined (docs/fidelity.md; `without_captions` counts them)."""
        if split not in SPLITS:
            raise ValueError(f"unknown split '{split}' (expected one of {', '.join(SPLITS)})")
        rows = np.flatnonzero((self.split == split) & self.valid & self._has_caption)
        if max_images > 0:
            rows = rows[:max_images]
        return SplitItems(rows, np.flatnonzero(np.isin(self.caption_rows, rows)))

    def without_captions(self, split: str) -> int:
        """Images of `split` with features but no caption: left out of `split_items`."""
        return int(np.count_nonzero((self.split == split) & self.valid & ~self._has_caption))

    def is_streamed(self, captions: np.ndarray) -> bool:
        """The features of some of these captions' images are read from the store, not the cache."""
        return "features" not in (self._cache or {}) or bool((self._slot[self.caption_rows[captions]] < 0).any())

    def stream_block_rows(self, captions: np.ndarray) -> int | None:
        """Rows per inner chunk of the store when these captions are streamed from it (the unit of block
        shuffling, `pipeline.training.order`); None when they are cached or the store has no chunks."""
        rows = getattr(self.store, "inner_chunk_rows", None)
        return int(rows) if rows and self.is_streamed(captions) else None

    def fingerprint(self) -> str:
        """Hash of what a trained model depends on: shapes, splits, caption ownership, labels, and the
        identities of the files read (`inputs`)."""
        h = hashlib.sha256(repr(sorted(self.info.to_json().items())).encode())
        h.update(json.dumps(self.inputs, sort_keys=True).encode())
        for arr in (self.split.astype(str), self.valid, self.caption_rows, self.labels, np.asarray(self.text.lengths)):
            h.update(np.ascontiguousarray(arr).tobytes())
        return h.hexdigest()[:16]

    # --- region features ---------------------------------------------------------------------
    def _check_classes(self, classes: np.ndarray) -> None:
        if classes.size and classes.max() >= self.info.num_detector_classes:
            raise DataInputError(f"{self.names['features']}: RoI class {int(classes.max())} outside the "
                                 f"detector's {self.info.num_detector_classes} classes")

    def _fill_cache(self, rows: np.ndarray, progress: bool, arrays: tuple[str, ...]) -> None:
        r, d = self.info.num_regions, self.info.feature_dim
        empty = {"features": ((r, d), np.float16), "positions": ((r, 5), np.float32), "classes": ((r,), np.int64)}
        cache = {k: np.empty((len(rows), *empty[k][0]), empty[k][1]) for k in arrays}
        what = "features" if "features" in arrays else "boxes"
        for start in tqdm(range(0, len(rows), READ_CHUNK), desc=f"loading {what}", unit="chunk",
                          disable=not progress, leave=False):
            self.store.read(rows[start:start + READ_CHUNK], float32=False, arrays=arrays,
                            out={key: values[start:start + READ_CHUNK] for key, values in cache.items()})
        self._check_classes(cache["classes"])
        self._slot[rows] = np.arange(len(rows))
        self._cache = cache

    def regions(self, rows: np.ndarray) -> dict[str, np.ndarray]:
        """Features (float16 as stored), positions and RoI classes of table `rows`: what the cache holds of
        them when it holds every row, the rest read from the store."""
        slots = self._slot[rows]
        held = self._cache if self._cache is not None and (slots >= 0).all() else {}
        out = {k: take_rows(v, slots) for k, v in held.items()}
        missing = tuple(k for k in REGION_ARRAYS if k not in held)
        if missing:
            unique, inverse = np.unique(rows, return_inverse=True)  # sorted reads are faster on Zarr
            part = self.store.read(unique, float32=False, arrays=missing)
            out.update({k: np.asarray(part[k])[inverse] for k in missing})
            if "classes" in missing:
                self._check_classes(out["classes"])
        return {k: out[k] for k in REGION_ARRAYS}

    # --- batches -----------------------------------------------------------------------------
    def image_batch(self, rows, regions: dict[str, np.ndarray] | None = None) -> ImageBatch:
        """The images of table `rows`; `regions`: their arrays already read (`regions(rows)`), as a streamed
        epoch gathers them from its window (`pipeline.training.epoch_batches`)."""
        rows = np.asarray(rows, dtype=np.int64)
        reg = self.regions(rows) if regions is None else regions
        return ImageBatch(rows=torch.from_numpy(rows),
                          features=torch.from_numpy(np.ascontiguousarray(reg["features"])),  # float32 by `to`
                          positions=torch.from_numpy(np.ascontiguousarray(reg["positions"], dtype=np.float32)),
                          classes=torch.from_numpy(np.ascontiguousarray(reg["classes"], dtype=np.int64)),
                          labels=torch.from_numpy(self.labels[rows]))

    def text_batch(self, captions) -> TextBatch:
        captions = np.asarray(captions, dtype=np.int64)
        ids, lengths = self.text.pad_batch(captions)
        if ids.shape[1] == 0:  # only empty captions: keep one pad column
            ids = np.full((len(captions), 1), PAD_ID, dtype=np.int64)
        rows = self.caption_rows[captions]
        return TextBatch(captions=torch.from_numpy(captions), rows=torch.from_numpy(rows),
                         ids=torch.from_numpy(np.asarray(ids, dtype=np.int64)),
                         lengths=torch.from_numpy(np.asarray(lengths, dtype=np.int64)),
                         labels=torch.from_numpy(self.labels[rows]))

    def pair_batch(self, captions, regions: dict[str, np.ndarray] | None = None) -> PairBatch:
        """Captions and their images, aligned item by item (`regions`: as for `image_batch`)."""
        captions = np.asarray(captions, dtype=np.int64)
        return PairBatch(self.image_batch(self.caption_rows[captions], regions), self.text_batch(captions))
