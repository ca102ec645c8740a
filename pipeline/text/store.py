"""The text store `data/<ds>/text/` and its reader.

Files (see docs/architecture.md):
  vocab.json       list of tokens; ids 0 <pad>, 1 <unk>, 2 <mask>
  tokens.parquet   one row per caption, ordered by (image row, caption index):
                   row int32 (table row of the image), caption_index int16, ids list<int32>
  embeddings.npy   [V, dim] float32 aligned with vocab.json, <pad> row zeros
  stats.json       counts and OOV rates (a DVC metric)
The folder is written as a whole under a temporary name and renamed, so it is complete or absent.
The metadata of tokens.parquet holds the store's identity: `table_fingerprint` (the prepared table it
was made from; `pipeline.data.table.table_fingerprint`) and `text_fingerprint` (a hash of the vocabulary,
token ids and embeddings), which a trained model records and evaluation compares.
"""
from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.io import atomic_output, write_json
from pipeline.text.vocab import PAD_ID, RESERVED

VOCAB_FILE = "vocab.json"
TOKENS_FILE = "tokens.parquet"
EMBEDDINGS_FILE = "embeddings.npy"
STATS_FILE = "stats.json"
MAX_CAPTIONS_PER_IMAGE = int(np.iinfo(np.int16).max) + 1  # caption_index is int16

TOKENS_SCHEMA = pa.schema([
    ("row", pa.int32()),
    ("caption_index", pa.int16()),
    ("ids", pa.list_(pa.int32())),
])


class TextDataError(ValueError):
    """The text store is incomplete or inconsistent."""


class TextDataNotFoundError(TextDataError, FileNotFoundError):
    """The text store (or one of its files) does not exist."""


def text_dir(data_dir: str | Path, dataset: str) -> Path:
    return Path(data_dir) / dataset / "text"


def _content_fingerprint(vocab: list[str], arrays: list[np.ndarray]) -> str:
    h = hashlib.sha256(json.dumps(vocab).encode())
    for arr in arrays:
        h.update(str(arr.shape).encode() + np.ascontiguousarray(arr).tobytes())
    return h.hexdigest()[:16]


def write_text_data(out_dir: str | Path, *, vocab: list[str], rows: np.ndarray, caption_index: np.ndarray,
                    offsets: np.ndarray, flat_ids: np.ndarray, embeddings: np.ndarray, stats: dict,
                    table_fingerprint: str) -> None:
    """Write the four files of the store into `out_dir`, atomically as one folder; `table_fingerprint`
    names the prepared table the captions come from."""
    if embeddings.shape[0] != len(vocab):
        raise ValueError(f"embedding rows ({embeddings.shape[0]}) differ from the vocabulary size ({len(vocab)})")
    if caption_index.size and int(caption_index.max()) >= MAX_CAPTIONS_PER_IMAGE:
        raise ValueError(f"an image has {int(caption_index.max()) + 1} captions; the store holds at most "
                         f"{MAX_CAPTIONS_PER_IMAGE} per image")
    ids = pa.ListArray.from_arrays(pa.array(offsets.astype(np.int32)), pa.array(flat_ids.astype(np.int32)))
    embeddings = embeddings.astype(np.float32)
    identity = _content_fingerprint(vocab, [rows.astype(np.int32), caption_index.astype(np.int16),
                                            offsets.astype(np.int32), flat_ids.astype(np.int32), embeddings])
    table = pa.table([pa.array(rows.astype(np.int32)), pa.array(caption_index.astype(np.int16)), ids],
                     schema=TOKENS_SCHEMA.with_metadata({"table_fingerprint": table_fingerprint,
                                                         "text_fingerprint": identity}))
    with atomic_output(out_dir) as tmp:
        tmp.mkdir()
        write_json(tmp / VOCAB_FILE, vocab)
        pq.write_table(table, tmp / TOKENS_FILE)
        np.save(tmp / EMBEDDINGS_FILE, embeddings)
        write_json(tmp / STATS_FILE, stats)
        for kept in Path(out_dir).glob(".gitignore"):  # git-tracked (DVC's list of the outputs): not ours to drop
            shutil.copy2(kept, tmp / kept.name)


def _read_json(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise TextDataError(f"{path}: not valid JSON ({exc}); rerun `xmr tokenize`") from exc


class TextData:
    """Read access to a text store: token ids per caption, vocabulary and embedding matrix.

    Captions are numbered 0..n-1 in store order; `caption_rows[c]` is the table row of caption c's
    image and `ids[c]` its token ids.
    """

    def __init__(self, vocab: list[str], embeddings: np.ndarray, caption_rows: np.ndarray,
                 caption_index: np.ndarray, offsets: np.ndarray, flat_ids: np.ndarray, stats: dict,
                 identity: dict[str, str] | None = None):
        self.vocab = vocab
        self.embeddings = embeddings
        self.caption_rows = caption_rows
        self.caption_index = caption_index
        self.offsets = offsets
        self.flat_ids = flat_ids
        self.stats = stats
        self.identity = identity or {}  # table_fingerprint, text_fingerprint (tokens.parquet metadata)
        self._ids: list[np.ndarray] | None = None

    @classmethod
    def load(cls, directory: str | Path) -> "TextData":
        directory = Path(directory)
        for name in (VOCAB_FILE, TOKENS_FILE, EMBEDDINGS_FILE, STATS_FILE):
            if not (directory / name).is_file():
                raise TextDataNotFoundError(f"{directory / name}: text store file not found "
                                            f"(run `xmr tokenize` / `dvc repro` first)")
        vocab = _read_json(directory / VOCAB_FILE)
        if not isinstance(vocab, list) or tuple(vocab[:len(RESERVED)]) != RESERVED or len(set(vocab)) != len(vocab):
            raise TextDataError(f"{directory / VOCAB_FILE}: expected a list of distinct tokens starting with "
                                f"{', '.join(RESERVED)}")
        try:
            embeddings = np.load(directory / EMBEDDINGS_FILE)
        except (ValueError, OSError, EOFError) as exc:  # truncated or not an .npy file
            raise TextDataError(f"{directory / EMBEDDINGS_FILE}: cannot be read ({exc}); rerun `xmr tokenize`") from exc
        if embeddings.ndim != 2 or embeddings.shape[0] != len(vocab):
            raise TextDataError(f"{directory / EMBEDDINGS_FILE}: shape {embeddings.shape}, expected "
                                f"[{len(vocab)}, dim] to match {VOCAB_FILE}")
        try:
            table = pq.read_table(directory / TOKENS_FILE)
        except (pa.ArrowException, OSError) as exc:
            raise TextDataError(f"{directory / TOKENS_FILE}: cannot be read ({exc}); rerun `xmr tokenize`") from exc
        meta = table.schema.metadata or {}
        identity = {key: meta[key.encode()].decode() for key in ("table_fingerprint", "text_fingerprint")
                    if key.encode() in meta}
        missing = [n for n in TOKENS_SCHEMA.names if n not in table.column_names]
        if missing:
            raise TextDataError(f"{directory / TOKENS_FILE}: column '{missing[0]}' missing")
        ids = table.column("ids").combine_chunks()
        lengths = np.asarray(ids.value_lengths().fill_null(0), dtype=np.int64)
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        flat_ids = np.asarray(ids.flatten(), dtype=np.int64)
        if flat_ids.size and (flat_ids.min() < 0 or flat_ids.max() >= len(vocab)):
            raise TextDataError(f"{directory / TOKENS_FILE}: token id outside the vocabulary of {len(vocab)}")
        stats = _read_json(directory / STATS_FILE)
        return cls(vocab, embeddings, np.asarray(table.column("row"), dtype=np.int64),
                   np.asarray(table.column("caption_index"), dtype=np.int64), offsets, flat_ids, stats, identity)

    def __len__(self) -> int:
        return len(self.caption_rows)

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    @property
    def ids(self) -> list[np.ndarray]:
        """Token ids of each caption (views into `flat_ids`)."""
        if self._ids is None:
            self._ids = np.split(self.flat_ids, self.offsets[1:-1])
        return self._ids

    def captions_of_rows(self, rows) -> np.ndarray:
        """Caption numbers whose image is one of the table rows `rows`, in store order."""
        return np.flatnonzero(np.isin(self.caption_rows, np.asarray(rows)))

    def pad_batch(self, caption_indices, max_len: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """`(ids [B, L] int64, lengths [B] int64)` for the given captions, padded with `<pad>` (0).

        Each caption is cut to `max_len` tokens; L is the longest (cut) caption of the batch, so a
        batch of short captions stays narrow.
        """
        idx = np.asarray(caption_indices, dtype=np.int64)
        starts = self.offsets[idx]
        lengths = self.offsets[idx + 1] - starts
        if max_len is not None:
            lengths = np.minimum(lengths, max_len)
        width = int(lengths.max()) if lengths.size else 0
        cols = np.arange(width)
        valid = cols[None, :] < lengths[:, None]
        source = np.where(valid, starts[:, None] + cols[None, :], 0)
        out = np.where(valid, self.flat_ids[source], PAD_ID)
        return out.astype(np.int64), lengths
