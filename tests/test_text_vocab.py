"""Vocabulary ids, reserved tokens, min_count and encoding."""
import pyarrow as pa
import pytest

from pipeline.text.tokenizer import tokenize_corpus
from pipeline.text.vocab import MASK_ID, PAD_ID, RESERVED, UNK_ID, build_vocab, encode, word_counts


def _tokens(*captions):
    return tokenize_corpus(list(captions)).tokens


def test_reserved_ids_come_first():
    vocab = build_vocab(_tokens("a dog", "a cat"))
    assert vocab[:3] == ["<pad>", "<unk>", "<mask>"]
    assert (PAD_ID, UNK_ID, MASK_ID) == (0, 1, 2) and tuple(vocab[:3]) == RESERVED


def test_words_ordered_by_count_then_bytes():
    vocab = build_vocab(_tokens("b a c", "c b", "c zebra apple"))
    assert vocab[3:] == ["c", "b", "a", "apple", "zebra"]


def test_min_count_drops_rare_words():
    tokens = _tokens("dog dog cat", "dog cat bird")
    assert build_vocab(tokens, min_count=2)[3:] == ["dog", "cat"]
    assert build_vocab(tokens, min_count=4) == list(RESERVED)


@pytest.mark.parametrize("bad", [0, -3, 1.5, True])
def test_bad_min_count_names_the_parameter(bad):
    with pytest.raises(ValueError, match="text.min_count"):
        build_vocab(_tokens("a"), min_count=bad)


def test_encode_maps_unknown_words_to_unk():
    vocab = build_vocab(_tokens("a red circle", "a blue square"))
    ids = encode(_tokens("a green circle"), vocab)
    assert ids.dtype.name == "int32"
    assert ids.tolist() == [vocab.index("a"), UNK_ID, vocab.index("circle")]


def test_encode_works_for_plain_string_arrays():
    vocab = ["<pad>", "<unk>", "<mask>", "x"]
    assert encode(pa.array(["x", "y", "<mask>"]), vocab).tolist() == [3, 1, 2]


def test_word_counts():
    words, counts = word_counts(_tokens("b a b", "a b"))
    assert words == ["b", "a"] and counts.tolist() == [3, 2]
