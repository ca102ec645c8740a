"""MIRFlickr-25K: download the miniature archives from a local server, prepare, check the rules."""
import copy
import json
import shutil
from pathlib import Path

import pytest

from datasets_helpers import MIR_LABELS, download_params, mirflickr_sources, publish, serving, write_registry
from pipeline.data import splits
from pipeline.data.download import download_dataset
from pipeline.data.mirflickr import MirflickrError
from pipeline.data.prepare import prepare_dataset
from pipeline.data.table import label_names, read_table
from pipeline.params import MIRFLICKR_SCHEMA, ParamError

PREP = {"images_without_labels": "keep", "max_captions": 5}


def mir_params(tmp_path, **kw):
    p = copy.deepcopy(MIRFLICKR_SCHEMA)
    p.update(n_val=2, n_test=2, split_file=str(tmp_path / "splits" / "mirflickr25k.json"))
    p.update(kw)
    return p


@pytest.fixture(scope="module")
def downloaded(tmp_path_factory):
    """The miniature downloaded and extracted once: (data_dir, download params, facts)."""
    tmp = tmp_path_factory.mktemp("mir")
    sources, facts = mirflickr_sources()
    with serving() as server:
        registry = write_registry(tmp / "registry.yaml", sources)
        dl = download_params(tmp, registry, publish(server, sources))
        counts = download_dataset("mir", mir_params(tmp), tmp / "data", dl)
    assert counts == {"mirflickr25k": 2}
    return tmp / "data", dl, facts


def expected_text(facts, i):
    kept = [t for t in dict.fromkeys(facts["tags"][i]) if t in facts["common"]]
    return " ".join(kept)


def test_download_then_prepare(downloaded, tmp_path):
    data_dir, dl, facts = downloaded
    manifest = json.loads((data_dir / "mir" / "raw" / "manifest.json").read_text())
    extracted = manifest["sources"]["mirflickr25k"]["extracted"]
    assert Path(extracted, "mirflickr", "im14.jpg").is_file() and Path(extracted, "animals.txt").is_file()
    zip_info = manifest["sources"]["mirflickr25k"]["files"]["mirflickr25k.zip"]
    assert set(zip_info) == {"path", "sha256", "size"} and Path(zip_info["path"]).stat().st_size == zip_info["size"]
    params = mir_params(tmp_path)
    stats = prepare_dataset("mir", params, PREP, data_dir)
    table = read_table(data_dir / "mir" / "table.parquet")
    rows = table.to_pylist()
    ids = {r["image_id"] for r in rows}
    assert ids == set(range(1, facts["n"] + 1)) - facts["dropped"]
    assert label_names(table) == list(MIR_LABELS)
    for r in rows:
        i = r["image_id"]
        assert r["labels"] == sorted(MIR_LABELS.index(n) for n, members in facts["labels"].items() if i in members)
        assert r["captions"] == [expected_text(facts, i)]
        assert (r["width"], r["height"]) == (10 + i, 8 + i % 3)
        assert r["file_path"].endswith(f"mirflickr/im{i}.jpg")
    assert stats["images"] == {"train": 7, "val": 2, "test": 2}
    assert stats["source"]["without_label"] == 1 and stats["source"]["without_tag"] == 2
    assert stats["source"]["split_file_created"] is True
    # The frozen split is the documented seeded rule over the eligible pairs, and rows follow it.
    expected = splits.seeded_split(sorted(ids), 2, 2, 0)
    doc = json.loads((tmp_path / "splits" / "mirflickr25k.json").read_text())
    assert doc["splits"] == expected and doc["dataset"] == "mirflickr"
    assert [r["split"] for r in rows] == ["train"] * 7 + ["val"] * 2 + ["test"] * 2
    assert {r["image_id"] for r in rows if r["split"] == "test"} == set(expected["test"])


def test_frozen_split_is_reused_and_protected(downloaded, tmp_path):
    data_dir, _, _ = downloaded
    params = mir_params(tmp_path)
    prepare_dataset("mir", params, PREP, data_dir)
    before = (data_dir / "mir" / "table.parquet").read_bytes()
    split_file = tmp_path / "splits" / "mirflickr25k.json"
    # A different seed does not move a frozen split: the file wins.
    again = prepare_dataset("mir", dict(params, split_seed=7), PREP, data_dir)
    assert again["source"]["split_file_created"] is False
    assert (data_dir / "mir" / "table.parquet").read_bytes() == before
    doc = json.loads(split_file.read_text())
    doc["splits"]["test"][0], doc["splits"]["train"][0] = doc["splits"]["train"][0], doc["splits"]["test"][0]
    split_file.write_text(json.dumps(doc))
    with pytest.raises(splits.SplitError, match="the file was edited"):
        prepare_dataset("mir", params, PREP, data_dir)
    # A split made under other eligibility rules does not match the data.
    split_file.unlink()
    prepare_dataset("mir", params, PREP, data_dir)
    with pytest.raises(splits.SplitError, match="does not match the data"):
        prepare_dataset("mir", dict(params, require_tag=False), PREP, data_dir)


def test_pairs_without_label_or_tag_policy(downloaded, tmp_path):
    data_dir, _, facts = downloaded
    root = json.loads((data_dir / "mir" / "raw" / "manifest.json").read_text())["sources"]["mirflickr25k"]["extracted"]
    params = mir_params(tmp_path, root=root, require_label=False, require_tag=False, tag_vocabulary="all")
    stats = prepare_dataset("own", params, PREP, tmp_path / "out")
    rows = {r["image_id"]: r for r in read_table(tmp_path / "out" / "own" / "table.parquet").to_pylist()}
    assert set(rows) == set(range(1, facts["n"] + 1))
    assert rows[3]["labels"] == []  # listed only in baby_r1.txt: *_r1 files are not labels
    assert rows[5]["captions"] == []
    assert rows[7]["captions"] == ["nikon canon"]  # rare tags kept with tag_vocabulary: all
    assert stats["images_without_labels"] == 1 and stats["images_without_captions"] == 1


@pytest.mark.parametrize("change, error, needle", [
    (lambda root: (root / "dog.txt").unlink(), MirflickrError, "missing: ['dog']"),
    (lambda root: (root / "sky.txt").write_text("1\n99\n"), MirflickrError, "sky.txt: image number 99 is outside 1..14"),
    (lambda root: (root / "sky.txt").write_text("1\nfoo\n"), MirflickrError, "expected one image number per line"),
    (lambda root: (root / "mirflickr" / "im4.jpg").unlink(), MirflickrError, "without gaps"),
    (lambda root: (root / "mirflickr" / "meta" / "tags" / "tags2.txt").unlink(), MirflickrError, "tag file of image im2.jpg"),
])
def test_bad_source_files(downloaded, tmp_path, change, error, needle):
    data_dir, _, _ = downloaded
    root = json.loads((data_dir / "mir" / "raw" / "manifest.json").read_text())["sources"]["mirflickr25k"]["extracted"]
    copy_root = tmp_path / "copy"
    shutil.copytree(root, copy_root)
    change(copy_root)
    with pytest.raises(error) as err:
        prepare_dataset("m", mir_params(tmp_path, root=str(copy_root)), PREP, tmp_path / "out")
    assert needle in str(err.value)


def test_rule_parameters_are_checked(downloaded, tmp_path):
    data_dir, _, _ = downloaded
    with pytest.raises(MirflickrError, match="keeps 11 pairs, data.mir.expected_pairs says 20015"):
        prepare_dataset("mir", mir_params(tmp_path, expected_pairs=20015), PREP, data_dir)
    with pytest.raises(ParamError, match="tag_vocabulary must be 'common' or 'all'"):
        prepare_dataset("mir", mir_params(tmp_path, tag_vocabulary="rare"), PREP, data_dir)
    with pytest.raises(splits.SplitError, match="cannot take 10 test and 2 val images out of 11"):
        prepare_dataset("mir", mir_params(tmp_path, n_test=10), PREP, data_dir)


def test_prepare_before_download_says_what_to_run(tmp_path):
    with pytest.raises(FileNotFoundError, match="run `xmr download mir` first"):
        prepare_dataset("mir", mir_params(tmp_path), PREP, tmp_path / "data")
