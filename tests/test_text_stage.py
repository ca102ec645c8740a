"""The tokenize stage end to end on small tables: store contents, bad captions, TextData, the command."""
import json

import numpy as np
import pyarrow.parquet as pq
import pytest
import typer
import yaml
from typer.testing import CliRunner

from pipeline.data.table import write_table
from pipeline.params import ParamError, validate
from pipeline.text.build import build_text_data
from pipeline.text.store import TextData, TextDataError, TextDataNotFoundError
from stages import tokenize as tokenize_stage

LONG = " ".join(f"word{i % 7}" for i in range(40))
CAPTIONS = [
    ["A red circle above a blue square.", "", "!!! ..."],          # train: normal, empty, punctuation only
    [],                                                              # train: no captions
    ["A blue square near a red circle", LONG],                      # train: longer than max_len
    ["Caf\u00e9 \u4e00\u53ea\u732b and a RED circle", None],        # train: non-ASCII, mixed scripts, null
    ["a green triangle", "a red circle"],                            # val: 'green', 'triangle' unseen in train
    ["a purple hexagon"],                                            # test
]
SPLITS = ["train", "train", "train", "train", "val", "test"]


def make_table(path, captions=CAPTIONS, splits=SPLITS):
    n = len(captions)
    rows = {"image_id": list(range(100, 100 + n)), "file_path": [f"img{i}.png" for i in range(n)],
            "width": [64] * n, "height": [64] * n, "captions": captions, "labels": [[]] * n,
            "boxes": [[]] * n, "box_labels": [[]] * n, "split": splits}
    return write_table(rows, [], "toy", path)


def text_params(**over):
    params = validate({"text": {"max_len": 12, "embedding_dim": 16, "w2v_epochs": 3, **over}})
    return params["text"]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("text")
    table = make_table(tmp / "table.parquet")
    stats = build_text_data(table, text_params(), seed=0, out_dir=tmp / "text", dataset="toy")
    return stats, TextData.load(tmp / "text"), tmp


def test_store_files_and_schema(built):
    stats, data, tmp = built
    assert sorted(p.name for p in (tmp / "text").iterdir()) == ["embeddings.npy", "stats.json", "tokens.parquet", "vocab.json"]
    schema = pq.read_schema(tmp / "text" / "tokens.parquet")
    assert [(f.name, str(f.type)) for f in schema] == [("row", "int32"), ("caption_index", "int16"), ("ids", "list<element: int32>")]
    assert json.loads((tmp / "text" / "stats.json").read_text()) == stats


def test_caption_order_and_owners(built):
    _, data, _ = built
    assert data.caption_rows.tolist() == [0, 0, 0, 2, 2, 3, 3, 4, 4, 5]   # image row 1 owns no caption
    assert data.caption_index.tolist() == [0, 1, 2, 0, 1, 0, 1, 0, 1, 0]
    assert data.captions_of_rows([2, 5]).tolist() == [3, 4, 9]


def test_ids_vocab_and_bad_captions(built):
    stats, data, _ = built
    v = {w: i for i, w in enumerate(data.vocab)}
    assert data.vocab[:3] == ["<pad>", "<unk>", "<mask>"]
    assert data.ids[0].tolist() == [v[w] for w in "a red circle above a blue square".split()]
    assert data.ids[1].tolist() == [1] and data.ids[2].tolist() == [1]    # empty / punctuation only -> <unk>
    assert data.ids[6].tolist() == [1]                                    # null caption -> <unk>
    assert len(data.ids[4]) == 12                                         # truncated to max_len
    assert data.ids[4].tolist() == [v[f"word{i % 7}"] for i in range(12)]
    assert data.ids[5].tolist() == [v["caf\u00e9"], v["\u4e00\u53ea\u732b"], v["and"], v["a"], v["red"], v["circle"]]
    assert data.ids[7].tolist() == [v["a"], 1, 1]                         # val-only words are <unk>
    assert data.ids[9].tolist() == [v["a"], 1, 1]
    assert "green" not in v and "purple" not in v
    assert stats["images_without_captions"] == 1
    assert stats["empty_captions"] == 3 and stats["truncated_captions"] == 1
    assert stats["captions_by_split"] == {"train": 7, "val": 2, "test": 1}
    assert stats["unk_rate"]["train"] == 0.0
    assert stats["unk_rate"]["val"] == pytest.approx(2 / 6) and stats["unk_rate"]["test"] == pytest.approx(2 / 3)
    tokens = stats["tokens"]
    assert tokens == sum(len(x) for x in data.ids) - 3                    # placeholders are not tokens
    assert stats["oov_rate"] == pytest.approx(4 / tokens)                 # trained vectors cover the vocabulary


def test_embeddings(built):
    stats, data, _ = built
    assert data.embeddings.shape == (len(data.vocab), 16) and data.embeddings.dtype == np.float32
    assert np.all(data.embeddings[0] == 0)
    assert np.all(np.abs(data.embeddings[1:]).sum(axis=1) > 0)
    assert stats["vectors"]["source"] == "trained" and stats["vectors"]["words_without_vector"] == 0


def test_pad_batch(built):
    _, data, _ = built
    ids, lengths = data.pad_batch([0, 1, 4], max_len=10)
    assert ids.shape == (3, 10) and lengths.tolist() == [7, 1, 10]
    assert ids[0, :7].tolist() == data.ids[0].tolist() and np.all(ids[0, 7:] == 0)
    assert ids[1].tolist() == [1] + [0] * 9
    assert ids[2].tolist() == data.ids[4][:10].tolist()
    ids, lengths = data.pad_batch([1, 2])
    assert ids.shape == (2, 1)


def test_rebuild_is_deterministic(built, tmp_path):
    stats, data, tmp = built
    again = build_text_data(make_table(tmp_path / "t.parquet"), text_params(), seed=0, out_dir=tmp_path / "text")
    other = TextData.load(tmp_path / "text")
    assert other.vocab == data.vocab and np.array_equal(other.flat_ids, data.flat_ids)
    np.testing.assert_array_equal(other.embeddings, data.embeddings)
    assert again["oov_rate"] == stats["oov_rate"]


def test_min_count_maps_rare_training_words_to_unk(tmp_path):
    table = make_table(tmp_path / "t.parquet")
    stats = build_text_data(table, text_params(min_count=2), seed=0, out_dir=tmp_path / "text")
    data = TextData.load(tmp_path / "text")
    assert "above" not in data.vocab and "red" in data.vocab
    assert stats["unk_rate"]["train"] > 0


def test_word2vec_file_and_oov_policy(tmp_path):
    words = ["a", "Red", "circle", "SQUARE", "blue"]
    m = np.random.default_rng(0).normal(size=(len(words), 16)).astype(np.float32)
    path = tmp_path / "w2v.bin"   # word2vec binary format: header, then "word " + float32 bytes per record
    path.write_bytes(f"{len(words)} 16\n".encode()
                     + b"".join(w.encode() + b" " + r.astype("<f4").tobytes() + b"\n" for w, r in zip(words, m)))
    table = make_table(tmp_path / "t.parquet")
    stats = build_text_data(table, text_params(word2vec_path=str(path)), seed=0, out_dir=tmp_path / "text")
    data = TextData.load(tmp_path / "text")
    v = {w: i for i, w in enumerate(data.vocab)}
    np.testing.assert_allclose(data.embeddings[v["red"]], m[1])
    np.testing.assert_allclose(data.embeddings[v["square"]], m[3])
    assert stats["vectors"]["source"] == "word2vec_file"
    assert stats["vectors"]["words_with_vector"] == 5
    assert stats["vectors"]["lookup"] == {"exact": 3, "capitalized": 1, "upper": 1, "digits_as_hash": 0}
    assert stats["vectors"]["words_without_vector"] == len(data.vocab) - 3 - 5
    assert stats["oov_rate"] > stats["unk_rate"]["train"]
    assert (tmp_path / "w2v.bin.kv" / "vectors.kv").is_file()


def test_no_training_captions_is_an_error(tmp_path):
    table = make_table(tmp_path / "t.parquet", captions=[["", "!!"], ["a dog"]], splits=["train", "val"])
    with pytest.raises(ValueError, match="'train' split"):
        build_text_data(table, text_params(), seed=0, out_dir=tmp_path / "text")
    assert not (tmp_path / "text").exists()


def test_param_ranges(tmp_path):
    table = make_table(tmp_path / "t.parquet")
    with pytest.raises(ParamError, match="text.max_len"):
        build_text_data(table, text_params(max_len=0), seed=0, out_dir=tmp_path / "text")


def test_textdata_errors(built, tmp_path):
    with pytest.raises(TextDataNotFoundError, match="vocab.json"):
        TextData.load(tmp_path / "missing")
    _, _, tmp = built
    bad = tmp_path / "bad"
    bad.mkdir()
    for name in ("tokens.parquet", "embeddings.npy", "stats.json"):
        (bad / name).write_bytes((tmp / "text" / name).read_bytes())
    (bad / "vocab.json").write_text(json.dumps(["a", "b"]))
    with pytest.raises(TextDataError, match="vocab.json"):
        TextData.load(bad)


# ---- the command ------------------------------------------------------------------------------------

def _app():
    app = typer.Typer()
    app.command()(tokenize_stage.main)
    return app


def _project(tmp_path, **text):
    make_table(tmp_path / "data" / "toy" / "table.parquet")
    params = {"datasets": ["toy"], "data": {"toy": {"kind": "shapes"}},
              "text": {"max_len": 12, "embedding_dim": 16, "w2v_epochs": 2, **text}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    return ["toy", "--params", str(tmp_path / "params.yaml"), "--data-dir", str(tmp_path / "data")]


def test_command_writes_the_store(tmp_path):
    result = CliRunner().invoke(_app(), _project(tmp_path))
    assert result.exit_code == 0, result.output
    assert "oov_rate" in result.output
    assert len(TextData.load(tmp_path / "data" / "toy" / "text")) == 10


def test_command_bad_vectors_file_exits_2_naming_it(tmp_path):
    bad = tmp_path / "broken.bin"
    bad.write_bytes(b"not a header\n")
    result = CliRunner().invoke(_app(), _project(tmp_path, word2vec_path=str(bad)))
    assert result.exit_code == 2
    assert "broken.bin" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "data" / "toy" / "text").exists()


def test_command_help_lists_outputs_and_params():
    result = CliRunner().invoke(_app(), ["--help"])
    assert result.exit_code == 0
    for word in ("vocab.json", "tokens.parquet", "embeddings.npy", "stats.json", "text.max_len", "word2vec_path"):
        assert word in result.output
