"""Publishing and removing asset files: atomic, verified, and never beyond what the index owns."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from importer.errors import CacheCorrupt
from importer.publish import copy_verified, remove_owned


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def digest_of(path: Path) -> str | None:
    return sha(path.read_bytes()) if path.is_file() else None


def test_copy_verified_refuses_a_mismatch_and_keeps_the_old_file(tmp_path):
    source, target = tmp_path / "src.ogg", tmp_path / "assets/x.ogg"
    source.write_bytes(b"new")
    target.parent.mkdir()
    target.write_bytes(b"old")
    with pytest.raises(CacheCorrupt):
        copy_verified(source, target, sha(b"something else"))
    assert target.read_bytes() == b"old" and [p.name for p in target.parent.iterdir()] == ["x.ogg"]
    assert copy_verified(source, target, sha(b"new")) == (3, sha(b"new")) and target.read_bytes() == b"new"


def test_remove_owned_never_follows_a_symlink_or_leaves_the_repo(tmp_path):
    root, assets = tmp_path / "game", tmp_path / "game/assets"
    handmade = root / "handmade/theme.ogg"
    handmade.parent.mkdir(parents=True)
    handmade.write_bytes(b"somebody's work")
    link = assets / "ambient/drone.ogg"
    link.parent.mkdir(parents=True)
    link.symlink_to(handmade)
    outside = tmp_path / "outside.ogg"
    outside.write_bytes(b"x")
    removed = remove_owned([(link, "0" * 64), (outside, sha(b"x"))], root, assets, digest_of)
    assert removed == [link]
    assert handmade.read_bytes() == b"somebody's work" and outside.exists()
    assert not link.exists() and not link.is_symlink() and not (assets / "ambient").exists()


def test_outside_the_assets_only_unchanged_files_are_removed(tmp_path):
    root, assets = tmp_path, tmp_path / "assets"
    ours, edited = root / "old/a.ogg", root / "old/b.ogg"
    ours.parent.mkdir()
    ours.write_bytes(b"published")
    edited.write_bytes(b"edited by hand")
    removed = remove_owned([(ours, sha(b"published")), (edited, sha(b"published too"))], root, assets, digest_of)
    assert removed == [ours] and edited.exists()
