"""Benchmark of the text stage: tokenisation throughput at COCO scale and word-vector load times.

    python bench/text_tokenize.py [--captions 616435] [--vectors 200000] [--workdir /tmp/xmr-bench-text]

1. Tokenisation: synthetic COCO-like captions (capitalised, commas, apostrophes, a final period, 7-14
   words from a Zipf-distributed vocabulary of 10k words). Times the stage's path
   (`tokenize_corpus` + `build_vocab` + `encode`) on all of them, and, on a 20k sample, the
   per-caption alternatives: nltk's TreebankWordTokenizer and the same regexp applied caption by caption.
2. Word vectors: writes a synthetic word2vec binary file of N x 300, then times gensim's parse
   (`KeyedVectors.load_word2vec_format`), the one-time conversion to the native format, the
   memory-mapped load of the native copy (best of 3) and the embedding matrix for a 10k vocabulary.
3. Word2Vec trained on captions (the offline default): one CBOW epoch on 100k captions, in words/s.
Prints a Markdown section for reports/benchmarks.md.
"""
from __future__ import annotations

import os


import argparse
import shutil
import time
from pathlib import Path

import numpy as np

from gensim.models import KeyedVectors
from nltk.tokenize import RegexpTokenizer, TreebankWordTokenizer

from pipeline.text.tokenizer import SEPARATOR, WORD_PATTERN, normalize, tokenize_corpus
from pipeline.text.vectors import convert_to_native, embedding_matrix, load_vectors, train_word2vec
from pipeline.text.vocab import build_vocab, encode

COMMON = ("a an the of on in with and is are at to near two man woman people dog cat sitting standing "
          "riding holding next top large small white black red street table plate field water").split()


def synthetic_captions(n: int, seed: int = 0) -> list[str]:
    """COCO-like captions: Zipf word choice, 8-20 words, a capital, some commas and apostrophes, a period."""
    rng = np.random.default_rng(seed)
    syllables = np.array(["ka", "lo", "mi", "ne", "ru", "ta", "shi", "po", "ve", "dan", "ber", "tor"])
    invented = ["".join(rng.choice(syllables, size=rng.integers(2, 4))) for _ in range(10_000 - len(COMMON))]
    words = np.array(COMMON + invented, dtype=object)
    words[rng.choice(len(words), 300, replace=False)] += "'s"
    lengths = rng.integers(7, 15, size=n)  # 10.5 words on average, as COCO
    ranks = np.minimum(rng.zipf(1.25, size=int(lengths.sum())) - 1, len(words) - 1)
    flat = words[ranks]
    comma = rng.random(len(flat)) < 0.03
    flat[comma] = flat[comma] + ","
    bounds = np.concatenate([[0], np.cumsum(lengths)])
    captions = [" ".join(flat[a:b]) + "." for a, b in zip(bounds[:-1], bounds[1:])]
    return [c[:1].upper() + c[1:] for c in captions]


def write_binary_word2vec(path: Path, n: int, dim: int, seed: int = 0) -> None:
    """Word2vec binary file with n fixed-width words ("w0000001 ") and float32 vectors, written in one go."""
    rng = np.random.default_rng(seed)
    record = np.dtype([("word", "S9"), ("vec", "<f4", (dim,)), ("nl", "S1")])
    data = np.empty(n, dtype=record)
    data["word"] = np.char.add(np.char.add(b"w", np.char.zfill(np.arange(n).astype("S7"), 7)), b" ")
    data["vec"] = rng.normal(size=(n, dim)).astype(np.float32)
    data["nl"] = b"\n"
    with path.open("wb") as f:
        f.write(f"{n} {dim}\n".encode())
        f.write(data.tobytes())


def timed(fn, *args, **kwargs):
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - start


def best_of(k: int, fn, *args, **kwargs) -> float:
    return min(timed(fn, *args, **kwargs)[1] for _ in range(k))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--captions", type=int, default=616_435)
    ap.add_argument("--vectors", type=int, default=200_000)
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/xmr-bench-text"))
    args = ap.parse_args()
    shutil.rmtree(args.workdir, ignore_errors=True)
    args.workdir.mkdir(parents=True)

    captions = synthetic_captions(args.captions)
    corpus, t_tok = timed(tokenize_corpus, captions, 150)
    vocab, t_vocab = timed(build_vocab, corpus.tokens, 1)
    _, t_enc = timed(encode, corpus.tokens, vocab)
    t_stage = t_tok + t_vocab + t_enc

    sample = captions[:20_000]
    treebank = TreebankWordTokenizer()
    _, t_tb = timed(lambda: [treebank.tokenize(c.lower()) for c in sample])
    per_caption = RegexpTokenizer(WORD_PATTERN)
    t_rx = best_of(3, lambda: [per_caption.tokenize(normalize(c))[:150] for c in sample])
    t_sample = best_of(3, tokenize_corpus, sample, 150)
    guarded = RegexpTokenizer(r"\x00|" + WORD_PATTERN)  # nltk's default: every match under its timeout guard
    t_guard = best_of(3, lambda: guarded.tokenize(normalize(SEPARATOR.join(sample))))

    vec_path = args.workdir / "synthetic-300.bin"
    _, t_write = timed(write_binary_word2vec, vec_path, args.vectors, 300)
    _, t_parse = timed(KeyedVectors.load_word2vec_format, str(vec_path), binary=True)
    _, t_convert = timed(convert_to_native, vec_path)
    t_mmap = best_of(3, load_vectors, vec_path, 300)
    kv = load_vectors(vec_path, 300)
    w2v_vocab = ["<pad>", "<unk>", "<mask>"] + [f"w{i:07d}" for i in range(0, args.vectors, args.vectors // 10_000)]
    _, t_matrix = timed(embedding_matrix, w2v_vocab, kv, 0)

    w2v_captions = corpus.tokens[: int(corpus.offsets[min(100_000, len(corpus))])].to_pylist()
    lengths = corpus.lengths[:100_000]
    bounds = np.concatenate([[0], np.cumsum(lengths)])
    sentences = [w2v_captions[a:b] for a, b in zip(bounds[:-1], bounds[1:])]
    _, t_w2v = timed(train_word2vec, sentences, 300, epochs=1, window=5, min_count=1, skipgram=False, seed=0)
    n_words = int(lengths.sum())

    n = len(captions)
    size_mb = vec_path.stat().st_size / 2**20
    print(f"""## Text: tokenisation and word vectors (`bench/text_tokenize.py`)

Machine: 2-core CPU sandbox, no GPU ({os.cpu_count()} cores visible). Date: 2026-11-22. One run of
`python bench/text_tokenize.py --captions {n} --vectors {args.vectors}`; synthetic data written by the bench.

Tokenisation of {n:,} synthetic COCO-like captions ({len(corpus.tokens):,} tokens, max_len 150), one process:

| path | time | captions/s |
|---|---|---|
| stage path: `tokenize_corpus` (chunked regexp) + `build_vocab` + `encode` | {t_stage:.2f} s (tokenise {t_tok:.2f}, vocab {t_vocab:.2f}, ids {t_enc:.2f}) | {n / t_stage:,.0f} |
| nltk `TreebankWordTokenizer`, caption by caption (20k sample) | {t_tb / len(sample) * n:.1f} s extrapolated | {len(sample) / t_tb:,.0f} |
| same regexp, caption by caption through nltk `RegexpTokenizer` (20k sample, best of 3) | {t_rx / len(sample) * n:.1f} s extrapolated | {len(sample) / t_rx:,.0f} |
| `tokenize_corpus` alone on the same 20k sample (best of 3) | {t_sample:.2f} s | {len(sample) / t_sample:,.0f} |
| one joined 20k chunk through nltk `RegexpTokenizer` (ReDoS timeout guard on; best of 3) | {t_guard:.2f} s (matching only) | {len(sample) / t_guard:,.0f} |

On the 20k sample `tokenize_corpus` is {t_tb / t_sample:.1f}x faster than per-caption Treebank,
{t_rx / t_sample:.1f}x faster than the same pattern applied caption by caption, and
{t_guard / t_sample:.1f}x faster than matching the joined chunk with nltk's timeout guard on.
Target: 616k captions under 30 s on 2 cores; the stage path uses one core.

Word vectors, synthetic word2vec binary file {args.vectors:,} x 300 ({size_mb:.0f} MiB, written in {t_write:.1f} s):

| step | time |
|---|---|
| gensim parse (`KeyedVectors.load_word2vec_format`, binary) | {t_parse:.2f} s |
| one-time conversion to native KeyedVectors (parse + save) | {t_convert:.2f} s |
| load of the native copy, `mmap='r'` (best of 3) | {t_mmap:.3f} s |
| embedding matrix for a {len(w2v_vocab):,}-word vocabulary from the memory-mapped copy | {t_matrix:.3f} s |

Memory-mapped load is {t_parse / t_mmap:.0f}x faster than parsing. At GoogleNews scale (3M x 300) the
parse grows linearly (about {t_parse * 3_000_000 / args.vectors:.0f} s extrapolated) while the mapped load
stays dominated by unpickling the 3M-word index.

Word2Vec on captions (the offline default): one CBOW epoch, 300-d, window 5, 1 worker, on 100k
captions ({n_words:,} words): {t_w2v:.1f} s, {n_words / t_w2v:,.0f} words/s (build_vocab included).
""")
    shutil.rmtree(args.workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
