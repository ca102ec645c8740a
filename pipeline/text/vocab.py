"""Vocabulary: reserved tokens, then the training split's words by frequency.

Ids 0 `<pad>`, 1 `<unk>` and 2 `<mask>` are reserved (padding, out-of-vocabulary words, the masked
segment of the context loss). The words follow, most frequent first, ties in UTF-8 byte order, so the
same training captions always give the same ids. The reserved names contain `<`, which the tokenizer
never emits, so no caption word can collide with them.
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

PAD, UNK, MASK = "<pad>", "<unk>", "<mask>"
RESERVED = (PAD, UNK, MASK)
PAD_ID, UNK_ID, MASK_ID = 0, 1, 2


def word_counts(tokens: pa.Array) -> tuple[list[str], np.ndarray]:
    """Distinct tokens and their counts, most frequent first (ties in byte order)."""
    counted = pc.value_counts(tokens)
    table = pa.table({"word": counted.field("values"), "count": counted.field("counts")})
    table = table.take(pc.sort_indices(table, sort_keys=[("count", "descending"), ("word", "ascending")]))
    return table["word"].to_pylist(), table["count"].to_numpy().astype(np.int64)


def build_vocab(tokens: pa.Array, min_count: int = 1) -> list[str]:
    """Reserved tokens, then every token seen at least `min_count` times in `tokens` (the training split)."""
    if isinstance(min_count, bool) or not isinstance(min_count, int) or min_count < 1:
        raise ValueError(f"parameter 'text.min_count' must be a positive integer, got {min_count!r}")
    words, counts = word_counts(tokens)
    kept = int(np.count_nonzero(counts >= min_count))  # counts are sorted, so the kept words are a prefix
    return list(RESERVED) + words[:kept]


def encode(tokens: pa.Array, vocab: list[str]) -> np.ndarray:
    """Vocabulary id of each token (int32); tokens outside the vocabulary get `UNK_ID`."""
    ids = pc.index_in(tokens, value_set=pa.array(vocab, type=tokens.type))
    return pc.fill_null(ids, UNK_ID).to_numpy(zero_copy_only=False).astype(np.int32)
