"""The local cache: atomic entries, verification on every read, corrupt entries removed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from importer.cache import LocalCache

KEY = "ab" + "0" * 62


def put_entry(cache: LocalCache, tmp_path: Path, payload: bytes = b"raw audio bytes" * 100):
    source = tmp_path / "payload.bin"
    source.write_bytes(payload)
    return cache.put("raw", KEY, {"audio.f32": source}, {"samples": 7})


def test_put_then_get_round_trip(tmp_path):
    cache = LocalCache(tmp_path / "cache")
    entry = put_entry(cache, tmp_path)
    assert entry.directory == tmp_path / "cache/v1/raw/ab" / KEY
    got = cache.get("raw", KEY)
    assert got is not None and got.info == {"samples": 7}
    assert got.files["audio.f32"].read_bytes() == b"raw audio bytes" * 100
    assert cache.has("raw", KEY) and not cache.has("render", KEY)
    assert list((tmp_path / "cache/v1/tmp").iterdir()) == []  # staging cleaned up


def _corrupt_truncate(entry_dir: Path) -> None:
    path = entry_dir / "audio.f32"
    path.write_bytes(path.read_bytes()[:-10])


def _corrupt_flip(entry_dir: Path) -> None:
    path = entry_dir / "audio.f32"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def _corrupt_empty(entry_dir: Path) -> None:
    (entry_dir / "audio.f32").write_bytes(b"")


def _corrupt_manifest_missing(entry_dir: Path) -> None:
    (entry_dir / "manifest.json").unlink()


def _corrupt_manifest_garbage(entry_dir: Path) -> None:
    (entry_dir / "manifest.json").write_text("{not json")


def _corrupt_other_entry(entry_dir: Path) -> None:
    manifest = json.loads((entry_dir / "manifest.json").read_text())
    manifest["key"] = "cd" + "1" * 62
    (entry_dir / "manifest.json").write_text(json.dumps(manifest))


def _corrupt_info(entry_dir: Path) -> None:
    manifest = json.loads((entry_dir / "manifest.json").read_text())
    manifest["info"]["samples"] = 8
    (entry_dir / "manifest.json").write_text(json.dumps(manifest))


@pytest.mark.parametrize(
    "corrupt",
    [
        _corrupt_truncate,
        _corrupt_flip,
        _corrupt_empty,
        _corrupt_manifest_missing,
        _corrupt_manifest_garbage,
        _corrupt_other_entry,
        _corrupt_info,
    ],
)
def test_corrupt_entries_are_detected_and_removed(tmp_path, corrupt, caplog):
    cache = LocalCache(tmp_path / "cache")
    entry = put_entry(cache, tmp_path)
    corrupt(entry.directory)
    assert cache.get("raw", KEY) is None
    assert not entry.directory.exists()
    assert "corrupt" in caplog.text
    # and the key can be written again
    assert put_entry(cache, tmp_path).files["audio.f32"].read_bytes() == b"raw audio bytes" * 100


def test_second_writer_keeps_the_first_valid_entry(tmp_path):
    cache = LocalCache(tmp_path / "cache")
    first = put_entry(cache, tmp_path, b"first")
    second = put_entry(cache, tmp_path, b"second")
    assert second.files["audio.f32"].read_bytes() == b"first"
    assert first.directory == second.directory


def test_staging_left_by_a_dead_process_is_swept(tmp_path):
    cache = LocalCache(tmp_path / "cache")
    mine = cache.staging_dir()
    dead = cache.root / "tmp" / "999999999-abcdef"  # no such pid
    dead.mkdir()
    (dead / "audio.f32").write_bytes(b"half")
    cache.sweep_abandoned()
    assert mine.is_dir() and not dead.exists()
