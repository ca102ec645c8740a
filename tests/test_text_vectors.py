"""word2vec-format lookup (binary, text, gzip), the native memory-mapped copy, OOV policy, bad files, Word2Vec."""
import gzip
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from gensim.models import KeyedVectors

from pipeline.text import vectors as vec
from pipeline.text.vectors import (VectorsError, embedding_matrix, load_vectors, native_cache_path,
                                   read_header, train_word2vec)

WORDS = ["dog", "Paris", "NASA", "####s", "cat", "caf\u00e9", "man's"]


def _matrix(n, dim, seed=0):
    return np.random.default_rng(seed).normal(size=(n, dim)).astype(np.float32)


def write_word2vec(path: Path, words, matrix, binary: bool, header=None) -> Path:
    """A word2vec-format file as the C tool writes it (binary records end in a newline)."""
    head = (header or f"{len(words)} {matrix.shape[1]}").encode() + b"\n"
    if binary:
        body = b"".join(w.encode() + b" " + v.astype("<f4").tobytes() + b"\n" for w, v in zip(words, matrix))
    else:
        body = b"".join((w + " " + " ".join(f"{x:.6f}" for x in v) + "\n").encode() for w, v in zip(words, matrix))
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "wb") as f:
        f.write(head + body)
    return path


@pytest.mark.parametrize("name, binary", [("v.bin", True), ("v.txt", False), ("v.bin.gz", True), ("v.txt.gz", False)])
def test_lookup_in_binary_and_text_files(tmp_path, name, binary):
    m = _matrix(len(WORDS), 6)
    path = write_word2vec(tmp_path / name, WORDS, m, binary)
    assert read_header(path) == (len(WORDS), 6, binary)
    kv = load_vectors(path, 6)
    assert kv.index_to_key == WORDS
    np.testing.assert_allclose(kv["caf\u00e9"], m[5], atol=1e-5)
    np.testing.assert_allclose(np.asarray(kv.vectors), m, atol=1e-5)


def test_native_copy_round_trip_is_memory_mapped_and_not_reparsed(tmp_path, monkeypatch):
    m = _matrix(len(WORDS), 5)
    path = write_word2vec(tmp_path / "GoogleNews-like.bin", WORDS, m, True)
    first = load_vectors(path, 5)
    cache = native_cache_path(path)
    assert cache == tmp_path / "GoogleNews-like.bin.kv"
    assert (cache / "vectors.kv").is_file() and (cache / "vectors.kv.vectors.npy").is_file()

    def no_parse(*args, **kwargs):
        raise AssertionError("the word2vec file was parsed again")

    monkeypatch.setattr(KeyedVectors, "load_word2vec_format", no_parse)
    second = load_vectors(path, 5)
    assert isinstance(second.vectors, np.memmap)
    assert second.index_to_key == first.index_to_key == WORDS
    np.testing.assert_array_equal(np.asarray(second.vectors), m)


def test_changed_source_is_converted_again(tmp_path):
    path = write_word2vec(tmp_path / "v.bin", WORDS, _matrix(len(WORDS), 4, seed=1), True)
    load_vectors(path, 4)
    new = _matrix(len(WORDS) - 1, 4, seed=2)
    write_word2vec(path, WORDS[:-1], new, True)
    os.utime(path, ns=(1, 1))  # a different mtime even on coarse clocks
    kv = load_vectors(path, 4)
    assert kv.index_to_key == WORDS[:-1]
    np.testing.assert_array_equal(np.asarray(kv.vectors), new)


def test_damaged_native_copy_is_rebuilt(tmp_path):
    path = write_word2vec(tmp_path / "v.bin", WORDS, _matrix(len(WORDS), 4), True)
    load_vectors(path, 4)
    (native_cache_path(path) / "vectors.kv.vectors.npy").write_bytes(b"garbage")
    assert load_vectors(path, 4).index_to_key == WORDS


def test_cache_dir_parameter(tmp_path):
    path = write_word2vec(tmp_path / "v.txt", WORDS, _matrix(len(WORDS), 3), False)
    load_vectors(path, 3, cache_dir=tmp_path / "cache")
    assert (tmp_path / "cache" / "v.txt.kv" / "vectors.kv").is_file()
    assert not native_cache_path(path).exists()


def test_unwritable_cache_is_a_clear_error(tmp_path):
    path = write_word2vec(tmp_path / "v.txt", WORDS, _matrix(len(WORDS), 3), False)
    blocker = tmp_path / "file-not-dir"
    blocker.write_text("x")
    with pytest.raises(VectorsError, match="text.word2vec_cache_dir"):
        load_vectors(path, 3, cache_dir=blocker)


# ---- bad files: each error names the file ---------------------------------------------------------

def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nope\.bin.*text.word2vec_path"):
        load_vectors(tmp_path / "nope.bin", 300)


def test_wrong_dimension(tmp_path):
    path = write_word2vec(tmp_path / "small.bin", WORDS, _matrix(len(WORDS), 50), True)
    with pytest.raises(VectorsError, match=r"small\.bin.*dimension 50, expected 300.*text.embedding_dim"):
        load_vectors(path, 300)


@pytest.mark.parametrize("binary", [True, False])
def test_truncated_file(tmp_path, binary):
    path = write_word2vec(tmp_path / ("t.bin" if binary else "t.txt"), WORDS, _matrix(len(WORDS), 8), binary)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 2 // 3])
    with pytest.raises(VectorsError, match=r"t\.(bin|txt).*corrupt or truncated"):
        load_vectors(path, 8)
    assert not native_cache_path(path).exists()  # nothing half-written is left behind


def test_truncated_gzip(tmp_path):
    path = write_word2vec(tmp_path / "t.bin.gz", WORDS * 50, _matrix(len(WORDS) * 50, 8), True)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(VectorsError, match=r"t\.bin\.gz"):
        load_vectors(path, 8)


def test_text_rows_of_another_dimension_than_the_header(tmp_path):
    path = write_word2vec(tmp_path / "short.txt", WORDS, _matrix(len(WORDS), 3), False, header=f"{len(WORDS)} 4")
    with pytest.raises(VectorsError, match=r"short\.txt.*3 numbers.*dimension 4"):
        load_vectors(path, 4)


@pytest.mark.parametrize("real_dim, header_dim", [(8, 4), (4, 8)])
def test_binary_rows_of_another_dimension_than_the_header(tmp_path, real_dim, header_dim):
    path = write_word2vec(tmp_path / "odd.bin", WORDS, _matrix(len(WORDS), real_dim), True,
                          header=f"{len(WORDS)} {header_dim}")
    with pytest.raises(VectorsError, match=r"odd\.bin"):
        load_vectors(path, header_dim)


@pytest.mark.parametrize("content, message", [
    (b"", "first line"),
    (b"hello world\nfoo 1 2\n", "first line"),
    (b"3\n", "first line"),
    (b"0 300\n", "at least one"),
    (b"5 4\n", "truncated"),
])
def test_bad_header(tmp_path, content, message):
    path = tmp_path / "bad.bin"
    path.write_bytes(content)
    with pytest.raises(VectorsError, match=rf"bad\.bin.*{message}"):
        load_vectors(path, 4)


def test_gzip_without_gz_name(tmp_path):
    gz = write_word2vec(tmp_path / "v.bin.gz", WORDS, _matrix(len(WORDS), 4), True)
    path = tmp_path / "v.bin"
    path.write_bytes(gz.read_bytes())
    with pytest.raises(VectorsError, match=r"v\.bin.*gzip"):
        load_vectors(path, 4)


# ---- embedding matrix: OOV policy -----------------------------------------------------------------

def test_embedding_matrix_policy(tmp_path):
    m = _matrix(len(WORDS), 6)
    kv = load_vectors(write_word2vec(tmp_path / "v.bin", WORDS, m, True), 6)
    vocab = ["<pad>", "<unk>", "<mask>", "dog", "paris", "nasa", "1990s", "zebra", "caf\u00e9"]
    out, found, matched = embedding_matrix(vocab, kv, seed=3)
    assert out.shape == (9, 6) and out.dtype == np.float32
    np.testing.assert_array_equal(out[0], 0)                       # <pad>
    np.testing.assert_allclose(out[3], m[0])                       # exact
    np.testing.assert_allclose(out[4], m[1])                       # Capitalised: Paris
    np.testing.assert_allclose(out[5], m[2])                       # UPPER: NASA
    np.testing.assert_allclose(out[6], m[3])                       # digits as '#': ####s
    np.testing.assert_allclose(out[8], m[5])
    assert found.tolist() == [False, False, False, True, True, True, True, False, True]
    assert matched == {"exact": 2, "capitalized": 1, "upper": 1, "digits_as_hash": 1}
    random_rows = out[[1, 2, 7]]
    assert np.all(np.abs(random_rows).sum(axis=1) > 0) and len({r.tobytes() for r in random_rows}) == 3
    again, _, _ = embedding_matrix(vocab, kv, seed=3)
    other, _, _ = embedding_matrix(vocab, kv, seed=4)
    np.testing.assert_array_equal(again, out)                      # seeded
    assert not np.array_equal(other[[1, 2, 7]], random_rows)
    np.testing.assert_array_equal(other[found], out[found])


def test_embedding_matrix_with_nothing_found(tmp_path):
    kv = load_vectors(write_word2vec(tmp_path / "v.bin", WORDS, _matrix(len(WORDS), 4), True), 4)
    out, found, _ = embedding_matrix(["<pad>", "<unk>", "<mask>", "zzz"], kv, seed=0)
    assert not found.any()
    assert np.all(out[0] == 0) and 0.01 < out[1:].std() < 1.0     # small random rows


# ---- Word2Vec on captions -------------------------------------------------------------------------

def _corpus():
    rng = np.random.default_rng(0)
    animals, colours = ["dog", "cat", "horse"], ["red", "blue", "green"]
    out = []
    for _ in range(600):
        out.append(["a", str(rng.choice(animals)), "runs", "on", "the", "grass"])
        out.append(["a", str(rng.choice(colours)), "square", "is", "painted", "bright"])
    return out


def test_word2vec_is_deterministic_and_learns_contexts():
    kw = dict(epochs=5, window=3, min_count=1, skipgram=False, seed=7)
    a = train_word2vec(_corpus(), 16, **kw)
    b = train_word2vec(_corpus(), 16, **kw)
    assert a.index_to_key == b.index_to_key
    np.testing.assert_array_equal(a.vectors, b.vectors)
    assert a.vector_size == 16 and set(a.index_to_key) >= {"dog", "red", "grass"}
    assert a.similarity("dog", "cat") > a.similarity("dog", "red")


def test_word2vec_does_not_depend_on_the_process_hash_seed():
    code = ("import sys, hashlib; sys.path.insert(0, %r); from pipeline.text.vectors import train_word2vec;"
            "s = [['a', w, 'runs', 'on', 'grass'] for w in ['dog', 'cat', 'horse'] * 60];"
            "kv = train_word2vec(s, 8, epochs=2, window=2, min_count=1, skipgram=True, seed=1);"
            "print(hashlib.sha256(kv.vectors.tobytes()).hexdigest())") % str(Path(__file__).parents[1])
    digests = {subprocess.run([sys.executable, "-c", code], env={**os.environ, "PYTHONHASHSEED": seed},
                              capture_output=True, text=True, check=True).stdout for seed in ("1", "2")}
    assert len(digests) == 1


def test_word2vec_bad_inputs():
    with pytest.raises(ValueError, match="no training tokens"):
        train_word2vec([[], []], 8, epochs=1, window=2, min_count=1, skipgram=False, seed=0)
    with pytest.raises(ValueError, match="text.w2v_epochs"):
        train_word2vec([["a"]], 8, epochs=0, window=2, min_count=1, skipgram=False, seed=0)


def test_record_format_sniffing(tmp_path):
    path = tmp_path / "x"
    assert vec._record_format(path, b"dog 1.0 2.0 3.0\n", 3) is False
    assert vec._record_format(path, b"dog " + np.ones(3, "<f4").tobytes() + b"\n", 3) is True
    with pytest.raises(VectorsError, match="2 numbers"):
        vec._record_format(path, b"dog 1.0 2.0\n", 3)
