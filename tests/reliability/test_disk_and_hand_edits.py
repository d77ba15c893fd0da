"""Disk full while writing outputs, the index or the cache (a small tmpfs mounted over the
assets folder or the cache; skipped with the reason where mounting is refused), and
assets edited or deleted by hand."""

from __future__ import annotations

import json
import os
import subprocess
from contextlib import contextmanager
from pathlib import Path

import pytest
from faults import Project, build
from invariants import TALLY, check_complete, check_tree, sha256


@contextmanager
def small_disk(path: Path, size: str):
    path.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True, text=True
    )
    if proc.returncode != 0:
        pytest.skip(
            f"cannot mount a tmpfs here ({proc.stderr.strip() or 'mount failed'}); "
            "a disk-full test needs root and CAP_SYS_ADMIN"
        )
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def fill(folder: Path) -> None:
    """Fill a file system until not one more byte fits (unbuffered writes, big then small)."""
    for name, chunk in (("filler.bin", 65536), ("filler2.bin", 1)):
        fd = os.open(folder / name, os.O_WRONLY | os.O_CREAT, 0o644)
        try:
            while True:
                os.write(fd, b"\0" * chunk)
        except OSError:
            pass
        finally:
            os.close(fd)


def test_disk_full_while_publishing_and_writing_the_index(built_repo):
    repo = built_repo
    project = Project(repo)
    assets = repo.root / "assets/music"
    with small_disk(assets, "2m"):  # hides the built files: this build restores them onto the tmpfs
        assert build(repo).returncode == 0
        before = check_complete(repo.root)
        fill(assets)
        for state in project.specs.values():
            state.ogg_quality = 2  # every track re-encoded: new files to publish
        project.write()
        TALLY.trial()
        proc = build(repo)
        text = proc.stdout + proc.stderr
        assert proc.returncode == 1, text
        assert "Traceback" not in text, text
        assert "No space left on device" in text, text
        assert check_tree(repo.root) == []
        assert json.loads((assets / "index.json").read_text()) == before  # intact: the last good state
        (assets / "filler.bin").unlink()
        (assets / "filler2.bin").unlink()
        assert build(repo).returncode == 0
        check_complete(repo.root, decode=True)
        TALLY.survived()


def test_disk_full_while_writing_the_cache(built_repo):
    repo = built_repo
    project = Project(repo)
    before = check_complete(repo.root)
    with small_disk(repo.cache, "64k"):  # an empty cache that cannot hold one raw entry
        project.specs["alpha"].seed = 9
        project.write()
        TALLY.trial()
        proc = build(repo)
        text = proc.stdout + proc.stderr
        assert proc.returncode == 1, text
        assert "Traceback" not in text, text
        assert "No space left on device" in text and "alpha" in text, text
        assert check_tree(repo.root) == []
        assert repo.index() == before  # alpha keeps its last good asset and entry
        assert sorted(p.name for p in (repo.cache / "v1/tmp").iterdir()) == []  # no half entry left
    TALLY.survived()


def test_asset_edited_or_deleted_by_hand_is_restored(built_repo):
    repo = built_repo
    before = check_complete(repo.root)
    ogg = repo.root / before["tracks"]["alpha"]["files"]["ogg"]["path"]
    mp3 = repo.root / before["tracks"]["beta"]["files"]["mp3"]["path"]
    with open(ogg, "r+b") as fh:  # one byte changed in place, size kept
        fh.seek(ogg.stat().st_size // 2)
        byte = fh.read(1)
        fh.seek(-1, os.SEEK_CUR)
        fh.write(bytes([byte[0] ^ 0xFF]))
    mp3.unlink()
    TALLY.trial()
    proc = build(repo, "--json")
    assert proc.returncode == 0, proc.stderr
    results = {t["name"]: t for t in json.loads(proc.stdout)["tracks"]}
    assert results["alpha"]["action"] == "restore" and "output modified (ogg)" in results["alpha"]["reasons"]
    assert results["beta"]["action"] == "restore" and "output missing (mp3)" in results["beta"]["reasons"]
    assert results["gamma"]["action"] == "fresh"
    assert check_complete(repo.root, decode=True) == before
    assert sha256(ogg) == before["tracks"]["alpha"]["files"]["ogg"]["sha256"]
    TALLY.survived()
