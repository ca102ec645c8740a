"""Word vectors: a word2vec-format file through a native cache made once, or Word2Vec on the captions.

GoogleNews-vectors-negative300.bin.gz holds 3,000,000 x 300 floats; gensim's word2vec-format reader
parses it word by word (minutes, the whole matrix in memory). `load_vectors` parses a file once, saves
it as gensim's native KeyedVectors (pickled index + the matrix as its own `.npy`) in
`<cache dir>/<file name>.kv/`, and from then on loads that copy with `mmap='r'`: only the rows the
vocabulary asks for are read from disk. The copy records the source's size, modification time and
header; a changed source (or an unreadable copy) is converted again.

Which format: the header line is `<count> <dim>`; if the next line parses as a word and `dim` numbers
the file is text, otherwise binary. `.gz` files are read through gzip.

Out-of-vocabulary policy of `embedding_matrix` (the rows of `embeddings.npy`):
- `<pad>` is zeros.
- A vocabulary word (lower case) is looked up as written, then Capitalised, then UPPER CASE, then
  with every digit written as '#' (GoogleNews is case-sensitive and spells digits as '#').
- `<unk>`, `<mask>` and words found under none of those keys get random vectors N(0, s^2), s the
  standard deviation of the found vectors (0.1 if none was found), from a generator seeded with
  `seed`: reproducible and on the scale of the real rows, so training can move them.
"""
from __future__ import annotations

import gzip
import json
import logging
import re
import zlib
from pathlib import Path

import numpy as np
from gensim.models import KeyedVectors, Word2Vec
from gensim.models.callbacks import CallbackAny2Vec
from tqdm import tqdm

from pipeline.io import atomic_output, write_json
from pipeline.text.vocab import PAD_ID, RESERVED

log = logging.getLogger(__name__)

NATIVE_NAME = "vectors.kv"
SOURCE_NAME = "source.json"
LOOKUP_RULES = ("exact", "capitalized", "upper", "digits_as_hash")
_GZIP_MAGIC = b"\x1f\x8b"


class VectorsError(ValueError):
    """A word-vectors file is corrupt, truncated, of the wrong dimension, or cannot be cached."""


class VectorsNotFoundError(VectorsError, FileNotFoundError):
    """The word-vectors file named by `text.word2vec_path` does not exist."""


def _open(path: Path):
    return gzip.open(path, "rb") if path.name.endswith(".gz") else path.open("rb")


def _record_format(path: Path, line: bytes, dim: int) -> bool:
    """True for a binary file, False for text, judged from the first record after the header."""
    try:
        fields = line.decode("utf-8").split()
        np.asarray(fields[1:], dtype=np.float64)
    except (UnicodeDecodeError, ValueError):
        return True
    if len(fields) < 2 or not line.endswith(b"\n"):
        return True
    if len(fields) != dim + 1:
        raise VectorsError(f"{path}: text-format rows hold {len(fields) - 1} numbers but the header says "
                           f"dimension {dim}")
    return False


def read_header(path: str | Path) -> tuple[int, int, bool]:
    """`(count, dim, binary)` of a word2vec-format file, read from its first two lines."""
    path = Path(path)
    if not path.is_file():
        raise VectorsNotFoundError(f"{path}: word-vectors file not found (parameter 'text.word2vec_path')")
    with path.open("rb") as raw:
        magic = raw.read(2)
    if magic == _GZIP_MAGIC and not path.name.endswith(".gz"):
        raise VectorsError(f"{path}: gzip-compressed but the name does not end in .gz; rename it")
    try:
        with _open(path) as f:
            header = f.readline(256)
            fields = header.split()
            if len(fields) != 2 or not all(x.isdigit() for x in fields):
                raise VectorsError(f"{path}: not a word2vec-format file: the first line should be "
                                   f"'<count> <dim>', got {header[:60]!r}")
            count, dim = int(fields[0]), int(fields[1])
            if count < 1 or dim < 1:
                raise VectorsError(f"{path}: header says {count} vectors of dimension {dim}; expected at least one")
            record = f.readline(64 * 1024 + 32 * dim)
    except (OSError, EOFError, zlib.error) as exc:
        raise VectorsError(f"{path}: cannot read the word2vec header ({exc})") from exc
    if not record:
        raise VectorsError(f"{path}: truncated: the header announces {count} vectors but none follow")
    return count, dim, _record_format(path, record, dim)


def native_cache_path(source: str | Path, cache_dir: str | Path | None = None) -> Path:
    """Folder of the native copy of `source`: `<cache_dir or source's folder>/<source name>.kv`."""
    source = Path(source)
    return Path(cache_dir or source.parent) / f"{source.name}.kv"


def _signature(source: Path, count: int, dim: int, binary: bool) -> dict:
    stat = source.stat()
    return {"source": source.name, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns,
            "count": count, "dim": dim, "binary": binary}


def _load_native(cache: Path, signature: dict) -> KeyedVectors | None:
    """The cached copy memory-mapped, or None when it is missing, stale or unreadable."""
    try:
        if json.loads((cache / SOURCE_NAME).read_text()) != signature:
            return None
        kv = KeyedVectors.load(str(cache / NATIVE_NAME), mmap="r")
    except FileNotFoundError:
        return None
    except Exception as exc:  # a damaged copy is rebuilt, not fatal
        log.warning("%s: unreadable native copy (%s); converting again", cache, exc)
        return None
    if kv.vectors.shape[1] != signature["dim"]:
        return None
    return kv


def _check_binary_size(source: Path, kv: KeyedVectors, count: int, dim: int) -> None:
    """A binary file whose records are not `dim` floats long can still parse; its size gives it away."""
    if len(kv) != count:  # duplicate words were dropped; their bytes cannot be accounted for
        return
    with source.open("rb") as f:
        header = len(f.readline())
    words = sum(len(w.encode("utf-8")) for w in kv.index_to_key)
    extra = source.stat().st_size - (header + words + count * (1 + 4 * dim))
    if not 0 <= extra <= count:  # at most one newline per record
        raise VectorsError(f"{source}: file size does not match {count} binary records of dimension {dim}; "
                           f"the vectors are of another dimension than the header says, or the file is damaged")


def convert_to_native(source: str | Path, cache_dir: str | Path | None = None) -> Path:
    """Parse a word2vec-format file and save it as native KeyedVectors; returns the copy's folder."""
    source = Path(source)
    count, dim, binary = read_header(source)
    cache = native_cache_path(source, cache_dir)
    log.info("parsing %s (%d x %d, %s) once into %s", source, count, dim, "binary" if binary else "text", cache)
    try:
        kv = KeyedVectors.load_word2vec_format(str(source), binary=binary)
    except Exception as exc:  # gensim raises EOFError, ValueError, UnicodeDecodeError, zlib errors...
        raise VectorsError(f"{source}: corrupt or truncated word2vec {'binary' if binary else 'text'} file "
                           f"({type(exc).__name__}: {exc})") from exc
    if binary and not source.name.endswith(".gz"):
        _check_binary_size(source, kv, count, dim)
    try:
        with atomic_output(cache) as tmp:
            tmp.mkdir()
            kv.save(str(tmp / NATIVE_NAME), separately=["vectors"])
            write_json(tmp / SOURCE_NAME, _signature(source, count, dim, binary))
    except OSError as exc:
        raise VectorsError(f"{cache}: cannot write the native copy of {source} ({exc}); "
                           f"set parameter 'text.word2vec_cache_dir' to a writable folder") from exc
    return cache


def load_vectors(path: str | Path, dim: int, cache_dir: str | Path | None = None) -> KeyedVectors:
    """Vectors of a word2vec-format file, memory-mapped from its native copy (made on first use)."""
    source = Path(path)
    count, found_dim, binary = read_header(source)
    if found_dim != dim:
        raise VectorsError(f"{source}: vectors have dimension {found_dim}, expected {dim} "
                           f"(parameter 'text.embedding_dim')")
    cache = native_cache_path(source, cache_dir)
    signature = _signature(source, count, dim, binary)
    kv = _load_native(cache, signature)
    if kv is None:
        convert_to_native(source, cache_dir)
        kv = _load_native(cache, signature)
        if kv is None:
            raise VectorsError(f"{cache}: the native copy of {source} could not be read back")
    return kv


def _stable_hash(text: str) -> int:
    """Process-independent replacement for `hash` (gensim's default is salted per process)."""
    return zlib.crc32(text.encode("utf-8"))


class _EpochBar(CallbackAny2Vec):
    def __init__(self, bar: tqdm):
        self.bar = bar

    def on_epoch_end(self, model):
        self.bar.update(1)


def train_word2vec(sentences: list[list[str]], dim: int, *, epochs: int, window: int, min_count: int,
                   skipgram: bool, seed: int, progress: bool = False) -> KeyedVectors:
    """Word2Vec on tokenised captions; one worker thread and a fixed seed make it reproducible."""
    for name, value in (("text.embedding_dim", dim), ("text.w2v_epochs", epochs), ("text.w2v_window", window)):
        if value < 1:
            raise ValueError(f"parameter '{name}' must be a positive integer, got {value!r}")
    if not any(sentences):
        raise ValueError("no training tokens to train Word2Vec on (the training captions are all empty)")
    model = Word2Vec(vector_size=dim, window=window, min_count=min_count, sg=int(skipgram), seed=seed,
                     workers=1, epochs=epochs, hashfxn=_stable_hash)
    model.build_vocab(sentences)
    with tqdm(total=epochs, desc="word2vec", unit="epoch", disable=not progress) as bar:
        model.train(sentences, total_examples=model.corpus_count, epochs=epochs, callbacks=[_EpochBar(bar)])
    return model.wv


def _lookup_keys(word: str) -> tuple[str, str, str, str]:
    return word, word[:1].upper() + word[1:], word.upper(), re.sub(r"\d", "#", word)


def embedding_matrix(vocab: list[str], vectors: KeyedVectors, seed: int) -> tuple[np.ndarray, np.ndarray, dict]:
    """`[V, dim]` float32 rows aligned with `vocab` under the policy above.

    Returns the matrix, a bool mask of the rows that hold a real vector, and how many words each
    lookup rule matched.
    """
    index = vectors.key_to_index
    source_rows = np.full(len(vocab), -1, dtype=np.int64)
    matched = dict.fromkeys(LOOKUP_RULES, 0)
    for i, word in enumerate(vocab):  # O(vocabulary), a few dict lookups per word
        if i < len(RESERVED):
            continue
        for rule, key in zip(LOOKUP_RULES, _lookup_keys(word)):
            row = index.get(key)
            if row is not None:
                source_rows[i] = row
                matched[rule] += 1
                break
    found = source_rows >= 0
    out = np.zeros((len(vocab), vectors.vector_size), dtype=np.float32)
    if found.any():
        out[found] = np.asarray(vectors.vectors[source_rows[found]], dtype=np.float32)
    scale = float(out[found].std()) if found.any() else 0.1
    random_rows = ~found
    random_rows[PAD_ID] = False
    rng = np.random.default_rng(seed)
    out[random_rows] = rng.normal(0.0, scale, size=(int(random_rows.sum()), out.shape[1])).astype(np.float32)
    return out, found, matched
