"""Issue 28: archive extraction checks real paths, not names; caps what an archive may expand to; a
download that does not open completely is never locked as trusted on first use."""
from __future__ import annotations

import gzip
import io
import json
import os
import tarfile

import pytest
import yaml

from datasets_helpers import download_params, make_tar, make_zip, publish, serving, write_registry
from pipeline.data import registry as reg
from pipeline.data.archives import ArchiveError, UnsafeArchiveError, extract, verify_archive
from pipeline.data.fetch import FetchSettings, fetch_file
from test_datasets_archives import tar_member
from test_datasets_registry import cli

SYM, HARD, DIR = tarfile.SYMTYPE, tarfile.LNKTYPE, tarfile.DIRTYPE


def chain_to(outside: str) -> list:
    """`a -> .`, then `a/a/a/p -> ../../<outside>` (inside by its name, outside through `a`), a hard link to it."""
    return [tar_member("a", SYM, link="."), tar_member("a/a/a/p", SYM, link=f"../../{outside}"),
            tar_member("h", HARD, link="a/a/a/p")]


def outside_tree(root):
    """Every path under `root`'s parent that is not inside `root` (what an escape would create)."""
    return sorted(str(p.relative_to(root.parent)) for p in root.parent.rglob("*") if root not in (p, *p.parents))


@pytest.mark.parametrize("members, needle", [
    (chain_to("secret.txt"), "link 'a/a/a/p' -> '../../secret.txt' leads outside"),
    ([tar_member("a", SYM, link="."), tar_member("a/a/q", SYM, link=".."), tar_member("a/a/q/made_outside", DIR)],
     "link 'a/a/q' -> '..' leads outside"),
    # accepted when written (c does not exist yet), outside once `c -> .` is there
    ([tar_member("b", SYM, link="c/.."), tar_member("c", SYM, link=".")], "link 'b' -> 'c/..' leads outside"),
])
def test_link_chains_are_resolved_on_disk_and_refused(tmp_path, members, needle):
    box = tmp_path / "box"
    (box / "target").mkdir(parents=True)
    (box / "secret.txt").write_text("host file")
    before = outside_tree(box / "target")
    (tmp_path / "evil.tar").write_bytes(make_tar(members))
    with pytest.raises(UnsafeArchiveError, match=needle):
        extract(tmp_path / "evil.tar", box / "target", progress=False)
    assert outside_tree(box / "target") == before  # no folder made outside
    for path in (box / "target").rglob("*"):
        assert os.path.realpath(path).startswith(str(box / "target")), path  # nothing left that leads out


def test_hard_link_copies_only_a_regular_file_inside(tmp_path):
    (tmp_path / "h.tar").write_bytes(make_tar([tar_member("d", DIR), tar_member("h", HARD, link="d")]))
    with pytest.raises(UnsafeArchiveError, match="hard link 'h' -> 'd' resolves to .*, not a file inside"):
        extract(tmp_path / "h.tar", tmp_path / "target", progress=False)
    assert not (tmp_path / "target" / "h").exists()


def test_zip_bomb_and_total_size_are_capped(tmp_path):
    (tmp_path / "bomb.zip").write_bytes(make_zip({"zeros.bin": b"\0" * (20 << 20)}))  # ~20 KB -> 20 MB
    assert (tmp_path / "bomb.zip").stat().st_size < 200_000
    with pytest.raises(ArchiveError, match=r"x, more than download.max_extract_ratio 100\): refusing what looks like "
                                           r"a zip bomb"):
        extract(tmp_path / "bomb.zip", tmp_path / "out", progress=False)
    assert not (tmp_path / "out" / "zeros.bin").exists()
    with pytest.raises(ArchiveError, match=r"declare 0.02 GB, more than download.max_extract_gb \(0.01 GB\)"):
        extract(tmp_path / "bomb.zip", tmp_path / "out", progress=False, max_gb=0.01, max_ratio=1e6)
    counts = extract(tmp_path / "bomb.zip", tmp_path / "out", progress=False, max_ratio=1e6)
    assert counts["bytes"] == 20 << 20


def test_cli_download_refuses_the_link_chain_archive(tmp_path):
    """End to end: `xmr download` of a registry tar without a published hash (trust on first use)."""
    data = make_tar(chain_to("secret.txt") + [tar_member("mirflickr/ok.txt", data=b"fine")])
    sources = {"mirflickr25k": {"used_by": ["mirflickr"],
                                "files": [{"name": "evil.tar", "data": data, "sha256": None, "extract": True}]}}
    registry = write_registry(tmp_path / "registry.yaml", sources)
    downloads = tmp_path / "downloads"
    (downloads / "secret.txt").parent.mkdir(parents=True)
    (downloads / "secret.txt").write_text("host file")
    with serving() as server:
        params = {"datasets": ["mir"], "data": {"mir": {"kind": "mirflickr"}},
                  "download": download_params(tmp_path, registry, publish(server, sources))}
        (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
        res = cli(["mir", "--params", "params.yaml"], tmp_path)
    assert res.exit_code == 2, res.output
    assert "Traceback" not in res.output
    assert "evil.tar: link 'a/a/a/p' -> '../../secret.txt' leads outside" in res.output
    extracted = downloads / "mirflickr25k" / "extracted"
    assert not (extracted / "h").exists() and not list(extracted.glob(".extracted-*"))
    assert not (tmp_path / "data" / "mir" / "raw" / "manifest.json").exists()


def _tar_gz(n_files: int = 40) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for i in range(n_files):
            payload = os.urandom(4000)
            info = tarfile.TarInfo(f"d/f{i}.bin")
            info.size = len(payload)
            tf.addfile(info, io.BytesIO(payload))
    return buf.getvalue()


@pytest.mark.parametrize("name, data", [
    ("cut.tar.gz", _tar_gz()[:-30_000]),
    ("vectors.bin.gz", gzip.compress(os.urandom(50_000))[:-4] + b"\0\0\0\0"),  # a 206 splice: wrong trailer
    ("cut.zip", make_zip({f"f{i}.bin": os.urandom(3000) for i in range(20)})[:-5000]),
])
def test_truncated_archive_is_not_locked_on_first_use(tmp_path, name, data):
    entry = {"name": name, "data": data, "sha256": None, "extract": not name.endswith(".bin.gz")}
    sources = {"src": {"used_by": ["asset"], "files": [entry]}}
    registry = write_registry(tmp_path / "registry.yaml", sources)
    with serving() as server:
        params = download_params(tmp_path, registry, publish(server, sources))
        entry = reg.load_registry(registry)["src"].files[0]
        with pytest.raises(ArchiveError, match=f"{name}: (does not (open|decompress) completely|not a zip or tar)"):
            fetch_file(entry, FetchSettings.from_params(params))
    assert not (tmp_path / "registry.lock.json").exists()
    assert not (tmp_path / "downloads" / "src" / name).exists()


def test_verify_archive_accepts_complete_archives(tmp_path):
    (tmp_path / "a.tar.gz").write_bytes(_tar_gz(3))
    (tmp_path / "a.zip").write_bytes(make_zip({"x": "y"}))
    verify_archive(tmp_path / "a.tar.gz")
    verify_archive(tmp_path / "a.zip")
    assert gzip.decompress((tmp_path / "a.tar.gz").read_bytes())  # the fixture is a real gzip stream
