"""The stat fast path: re-hash a file only when its stat changed.

Like ninja's build log and dvc-data's ``state``: a small JSON file maps a path to the
(size, mtime_ns, ctime_ns, inode) it had when hashed, and to the digest. A no-op build
stats every file it depends on and reads none of them. The same file also remembers,
per track, the key inputs of its last successful build, so a rebuild can say *why*.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from .fsutil import atomic_write_bytes, sha256_file

STATE_VERSION = 1


def _signature(st: os.stat_result) -> list[int]:
    return [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]


class State:
    """Per-repo state in ``<state_dir>/state.json``; missing or unreadable means empty."""

    def __init__(self, path: Path):
        self.path = path
        self.files: dict[str, list] = {}
        self.tracks: dict[str, dict[str, Any]] = {}
        self._dirty = False
        try:
            data = json.loads(path.read_text("utf-8"))
            if data.get("version") == STATE_VERSION:
                self.files = dict(data.get("files", {}))
                self.tracks = dict(data.get("tracks", {}))
        except (OSError, ValueError, AttributeError):
            pass

    def digest(self, path: Path) -> str | None:
        """sha256 of ``path`` (``None`` if missing), hashing only when its stat changed."""
        try:
            st = path.stat()
        except OSError:
            return None
        key = str(path)
        sig = _signature(st)
        known = self.files.get(key)
        if known and known[:4] == sig:
            return known[4]
        digest = sha256_file(path)
        self.files[key] = [*sig, digest]
        self._dirty = True
        return digest

    def record(self, path: Path, digest: str) -> None:
        """Remember a digest we already know (a file we just wrote)."""
        try:
            self.files[str(path)] = [*_signature(path.stat()), digest]
            self._dirty = True
        except OSError:
            pass

    def forget(self, path: Path) -> None:
        if self.files.pop(str(path), None) is not None:
            self._dirty = True

    def remember_track(self, name: str, inputs: dict[str, Any]) -> None:
        if self.tracks.get(name) != inputs:
            self.tracks[name] = inputs
            self._dirty = True

    def forget_track(self, name: str) -> None:
        if self.tracks.pop(name, None) is not None:
            self._dirty = True

    def save(self) -> None:
        """Write the state if anything changed (atomically; losing it only costs a re-hash)."""
        if not self._dirty:
            return
        data = {"version": STATE_VERSION, "files": self.files, "tracks": self.tracks}
        ignore = self.path.parent / ".gitignore"
        if not ignore.exists():  # per-machine state never belongs in the game's repository
            atomic_write_bytes(ignore, b"# trackspec's per-machine state and lock\n*\n")
        atomic_write_bytes(self.path, json.dumps(data, sort_keys=True, separators=(",", ":")).encode())
        self._dirty = False
