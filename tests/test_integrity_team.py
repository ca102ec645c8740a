"""Issue 28: team sharing verifies content. A feature store pushed to a local DVC remote, tampered there
(one shard's object replaced by another valid shard's bytes; separately, a rewritten `.dir` listing),
then pulled into a fresh clone: `dvc pull` (with the remote's `verify = true`) or `xmr verify` fails.
And the workaround for the DVC push bug (a `.dir` on the remote without all its files): `xmr verify
--remote` finds it, `--repair` lets the next `dvc push` upload what is missing."""
from __future__ import annotations

import hashlib
import json
import shutil
import sys
from pathlib import Path

import pytest

from integrity_helpers import build_project
from tiny_project import BIN, dvc, run

STORE = "data/tiny/features.zarr"


def object_path(remote: Path, md5: str) -> Path:
    return remote / "files" / "md5" / md5[:2] / md5[2:]


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    """A git + DVC project whose stage `features` copies a real feature store, pushed to a local remote."""
    import torch

    root = tmp_path_factory.mktemp("team")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        built = build_project(root / "built")
    finally:
        torch.set_num_threads(threads)
    origin, remote = root / "origin", root / "remote"
    origin.mkdir()
    run(["git", "init", "-q", "-b", "main"], origin)
    run(["git", "config", "user.email", "ci@example.invalid"], origin)
    run(["git", "config", "user.name", "ci"], origin)
    dvc(["init", "-q"], origin)
    dvc(["config", "core.analytics", "false"], origin)
    dvc(["remote", "add", "-d", "shared", str(remote)], origin)
    dvc(["remote", "modify", "shared", "verify", "true"], origin)
    copy = f"import shutil; shutil.copytree({str(built / STORE)!r}, {STORE!r})"
    dvc(["stage", "add", "-q", "-n", "features", "-o", STORE, f"{sys.executable} -c \"{copy}\""], origin)
    dvc(["repro", "-q"], origin)
    run(["git", "add", "-A"], origin)
    run(["git", "commit", "-q", "-m", "features"], origin)
    dvc(["push", "-q"], origin)
    return {"root": root, "origin": origin, "remote": remote}


def store_listing(project: Path) -> tuple[str, list[dict]]:
    lock = (project / "dvc.lock").read_text()
    md5 = next(line.split()[-1] for line in lock.splitlines() if line.strip().startswith("md5:") and ".dir" in line)
    return md5, json.loads(object_path(project / ".dvc" / "cache", md5).read_bytes())


def clone(shared, name: str, remote: Path) -> Path:
    dest = shared["root"] / name
    run(["git", "clone", "-q", str(shared["origin"]), str(dest)], shared["root"])
    dvc(["remote", "modify", "--local", "shared", "url", str(remote)], dest)
    return dest


def copy_remote(shared, name: str) -> Path:
    dest = shared["root"] / name
    shutil.copytree(shared["remote"], dest)
    return dest


def xmr_verify(project: Path, *args):
    return run([BIN / "xmr", "verify", *args], project, check=False)


def test_untouched_remote_pulls_and_verifies(shared):
    bob = clone(shared, "bob", shared["remote"])
    dvc(["pull", "-q"], bob)
    res = xmr_verify(bob)
    assert res.returncode == 0, res.stderr
    assert "workspace: 1 outputs (" in res.stdout and "match dvc.lock" in res.stdout


def test_a_shard_replaced_by_another_valid_shard_is_refused(shared):
    remote = copy_remote(shared, "remote-swapped")
    _, listing = store_listing(shared["origin"])
    shards = [e for e in listing if e["relpath"].startswith("features/c/")]
    victim, donor = shards[0], shards[1]
    object_path(remote, victim["md5"]).chmod(0o644)
    shutil.copyfile(object_path(remote, donor["md5"]), object_path(remote, victim["md5"]))
    bob = clone(shared, "bob-swapped", remote)
    pulled = dvc(["pull"], bob, check=False)
    if pulled.returncode == 0:  # DVC let it in: the verify step must refuse it
        res = xmr_verify(bob)
        assert res.returncode == 2 and victim["relpath"] in res.stderr, res.stderr
    else:  # the remote's `verify = true` caught it: the object is not fetched, the checkout fails
        assert "Checkout failed" in pulled.stdout + pulled.stderr and STORE in pulled.stdout + pulled.stderr
        assert not (bob / STORE / victim["relpath"]).exists()


def test_a_rewritten_dir_listing_on_the_remote_is_caught_by_xmr_verify(shared):
    remote = copy_remote(shared, "remote-listing")
    dir_md5, listing = store_listing(shared["origin"])
    shards = [i for i, e in enumerate(listing) if e["relpath"].startswith("features/c/")]
    a, b = shards[0], shards[1]
    listing[a]["md5"], listing[b]["md5"] = listing[b]["md5"], listing[a]["md5"]  # two valid objects swapped
    target = object_path(remote, dir_md5)
    target.chmod(0o644)
    target.write_bytes(json.dumps(listing, sort_keys=True).encode())
    bob = clone(shared, "bob-listing", remote)
    dvc(["pull"], bob, check=False)
    res = xmr_verify(bob)
    assert res.returncode == 2, res.stdout + res.stderr
    line = res.stderr.strip().splitlines()[-1]
    assert line.startswith("error: ") and "Traceback" not in res.stderr
    assert "features.zarr" in line or dir_md5[2:] in line
    assert "dvc.lock" in line


def test_push_bug_workaround_lists_the_remote_and_repairs_it(shared):
    remote = copy_remote(shared, "remote-partial")
    dir_md5, listing = store_listing(shared["origin"])
    lost = listing[0]["md5"]
    object_path(remote, lost).unlink()  # what a killed push leaves: the .dir is there, one file is not
    alice = clone(shared, "alice", remote)
    shutil.copytree(shared["origin"] / ".dvc" / "cache", alice / ".dvc" / "cache", dirs_exist_ok=True)
    dvc(["checkout", "-q"], alice)
    res = xmr_verify(alice, "--remote", "shared")
    assert res.returncode == 2 and f"1 object(s) of dvc.lock missing (first: {lost} of {STORE})" in res.stderr, \
        res.stderr
    res = xmr_verify(alice, "--remote", "shared", "--repair")
    assert res.returncode == 2 and "run `dvc push` again" in res.stderr
    assert not object_path(remote, dir_md5).exists()
    dvc(["push", "-q"], alice)
    assert object_path(remote, lost).is_file()
    res = xmr_verify(alice, "--remote", "shared")
    assert res.returncode == 0 and "objects of dvc.lock present" in res.stdout, res.stderr
    assert hashlib.md5(object_path(remote, lost).read_bytes()).hexdigest() == lost
