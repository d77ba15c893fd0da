"""A damaged cache entry is found on restore every time, logged, rebuilt and removed.

Real builds fill the cache; the test damages entries on disk, deletes the assets so the
next build must restore from the cache, and checks through the CLI: the build exits 0,
names the corrupt entry on stderr, publishes exactly the original files again, and the
damaged entry is gone (the entry now on disk verifies).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from faults import build
from invariants import TALLY, check_complete

from importer.cache import LocalCache


def _zero(d: Path) -> None:
    (d / _payload(d)).write_bytes(b"")


def _truncate(d: Path) -> None:
    path = d / _payload(d)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _flip(d: Path) -> None:
    path = d / _payload(d)
    data = bytearray(path.read_bytes())
    data[len(data) // 3] ^= 0x40
    path.write_bytes(bytes(data))


def _manifest_missing(d: Path) -> None:
    (d / "manifest.json").unlink()


def _payload(d: Path) -> str:
    return sorted(p.name for p in d.iterdir() if p.name != "manifest.json")[0]


CASES = {
    "zero-byte": _zero,
    "truncated": _truncate,
    "flipped-byte": _flip,
    "manifest-missing": _manifest_missing,
    "other-entrys-content": None,
}


def _entries(repo, kind: str) -> dict[str, Path]:
    """Track name -> its cache entry of ``kind`` (from the keys the index records)."""
    cache = LocalCache(repo.cache)
    keys = {n: t["keys"]["generation" if kind == "raw" else "render"] for n, t in repo.index()["tracks"].items()}
    return {n: cache.entry_dir(kind, k) for n, k in keys.items()}


def _damage(entry: Path, donor: Path, case: str) -> None:
    if CASES[case] is None:  # the whole entry replaced by another entry's files and manifest
        shutil.rmtree(entry)
        shutil.copytree(donor, entry)
    else:
        CASES[case](entry)


@pytest.mark.parametrize("case", list(CASES))
def test_corrupt_entry_detected_logged_rebuilt_removed(built_repo, case):
    """A damaged render entry: restore finds it, says so, re-encodes from the raw audio."""
    _check_damaged(built_repo, {"alpha": case}, ("render",))


@pytest.mark.parametrize(
    "cases",
    [
        {"alpha": "zero-byte", "beta": "truncated", "gamma": "flipped-byte"},
        {"alpha": "manifest-missing", "beta": "other-entrys-content"},
    ],
    ids=["bytes", "manifest"],
)
def test_corrupt_raw_and_render_entries_regenerate(built_repo, cases):
    """Render and raw audio both damaged: each found, logged, removed, generated again (a
    few victims per build: generating is the slow part)."""
    _check_damaged(built_repo, cases, ("render", "raw"))


def _check_damaged(repo, cases: dict[str, str], kinds: tuple[str, ...]) -> None:
    original = check_complete(repo.root)
    donor = "gamma"
    for kind in kinds:
        entries = _entries(repo, kind)
        for victim, case in cases.items():
            _damage(entries[victim], entries[donor], case)
    shutil.rmtree(repo.root / "assets/music/synthwave")  # the next build must restore
    TALLY.trial()

    proc = build(repo, "--json")
    assert proc.returncode == 0, proc.stderr
    actions = {t["name"]: t["action"] for t in json.loads(proc.stdout)["tracks"]}
    logged = [line for line in proc.stderr.splitlines() if "is corrupt" in line]
    assert len(logged) == len(kinds) * len(cases), proc.stderr  # each damaged entry named once
    cache = LocalCache(repo.cache)
    for victim in cases:
        assert all(f"entry {_entries(repo, k)[victim].name[:12]}" in proc.stderr for k in kinds)
        assert actions[victim] == ("generate" if "raw" in kinds else "encode")
        for kind in kinds:  # the damaged entry was replaced by a whole, verifying one
            entry = _entries(repo, kind)[victim]
            assert json.loads((entry / "manifest.json").read_text())["key"] == entry.name
            assert cache.verify(kind, entry.name) is None
    for name in set(actions) - set(cases):
        assert actions[name] == "restore"
    assert check_complete(repo.root, decode=True) == original  # the very same files again
    assert cache.verify_all() == []
    TALLY.survived()
