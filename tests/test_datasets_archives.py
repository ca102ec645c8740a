"""Safe extraction: zip-slip, absolute paths, escaping links and devices are rejected before anything
is written; corrupt members and oversized archives are errors."""
import io
import tarfile
import zipfile

import pytest

from datasets_helpers import make_tar, make_zip
from pipeline.data import archives
from pipeline.data.archives import ArchiveError, UnsafeArchiveError, extract, extract_once


def tar_member(name, kind=tarfile.REGTYPE, data=b"", link=""):
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = link
    info.size = len(data) if kind == tarfile.REGTYPE else 0
    return info, (data if kind == tarfile.REGTYPE else None)


def zip_with_symlink(name, target):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("ok/a.txt", "fine")
        info = zipfile.ZipInfo(name)
        info.external_attr = (0o120777 << 16)
        zf.writestr(info, target)
    return buf.getvalue()


def test_good_zip_and_tar(tmp_path):
    (tmp_path / "a.zip").write_bytes(make_zip({"top/x.txt": "x" * 10, "top/sub/y.txt": "yy", "top/empty/": ""}))
    counts = extract(tmp_path / "a.zip", tmp_path / "out", progress=False)
    assert counts == {"files": 2, "bytes": 12}
    assert (tmp_path / "out/top/sub/y.txt").read_text() == "yy" and (tmp_path / "out/top/empty").is_dir()
    (tmp_path / "a.tar").write_bytes(make_tar([tar_member("d", tarfile.DIRTYPE), tar_member("d/f.txt", data=b"abc"),
                                              tar_member("d/link", tarfile.SYMTYPE, link="f.txt"),
                                              tar_member("d/hard", tarfile.LNKTYPE, link="d/f.txt")]))
    extract(tmp_path / "a.tar", tmp_path / "t", progress=False)
    assert (tmp_path / "t/d/link").read_text() == "abc" and (tmp_path / "t/d/hard").read_text() == "abc"
    assert (tmp_path / "t/d/link").is_symlink()


@pytest.mark.parametrize("name", ["../evil.txt", "ok/../../evil.txt", "/tmp/evil.txt", "..\\evil.txt", "C:/evil.txt"])
def test_zip_slip_is_rejected_before_writing(tmp_path, name):
    (tmp_path / "bad.zip").write_bytes(make_zip({"ok/first.txt": "written first?", name: "pwned"}))
    with pytest.raises(UnsafeArchiveError, match="refusing to extract") as err:
        extract(tmp_path / "bad.zip", tmp_path / "out" / "target", progress=False)
    assert "bad.zip" in str(err.value)
    assert not (tmp_path / "out").exists()  # nothing at all was written
    assert not (tmp_path / "evil.txt").exists()


@pytest.mark.parametrize("members, needle", [
    ([tar_member("link", tarfile.SYMTYPE, link="../../etc/passwd")], "points outside the extraction folder"),
    ([tar_member("a/link", tarfile.SYMTYPE, link="../../x")], "points outside the extraction folder"),
    ([tar_member("link", tarfile.SYMTYPE, link="/etc/passwd")], "points to the absolute path"),
    ([tar_member("hard", tarfile.LNKTYPE, link="../outside")], "contains a '..' component"),
    ([tar_member("hard", tarfile.LNKTYPE, link="missing.txt")], "not in the archive"),
    ([tar_member("dev", tarfile.CHRTYPE)], "device or FIFO"),
    ([tar_member("/abs.txt", data=b"x")], "absolute path"),
])
def test_unsafe_tar_is_rejected(tmp_path, members, needle):
    (tmp_path / "bad.tar").write_bytes(make_tar([tar_member("fine.txt", data=b"ok")] + members))
    with pytest.raises(UnsafeArchiveError, match=needle):
        extract(tmp_path / "bad.tar", tmp_path / "out", progress=False)
    assert not (tmp_path / "out" / "fine.txt").exists()


def test_zip_symlink_escaping_is_rejected(tmp_path):
    (tmp_path / "l.zip").write_bytes(zip_with_symlink("ok/up", "../../secret"))
    with pytest.raises(UnsafeArchiveError, match="points outside"):
        extract(tmp_path / "l.zip", tmp_path / "out", progress=False)
    (tmp_path / "good.zip").write_bytes(zip_with_symlink("ok/alias", "a.txt"))
    extract(tmp_path / "good.zip", tmp_path / "out2", progress=False)
    assert (tmp_path / "out2/ok/alias").read_text() == "fine"


def test_link_planted_by_an_earlier_archive_cannot_be_written_through(tmp_path):
    target = tmp_path / "out"
    target.mkdir()
    (tmp_path / "elsewhere").mkdir()
    (target / "dir").symlink_to(tmp_path / "elsewhere")
    (tmp_path / "a.zip").write_bytes(make_zip({"dir/file.txt": "x"}))
    with pytest.raises(UnsafeArchiveError, match="through a link outside"):
        extract(tmp_path / "a.zip", target, progress=False)
    assert not (tmp_path / "elsewhere" / "file.txt").exists()


def test_corrupt_member_is_an_error(tmp_path):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("data.bin", b"A" * 1000)
    raw = bytearray(buf.getvalue())
    raw[raw.index(b"A" * 1000) + 500] = ord("B")  # flip a stored byte: the CRC no longer matches
    (tmp_path / "c.zip").write_bytes(bytes(raw))
    with pytest.raises(ArchiveError, match="'data.bin' is corrupt"):
        extract(tmp_path / "c.zip", tmp_path / "out", progress=False)


def test_declared_sizes_must_fit_and_match(tmp_path, monkeypatch):
    (tmp_path / "a.zip").write_bytes(make_zip({"x.txt": "x" * 5000}))
    monkeypatch.setattr(archives.shutil, "disk_usage", lambda p: type("U", (), {"free": 100})())
    with pytest.raises(ArchiveError, match="needs 0.00 GB but .* has 0.00 GB free"):
        extract(tmp_path / "a.zip", tmp_path / "out", progress=False)
    monkeypatch.undo()
    # A member that delivers more, or fewer, bytes than its header declares.
    with pytest.raises(ArchiveError, match="holds more than the 10 bytes its header declares"):
        archives._copy(io.BytesIO(b"x" * 5000), tmp_path / "y", 10, tmp_path / "a.zip", "x.txt")
    with pytest.raises(ArchiveError, match="has 5000 bytes, its header declares 6000"):
        archives._copy(io.BytesIO(b"x" * 5000), tmp_path / "y", 6000, tmp_path / "a.zip", "x.txt")

def test_not_an_archive(tmp_path):
    (tmp_path / "x.zip").write_bytes(b"plain text")
    with pytest.raises(ArchiveError, match="not a zip or tar archive"):
        extract(tmp_path / "x.zip", tmp_path / "out", progress=False)


def test_extract_once_skips_a_finished_extraction(tmp_path):
    (tmp_path / "a.zip").write_bytes(make_zip({"f.txt": "1"}))
    assert extract_once(tmp_path / "a.zip", tmp_path / "out", "aa" * 32, progress=False)
    (tmp_path / "out" / "f.txt").write_text("edited")
    assert not extract_once(tmp_path / "a.zip", tmp_path / "out", "aa" * 32, progress=False)
    assert (tmp_path / "out" / "f.txt").read_text() == "edited"
    assert extract_once(tmp_path / "a.zip", tmp_path / "out", "bb" * 32, progress=False)  # another archive
    assert (tmp_path / "out" / "f.txt").read_text() == "1"
