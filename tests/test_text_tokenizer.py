"""Tokenizer policy on tricky strings, truncation, and the chunked corpus path against a per-caption reference."""
import numpy as np
import pytest
from nltk.tokenize import RegexpTokenizer

from pipeline.text.tokenizer import WORD_PATTERN, normalize, tokenize, tokenize_corpus


@pytest.mark.parametrize("text, expected", [
    ("A man riding a wave on top of a surfboard.", ["a", "man", "riding", "a", "wave", "on", "top", "of", "a", "surfboard"]),
    ("A man's T-shirt, isn't it?", ["a", "man's", "t", "shirt", "isn't", "it"]),
    ("the \u2018quoted\u2019 word and a dog\u2019s bone", ["the", "quoted", "word", "and", "a", "dog's", "bone"]),
    ("'single' quotes, 'tis", ["single", "quotes", "tis"]),
    ("3.5 kg, 10,000 people", ["3", "5", "kg", "10", "000", "people"]),
    ("snake_case and e-mail", ["snake", "case", "and", "e", "mail"]),
    ("Caf\u00e9 vs Cafe\u0301", ["caf\u00e9", "vs", "caf\u00e9"]),              # composed and decomposed accents agree
    ("\uff21\uff22\uff23 \ufb01sh", ["abc", "fish"]),                          # full-width letters, ligature
    ("STOP sign ON the ROAD", ["stop", "sign", "on", "the", "road"]),
    ("\U0001F600 a dog \U0001F436!", ["a", "dog"]),                            # emoji are dropped
    ("\u4e00\u53ea\u732b sits on a mat", ["\u4e00\u53ea\u732b", "sits", "on", "a", "mat"]),  # CJK run, one token
    ("\u0939\u093f\u0928\u094d\u0926\u0940 text", ["\u0939\u093f\u0928\u094d\u0926\u0940", "text"]),  # vowel signs stay
    ("\u0391\u0392\u0393 \u041f\u0440\u0438\u0432\u0435\u0442 dog", ["\u03b1\u03b2\u03b3", "\u043f\u0440\u0438\u0432\u0435\u0442", "dog"]),
    ("tabs\tand\nnewlines  here", ["tabs", "and", "newlines", "here"]),
    ("a\x00b", ["a", "b"]),                                                    # the internal separator in a caption
    ("<pad> <unk> <mask>", ["pad", "unk", "mask"]),                           # reserved names cannot appear
])
def test_tokenize_tricky_strings(text, expected):
    assert tokenize(text) == expected


@pytest.mark.parametrize("text", ["", "   ", "...!!!", "?!,;:-- ()[]", "\U0001F600\U0001F436", "''"])
def test_captions_without_tokens_are_empty(text):
    assert tokenize(text) == []


def test_truncation_keeps_first_max_len_tokens():
    words = [f"w{i}" for i in range(200)]
    corpus = tokenize_corpus([" ".join(words), "short one", ""], max_len=150)
    assert corpus.caption(0) == words[:150]
    assert corpus.caption(1) == ["short", "one"]
    assert corpus.caption(2) == []
    assert corpus.full_lengths.tolist() == [200, 2, 0]
    assert corpus.lengths.tolist() == [150, 2, 0]
    assert tokenize(" ".join(words), max_len=3) == ["w0", "w1", "w2"]


@pytest.mark.parametrize("bad", [0, -1, 2.5, True])
def test_bad_max_len_names_the_parameter(bad):
    with pytest.raises(ValueError, match="text.max_len"):
        tokenize_corpus(["a b"], max_len=bad)


def test_chunked_corpus_matches_per_caption_reference():
    rng = np.random.default_rng(0)
    pieces = ["dog", "Cat", "a", "man's", "T-shirt", "!", "...", "", "\u00e9t\u00e9", "42", "\U0001F600",
              "\u4e00\u53ea", "\x00", "don\u2019t", ",", "  "]
    texts = ["".join(rng.choice(pieces, size=rng.integers(0, 12)) + " ") for _ in range(257)]
    corpus = tokenize_corpus(texts, max_len=5, chunk_size=16)   # many chunk boundaries
    nltk_tokenizer = RegexpTokenizer(WORD_PATTERN)
    reference = [nltk_tokenizer.tokenize(normalize(t.replace("\x00", " ")))[:5] for t in texts]
    assert len(corpus) == len(texts)
    assert [corpus.caption(i) for i in range(len(texts))] == reference
    assert corpus.token_captions().tolist() == [i for i, r in enumerate(reference) for _ in r]


def test_empty_corpus():
    corpus = tokenize_corpus([], max_len=10)
    assert len(corpus) == 0 and len(corpus.tokens) == 0 and corpus.offsets.tolist() == [0]


def test_scan_text_options_keep_punctuation_and_wrap_in_start_end():
    from pipeline.text.tokenizer import tokenize_corpus

    plain = tokenize_corpus(["A man, riding.", ""])
    assert plain.caption(0) == ["a", "man", "riding"] and plain.caption(1) == []
    official = tokenize_corpus(["A man, riding.", "", "Don't stop!"], punctuation=True, start_end=True)
    assert official.caption(0) == ["<start>", "a", "man", ",", "riding", ".", "<end>"]
    assert official.caption(1) == ["<start>", "<end>"]
    assert official.caption(2) == ["<start>", "don't", "stop", "!", "<end>"]
    assert official.full_lengths.tolist() == [5, 0, 3]           # the captions' own tokens
    truncated = tokenize_corpus(["one two three"], 2, start_end=True)
    assert truncated.caption(0) == ["<start>", "one", "two", "<end>"]
