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

from .fsutil import atomic_write_bytes, ensure_state_dir, read_regular, sha256_file
from .grammar import MAX_DEPTH, depth, is_key, is_name
from .layout import STATE_FILE

STATE_VERSION = 1


#: Average size from which ``State.digest_many`` hashes on threads.
PARALLEL_MIN_BYTES = 1 << 20


def _signature(st: os.stat_result) -> list[int]:
    return [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]


def _valid_file_record(path: object, record: object) -> bool:
    """A remembered hash: a path and ``[size, mtime_ns, ctime_ns, inode, sha256]`` (a crafted
    one would make a changed file look unchanged only if it also matched its stat)."""
    return (
        isinstance(path, str)
        and isinstance(record, list)
        and len(record) == 5
        and all(isinstance(n, int) and not isinstance(n, bool) for n in record[:4])
        and is_key(record[4])
    )


def _digest_or_none(path: Path) -> str | None:
    try:
        return sha256_file(path)
    except OSError:
        return None


class State:
    """Per-repo state in ``<state_dir>/state.json``; missing or unreadable means empty."""

    def __init__(self, path: Path):
        self.path = path
        self.files: dict[str, list] = {}
        self.tracks: dict[str, dict[str, Any]] = {}
        self._dirty = False
        try:
            data = json.loads(read_regular(path))
            if data.get("version") == STATE_VERSION:
                self.files = {k: v for k, v in dict(data.get("files", {})).items() if _valid_file_record(k, v)}
                self.tracks = {
                    k: v
                    for k, v in dict(data.get("tracks", {})).items()
                    if is_name(k) and isinstance(v, dict) and depth(v) <= MAX_DEPTH
                }
        except (OSError, ValueError, AttributeError, TypeError, RecursionError):
            pass  # missing or unreadable: only costs a re-hash

    @classmethod
    def in_folder(cls, state_dir: Path) -> State:
        """The state of the repo whose state folder is ``state_dir``."""
        return cls(state_dir / STATE_FILE)

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

    def digest_many(self, paths: list[Path], workers: int = 2) -> None:
        """Hash, on ``workers`` threads, the files among ``paths`` whose stat changed, if they are big.

        A cold state (a fresh clone) must hash every published file. Measured on 2 cores
        (bench/RESULTS.md): two threads hash 1.5 MB files 1.6x faster (hashlib releases
        the GIL), but 15 KB to 512 KB files up to 2x slower; so only when the files to hash
        average ``PARALLEL_MIN_BYTES`` or more. Otherwise, and for whatever fails here,
        ``digest`` hashes them one by one when asked.
        """
        todo: list[tuple[Path, list[int]]] = []
        for path in paths:
            try:
                sig = _signature(path.stat())
            except OSError:
                continue
            known = self.files.get(str(path))
            if not (known and known[:4] == sig):
                todo.append((path, sig))
        if workers < 2 or len(todo) < 2 or sum(sig[0] for _, sig in todo) < PARALLEL_MIN_BYTES * len(todo):
            return
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(workers) as pool:
            digests = list(pool.map(_digest_or_none, [path for path, _ in todo]))
        for (path, sig), digest in zip(todo, digests, strict=True):
            if digest is not None:
                self.files[str(path)] = [*sig, digest]
                self._dirty = True

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
        try:
            ensure_state_dir(self.path.parent)  # per-machine state never belongs in the game's repository
            atomic_write_bytes(self.path, json.dumps(data, sort_keys=True, separators=(",", ":")).encode())
        except OSError as exc:  # a stat cache lost costs a re-hash, never the build
            import logging

            logging.getLogger(__name__).warning("%s: stat cache not saved (%s)", self.path, exc)
            return
        self._dirty = False
