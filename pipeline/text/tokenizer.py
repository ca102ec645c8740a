"""Caption tokenisation.

The policy every later stage relies on:
- Text is NFKC-normalised (full-width letters, ligatures and decomposed accents fold to one form),
  curly apostrophes become `'`, then everything is lower-cased.
- A token is a run of letters, digits and combining marks that starts with a letter or digit; inner
  apostrophes join (`don't`, `man's` stay one token). Everything else separates tokens and is dropped:
  punctuation, symbols, emoji, whitespace, underscores, hyphens (`t-shirt` -> `t`, `shirt`;
  `3.5` -> `3`, `5`; `'quoted'` -> `quoted`).
- Non-Latin scripts tokenise the same way (Cyrillic, Greek, Arabic, Devanagari with its vowel signs);
  scripts written without spaces (Chinese, Japanese, Thai) are not segmented: a run is one token.
- Only the first `max_len` tokens of a caption are kept.
- A caption without any token (empty, whitespace or punctuation only) gives an empty list; what an
  empty caption becomes in the store is decided in `pipeline.text.build`.

Matching: the pattern is compiled by `nltk.redos`, the machinery behind nltk's `RegexpTokenizer`
(the `regex` engine, which knows Unicode classes); per caption the result equals
`RegexpTokenizer(WORD_PATTERN).tokenize(normalize(text))`. Python-level work per caption would
dominate at COCO scale (616k captions), so `tokenize_corpus` joins a chunk of captions with a separator
the pattern also matches, runs one match call per chunk and recovers the caption boundaries with array
operations. nltk's wall-clock ReDoS guard is switched off for this one fixed pattern: it is linear (the
apostrophe separates the repeated groups) and the guard's checks tripled the matching time
(measured in bench/text_tokenize.py).
"""
from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from nltk import redos
from tqdm import tqdm

WORD_PATTERN = r"[\p{L}\p{N}][\p{L}\p{M}\p{N}]*(?:'[\p{L}\p{M}\p{N}]+)*"
SEPARATOR = "\x00"
_CORPUS_PATTERN = redos.compile(r"\x00|" + WORD_PATTERN, timeout=None)
# `text.punctuation: keep` (SCAN's official tokenizer keeps punctuation): each punctuation mark is a token.
_CORPUS_PATTERN_PUNCT = redos.compile(r"\x00|" + WORD_PATTERN + r"|\p{P}", timeout=None)
START, END = "<start>", "<end>"  # `text.start_end_tokens` (SCAN's official vocabulary)
_APOSTROPHES = ("\u2019", "\u2018", "\u02bc")
CHUNK_SIZE = 20_000


@dataclass(frozen=True)
class TokenizedCorpus:
    """The tokens of many captions, stored flat: caption i is `tokens[offsets[i]:offsets[i+1]]`."""

    tokens: pa.Array          # large_string, kept tokens caption after caption
    offsets: np.ndarray       # int64 [n + 1]
    full_lengths: np.ndarray  # int64 [n], tokens per caption before truncation

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def caption(self, i: int) -> list[str]:
        return self.tokens[int(self.offsets[i]):int(self.offsets[i + 1])].to_pylist()

    def token_captions(self) -> np.ndarray:
        """Caption index of each token (int64, same length as `tokens`)."""
        return np.repeat(np.arange(len(self), dtype=np.int64), self.lengths)


def normalize(text: str) -> str:
    """NFKC, straight apostrophes, lower case: the form the token pattern is matched against."""
    text = unicodedata.normalize("NFKC", text)
    for mark in _APOSTROPHES:
        text = text.replace(mark, "'")
    return text.lower()


def _check_max_len(max_len: int | None) -> None:
    if max_len is not None and (isinstance(max_len, bool) or not isinstance(max_len, int) or max_len < 1):
        raise ValueError(f"parameter 'text.max_len' must be a positive integer, got {max_len!r}")


def _tokenize_chunk(texts: Sequence[str], max_len: int | None,
                    punctuation: bool = False) -> tuple[pa.Array, np.ndarray]:
    """Kept tokens of `texts` (flat) and each caption's token count before truncation."""
    joined = SEPARATOR.join(texts)
    if joined.count(SEPARATOR) != len(texts) - 1:  # a caption holds the separator itself: blank it
        joined = SEPARATOR.join(t.replace(SEPARATOR, " ") for t in texts)
    pattern = _CORPUS_PATTERN_PUNCT if punctuation else _CORPUS_PATTERN
    found = pa.array(pattern.findall(normalize(joined)), type=pa.large_string())
    is_sep = pc.equal(found, SEPARATOR).to_numpy(zero_copy_only=False)
    owner = np.cumsum(is_sep)[~is_sep]            # caption of each word token
    words = found.filter(pa.array(~is_sep))
    counts = np.bincount(owner, minlength=len(texts)).astype(np.int64)
    if max_len is not None and len(owner) and counts.max() > max_len:
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
        position = np.arange(len(owner)) - starts[owner]
        words = words.filter(pa.array(position < max_len))
    return words, counts


def tokenize_corpus(texts: Sequence[str], max_len: int | None = None, *, chunk_size: int = CHUNK_SIZE,
                    progress: bool = False, punctuation: bool = False, start_end: bool = False) -> TokenizedCorpus:
    """Tokenise every caption of `texts` (strings) with the policy above, keeping `max_len` tokens each.

    `punctuation`: each punctuation mark (Unicode class P) is a token of its own instead of a separator.
    `start_end`: every caption, empty ones included, is wrapped in `<start>` ... `<end>` after truncation
    (so it holds up to `max_len + 2` tokens)."""
    _check_max_len(max_len)
    pieces: list[pa.Array] = []
    full: list[np.ndarray] = []
    for start in tqdm(range(0, len(texts), chunk_size), desc="tokenize", unit="chunk",
                      disable=not progress or len(texts) <= chunk_size):
        words, counts = _tokenize_chunk(texts[start:start + chunk_size], max_len, punctuation)
        pieces.append(words)
        full.append(counts)
    full_lengths = np.concatenate(full) if full else np.zeros(0, dtype=np.int64)
    kept = full_lengths if max_len is None else np.minimum(full_lengths, max_len)
    offsets = np.concatenate([[0], np.cumsum(kept)]).astype(np.int64)
    tokens = pa.concat_arrays(pieces) if pieces else pa.array([], type=pa.large_string())
    corpus = TokenizedCorpus(tokens=tokens, offsets=offsets, full_lengths=full_lengths)
    return _with_start_end(corpus) if start_end else corpus


def _with_start_end(corpus: TokenizedCorpus) -> TokenizedCorpus:
    """`corpus` with `<start>` before and `<end>` after every caption."""
    n = len(corpus)
    new_offsets = corpus.offsets + 2 * np.arange(n + 1, dtype=np.int64)
    total = int(new_offsets[-1])
    kind = np.ones(total, dtype=np.int8)               # 1: a word, 0: <start>, 2: <end>
    kind[new_offsets[:-1]] = 0
    kind[new_offsets[1:] - 1] = 2
    words = corpus.tokens.to_numpy(zero_copy_only=False)
    out = np.empty(total, dtype=object)
    out[kind == 1] = words
    out[kind == 0] = START
    out[kind == 2] = END
    # full_lengths keep counting the caption's own tokens (the truncation statistic reads them).
    return TokenizedCorpus(tokens=pa.array(out, type=pa.large_string()), offsets=new_offsets,
                           full_lengths=corpus.full_lengths)


def tokenize(text: str, max_len: int | None = None) -> list[str]:
    """Tokens of one string (same policy as `tokenize_corpus`; for queries and tests)."""
    return tokenize_corpus([text], max_len).caption(0)
