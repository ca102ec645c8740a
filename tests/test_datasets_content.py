"""Downloads as the hosts serve them today: error pages instead of files, per-file mirrors, and the
registry's known alternatives. Everything is served from 127.0.0.1 by the test."""
from __future__ import annotations

import io
import json
import zipfile

import pytest
import yaml

from datasets_helpers import download_params, publish, serving, write_registry
from pipeline.data import registry as reg
from pipeline.data.content import ContentError, check_content, describe
from pipeline.data.download import fetch_source
from pipeline.data.fetch import DownloadError, FetchSettings, fetch_file

LOGIN_PAGE = b"<!DOCTYPE html>\n<html><head><title>Sign in</title></head><body>Please log in</body></html>\n"


def a_zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("dataset_coco.json", "{}")
    return buf.getvalue()


def project(tmp_path, server, files, alternatives=None):
    """One source `src` whose files have no published hash (trust on first use)."""
    sources = {"src": {"used_by": ["asset"], "files": [dict(f, sha256=None, extract=False) for f in files]}}
    path = write_registry(tmp_path / "registry.yaml", sources)
    if alternatives:
        doc = yaml.safe_load(path.read_text())
        doc["sources"]["src"]["alternatives"] = alternatives
        path.write_text(yaml.safe_dump(doc))
    mirrors = publish(server, sources)
    return reg.load_registry(path)["src"], download_params(tmp_path, path, mirrors)


def nothing_left(tmp_path):
    assert not (tmp_path / "registry.lock.json").exists()
    assert not list((tmp_path / "downloads" / "src").glob("*"))


def test_html_page_served_for_a_zip_is_refused_and_nothing_is_locked(tmp_path):
    with serving() as server:
        src, params = project(tmp_path, server, [{"name": "caption_datasets.zip", "data": LOGIN_PAGE}])
        with pytest.raises(DownloadError) as err:
            fetch_file(src.files[0], FetchSettings.from_params(params))
    msg = str(err.value)
    assert f"{server.url}/src/caption_datasets.zip served an HTML page where a zip archive was expected" in msg
    assert "nothing was kept or locked" in msg
    nothing_left(tmp_path)


def test_text_served_for_a_gzip_is_refused(tmp_path):
    with serving() as server:
        src, params = project(tmp_path, server, [{"name": "vectors.bin.gz", "data": b"404: Not Found"}])
        with pytest.raises(DownloadError, match=r"vectors\.bin\.gz served text where a gzip file was expected"):
            fetch_file(src.files[0], FetchSettings.from_params(params))
    nothing_left(tmp_path)


def test_next_url_after_an_html_page_and_only_the_real_file_is_locked(tmp_path):
    real = a_zip()
    with serving() as server:
        src, params = project(tmp_path, server, [{"name": "caption_datasets.zip", "data": real}])
        server.add("interstitial/caption_datasets.zip", LOGIN_PAGE)
        mirrors = {"src": [f"{server.url}/interstitial", f"{server.url}/src"]}
        info = fetch_file(src.files[0], FetchSettings.from_params(dict(params, mirrors=mirrors)))
    assert info["url"] == f"{server.url}/src/caption_datasets.zip"
    lock = json.loads((tmp_path / "registry.lock.json").read_text())["files"]
    assert lock["src/caption_datasets.zip"]["url"] == info["url"]
    assert (tmp_path / "downloads" / "src" / "caption_datasets.zip").read_bytes() == real


def test_an_html_copy_left_on_disk_is_not_trusted(tmp_path):
    with serving() as server:
        src, params = project(tmp_path, server, [{"name": "Groundtruth.zip", "data": a_zip()}])
        dest = tmp_path / "downloads" / "src" / "Groundtruth.zip"
        dest.parent.mkdir(parents=True)
        dest.write_bytes(LOGIN_PAGE)  # e.g. fetched by hand, or by an earlier version
        with pytest.raises(ContentError, match="Groundtruth.zip served an HTML page"):
            fetch_file(src.files[0], FetchSettings.from_params(params))
    nothing_left(tmp_path)


def test_per_file_mirror_urls(tmp_path):
    """A host with other paths and names: each registry file maps to its own URL."""
    tags, ground = a_zip(), a_zip() + b"\x00"
    with serving() as server:
        src, params = project(tmp_path, server, [{"name": "NUS_WID_Tags.zip", "data": tags},
                                                 {"name": "Groundtruth.zip", "data": ground}])
        server.add("datasets/nus/resolve/main/NUS_WID_Tags.zip", tags)
        server.add("other/host/gt-2019.zip", ground)
        mirrors = {"src": {"NUS_WID_Tags.zip": f"{server.url}/datasets/nus/resolve/main/NUS_WID_Tags.zip",
                           "Groundtruth.zip": [f"{server.url}/gone.zip", f"{server.url}/other/host/gt-2019.zip"]}}
        out = fetch_source(src, FetchSettings.from_params(dict(params, mirrors=mirrors)))
        assert server.gets("datasets/nus/resolve/main/NUS_WID_Tags.zip") == [(None, 200)]
        assert server.gets("other/host/gt-2019.zip") == [(None, 200)]
        assert not server.gets("src/NUS_WID_Tags.zip") and not server.gets("src/Groundtruth.zip")
    files = out["files"]
    assert (tmp_path / "downloads" / "src" / "Groundtruth.zip").read_bytes() == ground  # kept under the registry name
    assert files["NUS_WID_Tags.zip"]["path"].endswith("NUS_WID_Tags.zip")


def test_per_file_mirror_for_the_unmapped_file_falls_back_to_the_registry(tmp_path):
    with serving() as server:
        src, params = project(tmp_path, server, [{"name": "a.zip", "data": a_zip()}, {"name": "b.zip", "data": a_zip()}])
        mirrors = {"src": {"a.zip": f"{server.url}/src/a.zip"}}
        settings = FetchSettings.from_params(dict(params, mirrors=mirrors, timeout=2.0))
        assert fetch_file(src.files[0], settings)["url"] == f"{server.url}/src/a.zip"
        with pytest.raises(DownloadError, match=r"http://127\.0\.0\.1:9/src/b\.zip"):
            fetch_file(src.files[1], settings)


@pytest.mark.parametrize("mirrors, needle", [
    ({"src": {"c.zip": "http://127.0.0.1:9/c.zip"}}, "download.mirrors.src maps unknown file 'c.zip'"),
    ({"src": {"a.zip": 42}}, "download.mirrors.src.a.zip must be a URL or a list of URLs"),
    ({"src": 42}, "download.mirrors.src must be a list of base URLs or a mapping from file name to URL"),
])
def test_bad_mirror_settings_are_named(tmp_path, mirrors, needle):
    with serving() as server:
        src, params = project(tmp_path, server, [{"name": "a.zip", "data": a_zip()}])
        with pytest.raises(DownloadError, match=needle):
            fetch_source(src, FetchSettings.from_params(dict(params, mirrors=mirrors)))


def test_known_alternatives_are_listed_when_no_url_works(tmp_path):
    alternatives = [{"name": "a community copy", "note": "same file, hash trusted on first use",
                     "files": {"a.zip": "https://example.invalid/a.zip"}}]
    with serving() as server:
        src, params = project(tmp_path, server, [{"name": "a.zip", "data": a_zip()}], alternatives)
        del server.files["/src/a.zip"]
        with pytest.raises(DownloadError) as err:
            fetch_source(src, FetchSettings.from_params(params))
    msg = str(err.value)
    assert "HTTP 404" in msg and "Known alternatives" in msg
    assert "a community copy: same file" in msg and "a.zip -> https://example.invalid/a.zip" in msg


def test_registry_lists_alternatives_and_checks_them(tmp_path):
    sources = reg.load_registry()
    nus = sources["nuswide"].alternatives
    assert any("Lxyhaha/NUS-WIDE" in a.name and dict(a.files).get("NUS_WID_Tags.zip") for a in nus)
    karpathy = sources["karpathy"].alternatives
    assert len(karpathy) >= 2 and all(dict(a.files).get("caption_datasets.zip") for a in karpathy)
    assert {f.content for f in sources["weights"].files} == {"torch", "pickle"}
    doc = {"sources": {"s": {"files": [{"name": "a.zip", "urls": ["http://x/a.zip"]}],
                             "alternatives": [{"name": "m", "note": "", "files": {"b.zip": "http://y/b.zip"}}]}}}
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(doc))
    with pytest.raises(reg.RegistryError, match="alternative 'm' names unknown file 'b.zip'"):
        reg.load_registry(tmp_path / "r.yaml")
    doc["sources"]["s"]["alternatives"] = []
    doc["sources"]["s"]["files"][0]["content"] = "movie"
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(doc))
    with pytest.raises(reg.RegistryError, match="'content' 'movie'"):
        reg.load_registry(tmp_path / "r.yaml")


@pytest.mark.parametrize("head, kind, ok", [
    (b"PK\x03\x04rest", "zip", True), (LOGIN_PAGE, "zip", False), (b"\x1f\x8b\x08", "gzip", True),
    (b"PK\x03\x04", "torch", True), (b"\x80\x02}q\x00.", "pickle", True), (LOGIN_PAGE, "pickle", False),
    (bytes(range(256)), "binary", True), (b"Access denied\n", "binary", False),
    (b"  \n<?xml version='1.0'?><Error>NoSuchKey</Error>", "torch", False),
])
def test_content_sniffing(tmp_path, head, kind, ok):
    path = tmp_path / "f"
    path.write_bytes(head)
    if ok:
        check_content(path, kind, "http://host/f")
    else:
        with pytest.raises(ContentError, match="http://host/f served"):
            check_content(path, kind, "http://host/f")


def test_describe():
    assert describe(LOGIN_PAGE) == "an HTML page" and describe(b"hello") == "text"
    assert describe(b"\x00\x01") == "binary data" and describe(b"") == "an empty body"
