"""Downloading against a local HTTP server on 127.0.0.1: hashes, trust on first use, resume, 404."""
import json
import os

import pytest

from datasets_helpers import download_params, publish, serving, sha256, write_registry
from pipeline.data import registry as reg
from pipeline.data.fetch import ChecksumError, DownloadError, FetchSettings, fetch_file

PAYLOAD = os.urandom(300_000)


def setup(tmp_path, server, sha="published", **file_overrides):
    f = {"name": "blob.bin", "data": PAYLOAD, "extract": False}
    if sha is None:
        f["sha256"] = None
    elif sha != "published":
        f["sha256"] = sha
    f.update(file_overrides)
    sources = {"src": {"used_by": ["asset"], "files": [f]}}
    registry = write_registry(tmp_path / "registry.yaml", sources)
    mirrors = publish(server, sources)
    params = download_params(tmp_path, registry, mirrors)
    entry = reg.load_registry(registry)["src"].files[0]
    return entry, params


def settings(params, **kw):
    p = dict(params, **kw)
    return FetchSettings.from_params(p)


def test_happy_path_then_cached(tmp_path):
    with serving() as server:
        entry, params = setup(tmp_path, server)
        info = fetch_file(entry, settings(params))
        dest = tmp_path / "downloads" / "src" / "blob.bin"
        assert dest.read_bytes() == PAYLOAD and info["sha256"] == sha256(PAYLOAD)
        assert info["hash_checked_against"] == "registry"
        assert not (tmp_path / "registry.lock.json").exists()  # published hash: nothing to trust
        again = fetch_file(entry, settings(params))
        assert len(server.gets("src/blob.bin")) == 1  # verified local copy, no second request
        assert again["url"].startswith("local copy")


def test_checksum_mismatch_removes_the_file(tmp_path):
    with serving() as server:
        entry, params = setup(tmp_path, server, sha="0" * 64)
        with pytest.raises(ChecksumError, match="does not match the registry value 0000") as err:
            fetch_file(entry, settings(params))
        assert "download.mirrors.src" in str(err.value)
        assert not list((tmp_path / "downloads" / "src").iterdir())  # neither the file nor a partial


def test_trust_on_first_use_then_enforced(tmp_path):
    with serving() as server:
        entry, params = setup(tmp_path, server, sha=None)
        info = fetch_file(entry, settings(params))
        lock = json.loads((tmp_path / "registry.lock.json").read_text())["files"]
        assert lock["src/blob.bin"]["sha256"] == sha256(PAYLOAD) == info["sha256"]
        assert info["hash_checked_against"] == "recorded now (first use)"
        # The mirror later serves different bytes: the recorded hash catches it.
        (tmp_path / "downloads" / "src" / "blob.bin").unlink()
        server.files["/src/blob.bin"] = PAYLOAD[:-1] + b"x"
        with pytest.raises(ChecksumError, match="does not match the lock value"):
            fetch_file(entry, settings(params))
        assert not (tmp_path / "downloads" / "src" / "blob.bin").exists()


def test_interrupted_transfer_resumes_with_range(tmp_path):
    with serving() as server:
        entry, params = setup(tmp_path, server)
        server.drop_after["/src/blob.bin"] = 100_000
        with pytest.raises(DownloadError, match="partial download kept"):
            fetch_file(entry, settings(params))
        part = tmp_path / "downloads" / "src" / "blob.bin.part"
        kept = part.stat().st_size  # what was written before the drop (whole 64 KiB chunks)
        assert 0 < kept <= 100_000 and part.read_bytes() == PAYLOAD[:kept]
        fetch_file(entry, settings(params))
        assert (tmp_path / "downloads" / "src" / "blob.bin").read_bytes() == PAYLOAD
        assert server.gets("src/blob.bin") == [(None, 200), (f"bytes={kept}-", 206)]
        assert not part.exists()


def test_retry_resumes_within_one_call(tmp_path):
    with serving() as server:
        entry, params = setup(tmp_path, server)
        server.drop_after["/src/blob.bin"] = 150_000
        info = fetch_file(entry, settings(params, retries=1))
        assert info["sha256"] == sha256(PAYLOAD)
        (first, status1), (second, status2) = server.gets("src/blob.bin")
        assert first is None and status1 == 200 and status2 == 206
        assert 0 < int(second.split("=")[1].rstrip("-")) <= 150_000


def test_server_ignoring_range_restarts_cleanly(tmp_path):
    with serving() as server:
        entry, params = setup(tmp_path, server)
        server.drop_after["/src/blob.bin"] = 70_000
        server.ignore_range = True
        fetch_file(entry, settings(params, retries=1))
        assert (tmp_path / "downloads" / "src" / "blob.bin").read_bytes() == PAYLOAD
        (first, _), (second, status) = server.gets("src/blob.bin")
        assert first is None and second.startswith("bytes=") and status == 200


def test_404_names_the_url_and_the_mirror_setting(tmp_path):
    with serving() as server:
        entry, params = setup(tmp_path, server)
        del server.files["/src/blob.bin"]
        with pytest.raises(DownloadError) as err:
            fetch_file(entry, settings(params))
        msg = str(err.value)
        assert f"HTTP 404 for {server.url}/src/blob.bin" in msg
        assert "download.mirrors.src" in msg
        assert not list((tmp_path / "downloads" / "src").iterdir())


def test_next_mirror_after_a_404(tmp_path):
    with serving() as server:
        entry, params = setup(tmp_path, server)
        mirrors = {"src": [f"{server.url}/gone", f"{server.url}/src"]}
        info = fetch_file(entry, settings(params, mirrors=mirrors))
        assert info["url"] == f"{server.url}/src/blob.bin"
        assert server.gets("gone/blob.bin") == [(None, 404)]


@pytest.mark.parametrize("override, needle", [
    ({"size": 123}, "has 300000 bytes, the registry says 123"),
    ({"sha256": None, "sha256_prefix": "ffffffff"}, "does not start with the published prefix ffffffff"),
])
def test_size_and_prefix_are_checked(tmp_path, override, needle):
    with serving() as server:
        entry, params = setup(tmp_path, server, **override)
        with pytest.raises(ChecksumError, match=needle):
            fetch_file(entry, settings(params))
        assert not (tmp_path / "downloads" / "src" / "blob.bin").exists()
        assert not (tmp_path / "registry.lock.json").exists()


def test_bad_mirror_param(tmp_path):
    with serving() as server:
        entry, params = setup(tmp_path, server)
        with pytest.raises(DownloadError, match="download.mirrors.src must be a list of base URLs"):
            fetch_file(entry, settings(params, mirrors={"src": [42]}))
