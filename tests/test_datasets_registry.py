"""The committed registry, assets (word2vec, weights) through the `xmr download` command, params, splits."""
import hashlib
import gzip
import json
import os

import pytest
import typer
import yaml
from typer.testing import CliRunner

from datasets_helpers import serving, sha256
from pipeline.data import registry as reg
from pipeline.data import splits
from pipeline.data.download import download_asset
from pipeline.data.fetch import ChecksumError
from pipeline.data.prepare import REAL_KINDS
from pipeline.params import ParamError, validate
from stages import download as download_stage


def test_committed_registry_is_complete():
    sources = reg.load_registry()
    for kind in REAL_KINDS:
        assert reg.sources_for_kind(sources, kind), kind
    assert reg.assets(sources) == ["word2vec", "weights"]
    raw = yaml.safe_load(reg.DEFAULT_REGISTRY.read_text())["sources"]
    for name, src in raw.items():
        for f in src["files"]:
            # Every hash is either published (with its origin) or explicitly trusted on first use.
            assert f["hash_source"], f["name"]
            if f["sha256"] is None:
                assert "first use" in f["hash_source"] or f.get("sha256_prefix"), f["name"]
    coco = {f.name: f for f in sources["coco2014"].files}
    assert coco["train2014.zip"].size == 13510573713 and coco["val2014.zip"].sha256.startswith("fe9be816")
    assert sources["weights"].file("fasterrcnn_resnet50_fpn_v2_coco-dd69338a.pth").sha256_prefix == "dd69338a"
    assert {f.name for f in sources["weights"].files} >= {"bua-caffe-frcn-r101-k36.pth", "faster_rcnn_from_caffe.pkl"}


@pytest.mark.parametrize("entry, needle", [
    ({"name": "a/b.zip", "urls": ["http://x/y"]}, "plain file name"),
    ({"name": "a.zip", "urls": []}, "needs 'urls'"),
    ({"name": "a.zip", "urls": ["http://x/a.zip"], "sha256": "abc"}, "64 lowercase hex"),
    ({"name": "a.zip", "urls": ["http://x/a.zip"], "size": -1}, "expected a byte count"),
    ({"name": "a.zip", "urls": ["http://x/a.zip"], "sha256": "a" * 64, "sha256_prefix": "b"}, "does not start with"),
])
def test_malformed_registry(tmp_path, entry, needle):
    (tmp_path / "r.yaml").write_text(yaml.safe_dump({"sources": {"s": {"files": [entry]}}}))
    with pytest.raises(reg.RegistryError, match=needle):
        reg.load_registry(tmp_path / "r.yaml")


def project(tmp_path, server, registry=reg.DEFAULT_REGISTRY, **download):
    """A params.yaml using the committed registry (or `registry`) with every source mirrored on the local server."""
    sources = reg.load_registry(registry)
    mirrors = {name: [f"{server.url}/{name}"] for name in sources}
    params = {"download": {"dir": str(tmp_path / "downloads"), "registry": str(registry),
                           "lock_file": str(tmp_path / "registry.lock.json"), "mirrors": mirrors,
                           "retries": 0, "retry_wait": 0.0, "progress": False, **download}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    return validate(params)["download"]


def cli(args, cwd):
    app = typer.Typer()
    app.command()(download_stage.main)
    old = os.getcwd()
    os.chdir(cwd)
    try:
        return CliRunner().invoke(app, args)
    finally:
        os.chdir(old)


def stand_in_registry(tmp_path, source: str, file: str, size: int):
    """The committed registry with one file's pinned size replaced (stand-ins are smaller than the real files)."""
    doc = yaml.safe_load(reg.DEFAULT_REGISTRY.read_text())
    entry = next(f for f in doc["sources"][source]["files"] if f["name"] == file)
    assert entry["size"] is not None  # pinned in the committed registry
    entry["size"] = size
    path = tmp_path / "registry.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def test_googlenews_size_is_pinned():
    entry = reg.load_registry()["word2vec"].file("GoogleNews-vectors-negative300.bin.gz")
    assert entry.size == 1_647_046_227 and entry.content == "gzip"


def test_download_word2vec_asset_through_the_command(tmp_path):
    vectors = gzip.compress(b"3 2\nthe 0.1 0.2\n", mtime=0)  # stand-in bytes: the real file is 1.6 GB
    registry = stand_in_registry(tmp_path, "word2vec", "GoogleNews-vectors-negative300.bin.gz", len(vectors))
    with serving() as server:
        params = project(tmp_path, server, registry=registry)
        with pytest.raises(FileNotFoundError, match="run `xmr download word2vec`"):
            reg.asset_path("word2vec", download_dir=params["dir"])
        server.add("word2vec/GoogleNews-vectors-negative300.bin.gz", vectors)
        result = cli(["word2vec", "--params", "params.yaml"], tmp_path)
        assert result.exit_code == 0, result.output
        assert sha256(vectors) in result.output and "first use" in result.output
    path = reg.asset_path("word2vec", download_dir=params["dir"])
    assert path.read_bytes() == vectors and path.name == "GoogleNews-vectors-negative300.bin.gz"
    lock = json.loads((tmp_path / "registry.lock.json").read_text())["files"]
    assert lock["word2vec/GoogleNews-vectors-negative300.bin.gz"]["sha256"] == sha256(vectors)


def test_download_command_404_is_one_clear_line(tmp_path):
    with serving() as server:
        project(tmp_path, server)
        result = cli(["word2vec", "--params", "params.yaml"], tmp_path)
    assert result.exit_code == 2
    assert f"HTTP 404 for {server.url}/word2vec/GoogleNews-vectors-negative300.bin.gz" in result.output
    assert "download.mirrors.word2vec" in result.output and "Traceback" not in result.output


def test_weights_prefix_is_enforced_even_without_a_full_hash(tmp_path):
    with serving() as server:
        params = project(tmp_path, server)
        for name in ("fasterrcnn_resnet50_fpn_v2_coco-dd69338a.pth", "bua-caffe-frcn-r101-k36.pth",
                     "faster_rcnn_from_caffe.pkl"):
            server.add(f"weights/{name}", b"PK\x03\x04 not the real weights " + name.encode())  # passes the content check
        with pytest.raises(ChecksumError, match="does not start with the published prefix dd69338a"):
            download_asset("weights", params)
    assert not (tmp_path / "downloads" / "weights" / "fasterrcnn_resnet50_fpn_v2_coco-dd69338a.pth").exists()
    with pytest.raises(reg.RegistryError, match="belongs to a dataset"):
        download_asset("coco2014", params)


def test_params_schema_for_downloads_and_real_kinds():
    p = validate({})
    assert p["download"]["dir"] == "data/downloads" and p["download"]["mirrors"] == {}
    p = validate({"datasets": ["coco"],
                  "data": {"coco": {"kind": "coco2014"}, "nus": {"kind": "nuswide", "images_root": "/x"}}})
    assert p["data"]["coco"]["restval"] == "train" and p["data"]["nus"]["expected_pairs"] == 195834
    assert p["data"]["nus"]["n_val"] == 5000 and p["data"]["nus"]["n_test"] == 1000
    with pytest.raises(ParamError, match="unknown parameter 'data.coco.karpathy'"):
        validate({"datasets": [], "data": {"coco": {"kind": "coco2014", "karpathy": "x"}}})
    with pytest.raises(ParamError, match="unknown parameter 'download.mirror'"):
        validate({"download": {"mirror": {}}})


def test_seeded_split_rule():
    ids = list(range(100, 160))
    a = splits.seeded_split(ids, 10, 5, seed=0)
    assert splits.seeded_split(list(reversed(ids)), 10, 5, seed=0) == a  # input order does not matter
    assert (len(a["train"]), len(a["val"]), len(a["test"])) == (45, 10, 5)
    assert sorted(a["train"] + a["val"] + a["test"]) == ids
    assert splits.seeded_split(ids, 10, 5, seed=1)["test"] != a["test"]
    assert splits.hashed_order([1, 2, 3], 0) == sorted([1, 2, 3], key=lambda i: hashlib.sha256(f"0:{i}".encode()).digest())


def test_split_file_integrity(tmp_path):
    path = tmp_path / "s.json"
    splits.write_split(path, "mirflickr", "rule", {"train": [1, 2], "val": [3], "test": [4]}, {})
    assert splits.read_split(path, "mirflickr") == {"train": [1, 2], "val": [3], "test": [4]}
    with pytest.raises(splits.SplitError, match="for dataset kind 'mirflickr', expected 'nuswide'"):
        splits.read_split(path, "nuswide")
    doc = json.loads(path.read_text())
    doc["splits"]["val"] = [2]
    doc["sha256"] = splits.content_hash(doc["splits"])
    path.write_text(json.dumps(doc))
    with pytest.raises(splits.SplitError, match="image id 2 is in both 'train' and 'val'"):
        splits.read_split(path, "mirflickr")
