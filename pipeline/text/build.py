"""The `tokenize` stage's work: prepared table -> `data/<ds>/text/`.

Policies on top of the tokenizer's (`pipeline.text.tokenizer`) and the vectors' (`pipeline.text.vectors`):
- Every caption of every split is tokenised; the vocabulary and trained vectors see the training split only.
- Tag datasets need nothing special: their table holds one caption per image, the tags joined by spaces.
- A caption without tokens (empty, whitespace, punctuation only, or null) is stored as the single id
  `<unk>`, so every caption has at least one position for models to pool over (`empty_captions` in stats).
- An image without captions keeps its table row and owns no caption (`images_without_captions`).
- `oov_rate` (the DVC metric) is the fraction of all caption tokens whose embedding row is not a real
  word vector: the token is outside the vocabulary (<unk>) or its vocabulary word has no vector.
  `unk_rate` gives the first part per split.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipeline.data.table import SPLITS, table_fingerprint
from pipeline.params import check_text_params
from pipeline.text.store import MAX_CAPTIONS_PER_IMAGE, write_text_data
from pipeline.text.tokenizer import tokenize_corpus
from pipeline.text.vectors import embedding_matrix, load_vectors, train_word2vec
from pipeline.text.vocab import RESERVED, UNK_ID, build_vocab, encode


def table_captions(table: pa.Table) -> tuple[list[str], np.ndarray, np.ndarray, int]:
    """Flat caption strings (null -> ""), each caption's table row and index, images without captions."""
    captions = table.column("captions").combine_chunks()
    counts = np.asarray(pc.fill_null(pc.list_value_length(captions), 0), dtype=np.int64)
    if counts.size and counts.max() > MAX_CAPTIONS_PER_IMAGE:  # before any tokenising: refuse at once
        row = int(counts.argmax())
        raise ValueError(f"prepared table: image {table.column('image_id')[row].as_py()} (row {row}) has "
                         f"{int(counts[row])} captions; the text store holds at most {MAX_CAPTIONS_PER_IMAGE} per "
                         f"image (set prepare.max_captions)")
    texts = pc.fill_null(captions.flatten(), "").to_pylist()
    rows = np.repeat(np.arange(table.num_rows, dtype=np.int64), counts)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
    caption_index = np.arange(len(rows), dtype=np.int64) - np.repeat(starts, counts)
    return texts, rows, caption_index, int(np.count_nonzero(counts == 0))


def _with_placeholders(ids: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Give every empty caption the single id <unk>; returns (offsets, flat ids)."""
    stored = np.maximum(lengths, 1)
    offsets = np.concatenate([[0], np.cumsum(stored)]).astype(np.int64)
    flat = np.full(int(offsets[-1]), UNK_ID, dtype=np.int32)
    old_offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    shift = np.repeat(offsets[:-1] - old_offsets, lengths)  # moves each token past earlier placeholders
    flat[np.arange(len(ids)) + shift] = ids
    return offsets, flat


def build_text_data(table: pa.Table, text: dict, seed: int, out_dir: str | Path, *,
                    dataset: str = "", progress: bool = False) -> dict:
    """Tokenise the table's captions, build vocabulary and embeddings, write the store; returns stats."""
    check_text_params(text)
    vectors = None
    if text["word2vec_path"]:  # first, so a bad vectors file fails before any other work
        vectors = load_vectors(text["word2vec_path"], text["embedding_dim"], text["word2vec_cache_dir"])
    texts, rows, caption_index, images_without = table_captions(table)
    corpus = tokenize_corpus(texts, text["max_len"], progress=progress,
                             punctuation=text.get("punctuation", "drop") == "keep",
                             start_end=text.get("start_end_tokens", False))
    lengths = corpus.lengths
    split_ids = pc.index_in(table.column("split"), value_set=pa.array(SPLITS))  # null: not a known split
    caption_split = np.asarray(pc.fill_null(split_ids, -1), dtype=np.int64)[rows]
    token_split = np.repeat(caption_split, lengths)
    train = SPLITS.index("train")

    train_tokens = token_split == train
    if not train_tokens.any():
        raise ValueError(f"table of dataset '{dataset}': no caption tokens in the 'train' split "
                         f"(column 'split'), so there is no vocabulary to build")
    train_array = corpus.tokens.filter(pa.array(train_tokens))
    vocab = build_vocab(train_array, text["min_count"])
    ids = encode(corpus.tokens, vocab)

    if vectors is not None:
        source = "word2vec_file"
    else:
        train_lengths = lengths[caption_split == train]
        flat = train_array.to_pylist()
        bounds = np.concatenate([[0], np.cumsum(train_lengths)])
        sentences = [flat[a:b] for a, b in zip(bounds[:-1], bounds[1:]) if b > a]
        vectors = train_word2vec(sentences, text["embedding_dim"], epochs=text["w2v_epochs"],
                                 window=text["w2v_window"], min_count=text["min_count"],
                                 skipgram=text["w2v_skipgram"], seed=seed, progress=progress)
        source = "trained"
    embeddings, has_vector, matched = embedding_matrix(vocab, vectors, seed)

    offsets, flat_ids = _with_placeholders(ids, lengths)
    represented = has_vector[ids]
    stats = {
        "dataset": dataset,
        "images": table.num_rows,
        "images_without_captions": images_without,
        "captions": len(rows),
        "captions_by_split": {s: int(np.count_nonzero(caption_split == i)) for i, s in enumerate(SPLITS)},
        "empty_captions": int(np.count_nonzero(lengths == 0)),
        "truncated_captions": int(np.count_nonzero(corpus.full_lengths > text["max_len"])),
        "max_len": text["max_len"],
        "tokens": int(len(ids)),
        "mean_tokens_per_caption": float(lengths.mean()) if len(lengths) else 0.0,
        "vocab_size": len(vocab),
        "min_count": text["min_count"],
        "vectors": {
            "source": source,
            "path": text["word2vec_path"],
            "dim": int(embeddings.shape[1]),
            "words_with_vector": int(has_vector[len(RESERVED):].sum()),
            "words_without_vector": int((~has_vector[len(RESERVED):]).sum()),
            "lookup": matched,
        },
        "unk_rate": {s: _rate(ids[token_split == i] == UNK_ID) for i, s in enumerate(SPLITS)},
        "oov_rate": _rate(~represented),
    }
    write_text_data(out_dir, vocab=vocab, rows=rows, caption_index=caption_index, offsets=offsets,
                    flat_ids=flat_ids, embeddings=embeddings, stats=stats, table_fingerprint=table_fingerprint(table))
    return stats


def _rate(mask: np.ndarray) -> float:
    return float(mask.mean()) if mask.size else 0.0
