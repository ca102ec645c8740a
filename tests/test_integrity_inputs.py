"""Issue 28: names are data, every user error is one line (rc 2) naming the file and field or id, long
values are cut, and damaged resumable state is set aside instead of being fatal."""
from __future__ import annotations

import json
import os
import pickle
import shutil
import struct
import zlib

import pytest
import yaml

from integrity_helpers import built, copy_project, one_error_line, project, working_dir, xmr  # noqa: F401
from pipeline.completion import mark_complete
from pipeline.data.image_size import ImageFileError, image_sizes
from pipeline.detection.images import ImageError, decode_image
from test_prepare import build_mini

pytestmark = pytest.mark.usefixtures("one_thread")


def write_params(root, params):
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    return root / "params.yaml"


@pytest.mark.parametrize("name", ["x$(id>f)", "a b", "../up", "-rf", "x" * 65])
def test_unsafe_dataset_names_are_refused_by_check_params(tmp_path, name):
    params = write_params(tmp_path, {"datasets": [name], "data": {name: {"kind": "shapes"}}})
    line = one_error_line(xmr("check-params", "--params", params))
    assert "parameter 'data' names" in line and "must start with a letter" in line


def test_a_megabyte_value_gives_a_short_line(tmp_path):
    params = write_params(tmp_path, {"seed": "9" * 1_000_000})
    line = one_error_line(xmr("check-params", "--params", params))
    assert "parameter 'seed' must be an integer" in line and len(line) < 300 and "(1000002 characters)" in line


def test_a_megabyte_root_is_one_short_line(tmp_path):
    params = write_params(tmp_path, {"datasets": ["c"], "data": {"c": {"kind": "coco", "root": "r" * 1_000_000}}})
    res = xmr("prepare", "c", "--params", params, "--data-dir", tmp_path / "out")
    line = one_error_line(res)
    assert len(line) < 1200, len(line)


def test_an_image_linked_outside_the_dataset_root_is_refused(tmp_path):
    coco = build_mini(tmp_path / "src")
    elsewhere = tmp_path / "elsewhere.jpg"
    shutil.copyfile(tmp_path / "src" / "val" / "1.jpg", elsewhere)  # same size: the table could not tell
    (tmp_path / "src" / "val" / "1.jpg").unlink()
    os.symlink(elsewhere, tmp_path / "src" / "val" / "1.jpg")
    params = write_params(tmp_path, {"datasets": ["m"], "data": {"m": coco}})
    line = one_error_line(xmr("prepare", "m", "--params", params, "--data-dir", tmp_path / "out"))
    assert "src/val/1.jpg: a link to " in line and "outside the image folder" in line and "image 1" in line
    assert not (tmp_path / "out" / "m" / "table.parquet").exists()


def test_annotation_json_nested_100000_deep_is_one_line(tmp_path):
    coco = build_mini(tmp_path / "src")
    (tmp_path / "src" / "annotations" / "captions_val.json").write_text("[" * 100_000 + "]" * 100_000)
    params = write_params(tmp_path, {"datasets": ["m"], "data": {"m": coco}})
    line = one_error_line(xmr("prepare", "m", "--params", params, "--data-dir", tmp_path / "out"))
    assert "captions_val.json: JSON nested too deeply" in line


def png_declaring(width: int, height: int) -> bytes:
    """A PNG whose header declares `width` x `height` (its pixel data is a few bytes)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0")) + chunk(b"IEND", b"")


def test_decompression_bomb_png_is_a_named_image_error(tmp_path):
    path = tmp_path / "bomb.png"
    path.write_bytes(png_declaring(30000, 30000))
    with pytest.raises(ImageError, match="bomb.png: not a readable image"):
        decode_image(path)
    with pytest.raises(ImageFileError, match="bomb.png: not a readable image"):
        image_sizes([path], progress=False, workers=1)



@pytest.mark.parametrize("damage, needle", [
    (lambda d: (d / "embeddings.npy").write_bytes((d / "embeddings.npy").read_bytes()[:200]),
     "data/tiny/text/embeddings.npy: cannot be read"),
    (lambda d: (d / "vocab.json").write_text('["<pad>", '), "data/tiny/text/vocab.json: not valid JSON"),
])
def test_damaged_text_store_files_are_named(project, damage, needle):
    damage(project / "data" / "tiny" / "text")
    assert needle in one_error_line(xmr("evaluate", "tiny", "ss", "--no-progress"))


def test_truncated_last_pt_is_set_aside_and_training_starts_over(project):
    model_dir = project / "models" / "tiny" / "ss"
    state = model_dir / "last.pt"
    state.write_bytes(state.read_bytes()[:1000])
    res = xmr("train", "tiny", "ss", "--no-progress")
    assert res.exit_code == 0, res.output
    assert "warning: models/tiny/ss/last.pt: not a weights file torch can load safely" in res.output
    assert "moved it to last.pt.broken-" in res.output and "Traceback" not in res.output
    assert len(list(model_dir.glob("last.pt.broken-*"))) == 1 and state.is_file()
    assert xmr("evaluate", "tiny", "ss", "--no-progress").exit_code == 0  # the finished model is valid


class Hostile:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


def test_hostile_pickle_model_with_a_recomputed_record_is_one_line_and_never_runs(project):
    model_dir = project / "models" / "tiny" / "ss"
    (model_dir / "model.pt").write_bytes(pickle.dumps(Hostile()))
    mark_complete(model_dir, ["model.pt", "config.json"])  # the attacker recomputes complete.json too
    line = one_error_line(xmr("evaluate", "tiny", "ss", "--no-progress"))
    assert "models/tiny/ss/model.pt: not a weights file torch can load safely" in line
    assert not (project / "pwned").exists()
    assert json.loads((model_dir / "config.json").read_text())["method"] == "ss"


def test_yaml_alias_bomb_is_refused_before_it_expands(tmp_path):
    lines = ["a: &a [x, x, x, x, x, x, x, x, x]"]
    lines += [f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 9)}]" for i in range(8)]
    (tmp_path / "params.yaml").write_text("\n".join(lines) + "\n")
    line = one_error_line(xmr("check-params", "--params", tmp_path / "params.yaml"))
    assert "params.yaml: its YAML aliases expand to 4.9e+08 values (at most 1,000,000)" in line


def test_a_lone_surrogate_in_a_caption_names_the_file_and_caption(tmp_path):
    coco = build_mini(tmp_path / "src")
    path = tmp_path / "src" / "annotations" / "captions_val.json"
    path.write_text(path.read_text().replace(" cap 1 ", "cap \\ud800 1"))
    params = write_params(tmp_path, {"datasets": ["m"], "data": {"m": coco}})
    line = one_error_line(xmr("prepare", "m", "--params", params, "--data-dir", tmp_path / "out"))
    assert "captions_val.json: caption 19 has field 'caption' that holds a lone surrogate at character 4" in line


def test_too_many_captions_on_one_image_are_refused_before_tokenizing(tmp_path):
    from detection_helpers import shapes_table
    from pipeline.data.table import label_names, read_table, write_table

    path = shapes_table(tmp_path, 4)
    table = read_table(path)
    cols = {name: table.column(name).to_pylist() for name in table.column_names}
    cols["captions"][2] = ["a red square"] * 40_000  # what `prepare.max_captions: 0` lets through
    write_table(cols, label_names(table), "tiny", path)
    params = write_params(tmp_path, {"datasets": ["tiny"], "data": {"tiny": {"kind": "shapes"}}})
    res = xmr("tokenize", "tiny", "--params", params, "--data-dir", tmp_path / "data")
    line = one_error_line(res)
    assert "image 3 (row 2) has 40000 captions; the text store holds at most 32768 per image" in line
