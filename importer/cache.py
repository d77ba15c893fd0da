"""The content-addressed local cache of raw audio and encoded outputs.

Layout (``v1`` is the layout version)::

    <cache>/v1/raw/<k[:2]>/<generation key>/{audio.f32, manifest.json}
    <cache>/v1/render/<k[:2]>/<render key>/{<name>.<fmt>..., manifest.json}
    <cache>/v1/tmp/            staging for entries being written

An entry is built in ``tmp`` (files fsynced, manifest last) and renamed into place in one
step, so a reader sees a whole entry or none. The manifest lists each file's sha256 and
size; every read verifies them, and an entry that fails is removed and reported as a
miss (``CacheCorrupt`` is logged, the caller rebuilds). Nothing corrupt is ever handed on.

``get`` refreshes the manifest's mtime: that is an entry's "last used" time, which
``gc`` evicts by (least recently used first). Maintenance (``entries``, ``verify``,
``gc``, ``clear``) only ever removes whole entries, by renaming them into ``tmp`` first,
and never touches the staging folders of live processes.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import secrets
import shutil
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from .fsutil import fsync_dir, make_dirs_inside, read_regular, sha256_file
from .grammar import is_file_name
from .grammar import key as check_key
from .locks import SharedOrExclusive

log = logging.getLogger(__name__)

LAYOUT = "v1"
MANIFEST = "manifest.json"
#: A manifest lists a few files; anything bigger is not one trackspec wrote.
MAX_MANIFEST_BYTES = 1 << 20
Kind = Literal["raw", "render"]


@dataclass(frozen=True)
class CacheEntry:
    """A verified entry: its files by name and the ``info`` stored with them."""

    key: str
    directory: Path
    files: dict[str, Path]
    digests: dict[str, str]
    info: dict[str, Any]


@dataclass(frozen=True)
class EntryStat:
    """An entry as found on disk, unverified (for listing and eviction): cheap to gather."""

    kind: Kind
    key: str
    directory: Path
    files: tuple[str, ...]
    bytes: int
    last_used: float

    @property
    def formats(self) -> tuple[str, ...]:
        return render_formats(self.kind, self.files)


def render_formats(kind: Kind, files: tuple[str, ...]) -> tuple[str, ...]:
    """The encoded formats a render entry holds (its files are ``audio.<fmt>``); none for raw audio."""
    if kind != "render":
        return ()
    return tuple(sorted({name.rsplit(".", 1)[-1] for name in files if "." in name}))


@dataclass(frozen=True)
class Removed:
    """An entry that a maintenance command took out, and why."""

    entry: EntryStat
    reason: str


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def manifest_digest(manifest: dict[str, Any]) -> str:
    """sha256 of what a manifest vouches for, so a damaged ``info`` is caught like a damaged file."""
    body = {k: manifest.get(k) for k in ("kind", "key", "files", "info")}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


PINS = "pins"


class LocalCache:
    """A cache directory; safe for several processes (entries appear by atomic rename).

    Every entry this instance hands out (``get``) or writes (``put``) is *pinned* until the
    instance is dropped or its process ends: a pin file in ``pins/`` lists them, and
    ``gc``/``clear`` never remove a pinned entry of a live process. Pins are written
    under a shared lock, and maintenance reads them and renames entries away under the
    exclusive one, so a build never loses an entry it is restoring, rendering or has just
    generated to a concurrent ``cache gc`` or ``cache clear``.
    """

    def __init__(self, root: Path):
        self.root = root / LAYOUT
        self._pin_file: Path | None = None
        self._pinned: set[str] = set()
        self._pin_guard = threading.Lock()

    # ------------------------------------------------------------------ pins
    def _pin(self, kind: Kind, key: str) -> None:
        item = f"{kind}/{key}"
        with self._pin_guard:
            if item in self._pinned:
                return
            folder = self.root / PINS
            folder.mkdir(parents=True, exist_ok=True)
            if self._pin_file is None:
                self._pin_file = folder / f"{os.getpid()}-{secrets.token_hex(6)}"
                weakref.finalize(self, _unlink_quietly, self._pin_file)
            with _pins_lock(self.root, exclusive=False), open(self._pin_file, "a", encoding="utf-8") as fh:
                fh.write(item + "\n")
            self._pinned.add(item)

    def release(self) -> None:
        """Drop this instance's pins (also done when it is garbage collected or its process ends)."""
        with self._pin_guard:
            if self._pin_file is not None:
                _unlink_quietly(self._pin_file)
            self._pin_file, self._pinned = None, set()

    def _live_pins(self) -> set[str]:
        """Entries pinned by live processes (``kind/key``); pin files of dead ones are removed."""
        pinned: set[str] = set()
        folder = self.root / PINS
        try:
            names = os.listdir(folder)
        except OSError:
            return pinned
        for name in names:
            pid_text = name.split("-", 1)[0]
            path = folder / name
            if not pid_text.isdigit() or not _alive(int(pid_text)):
                _unlink_quietly(path)
                continue
            try:
                pinned.update(path.read_text("utf-8").split())
            except OSError:
                continue
        return pinned

    def entry_dir(self, kind: Kind, key: str) -> Path:
        """The folder of an entry; a key that is not 64 lowercase hex is refused
        (``GrammarError``): keys come from records, manifests and object names that anybody
        could craft, and ``.`` or a path must never name a folder to replace or delete."""
        if kind not in ("raw", "render"):
            raise ValueError(f"not a cache kind: {kind!r}")
        check_key(key, f"cache {self.root}", f"{kind} key")
        return self.root / kind / key[:2] / key

    def has(self, kind: Kind, key: str) -> bool:
        """Cheap presence test for planning (verification happens on ``get``); a value that
        is not a key is never present."""
        if not _is_key(key):
            return False
        return (self.entry_dir(kind, key) / MANIFEST).is_file()

    def peek_info(self, kind: Kind, key: str) -> dict[str, Any]:
        """An entry's ``info`` without verifying its files (for explanations only; ``{}`` if absent)."""
        try:
            info = json.loads(read_regular(self.entry_dir(kind, key) / MANIFEST, MAX_MANIFEST_BYTES)).get("info")
        except (OSError, ValueError, AttributeError, RecursionError):
            return {}
        return info if isinstance(info, dict) else {}

    def get(self, kind: Kind, key: str) -> CacheEntry | None:
        """The verified entry, or ``None`` (a corrupt entry is removed and logged).

        A hit refreshes the entry's last-used time, so ``gc`` keeps what builds use.
        """
        self._pin(kind, key)  # before looking: a concurrent gc either removed it already or keeps it
        entry, problem = self._inspect(kind, key)
        if problem:
            self._discard(kind, key, problem)
            return None
        if entry is not None:
            self._touch(entry.directory)
        return entry

    def verify(self, kind: Kind, key: str) -> str | None:
        """Re-hash one entry like ``get`` does, without marking it used.

        Returns the problem of a corrupt entry (which is then removed), else ``None``.
        """
        _, problem = self._inspect(kind, key)
        if problem:
            self._discard(kind, key, problem)
        return problem

    def _discard(self, kind: Kind, key: str, problem: str) -> None:
        log.warning("cache: %s entry %s is corrupt (%s); removed, will rebuild", kind, key[:12], problem)
        self.remove(kind, key)

    def _inspect(self, kind: Kind, key: str) -> tuple[CacheEntry | None, str | None]:
        """Check an entry against its manifest: ``(entry, None)``, ``(None, problem)`` or
        ``(None, None)`` when absent (also when another process removed it meanwhile)."""
        directory = self.entry_dir(kind, key)
        if not directory.exists():
            return None, None
        problem = None
        try:
            manifest = json.loads(read_regular(directory / MANIFEST, MAX_MANIFEST_BYTES))
            if manifest.get("key") != key or manifest.get("kind") != kind:
                problem = "manifest names another entry"
            elif manifest.get("digest") != manifest_digest(manifest):
                problem = "manifest content does not match its digest"
            files, digests = {}, {}
            for name, meta in (manifest.get("files") or {}).items():
                path = directory / name
                if problem:
                    break
                if not is_file_name(name) or name == MANIFEST:
                    problem = "bad file name in the manifest"
                elif not path.is_file() or path.stat().st_size != meta["bytes"]:
                    problem = f"{name}: size differs from the manifest"
                elif sha256_file(path) != meta["sha256"]:
                    problem = f"{name}: sha256 differs from the manifest"
                files[name], digests[name] = path, meta["sha256"]
            if not problem and not files:
                problem = "no files"
        except FileNotFoundError:
            problem = "manifest missing"
        except (OSError, ValueError, KeyError, TypeError, AttributeError, RecursionError) as exc:
            problem = f"unreadable manifest ({exc})"
        if problem:
            return None, (problem if directory.exists() else None)
        return CacheEntry(key, directory, files, digests, manifest.get("info", {})), None

    def put(
        self, kind: Kind, key: str, files: dict[str, Path], info: dict[str, Any], digests: dict[str, str] | None = None
    ) -> CacheEntry:
        """Move ``files`` (name -> path on the cache's filesystem or elsewhere) into a new entry.

        ``digests`` may pass sha256 values already computed; the rest are computed here.
        If another process committed the same key first, its entry is kept.
        """
        staging = self.staging_dir()
        try:
            manifest_files = {}
            for name, source in files.items():
                target = staging / name
                shutil.move(str(source), target)
                with open(target, "rb+") as fh:
                    os.fsync(fh.fileno())
                digest = (digests or {}).get(name) or sha256_file(target)
                manifest_files[name] = {"sha256": digest, "bytes": target.stat().st_size}
            manifest = {"kind": kind, "key": key, "files": manifest_files, "info": info, "created": time.time()}
            manifest["digest"] = manifest_digest(manifest)
            with open(staging / MANIFEST, "w", encoding="utf-8") as fh:
                json.dump(manifest, fh, sort_keys=True, indent=1)
                fh.flush()
                os.fsync(fh.fileno())
            final = self.entry_dir(kind, key)
            self._pin(kind, key)  # before it appears: what a build just made is never evicted
            final.parent.mkdir(parents=True, exist_ok=True)
            if self.get(kind, key) is None:  # absent, or corrupt and just removed
                try:
                    os.rename(staging, final)
                except OSError:
                    if not final.exists():  # not a lost race with another writer
                        raise
                fsync_dir(final.parent)
        finally:
            if staging.exists():
                shutil.rmtree(staging, ignore_errors=True)
        entry = self.get(kind, key)
        if entry is None:
            raise OSError(f"cache entry {key[:12]} could not be written under {self.root}")
        return entry

    def remove(self, kind: Kind, key: str) -> bool:
        """Take an entry out of sight atomically (rename into tmp), then delete it.

        Returns whether this call removed it (``False``: it was already gone).
        """
        trash = self._take_out(kind, key)
        if trash is None:
            return False
        shutil.rmtree(trash, ignore_errors=True)
        return True

    def _take_out(self, kind: Kind, key: str) -> Path | None:
        """Rename an entry into ``tmp`` (out of sight); its trash folder, or ``None`` if gone."""
        directory = self.entry_dir(kind, key)
        trash = self.root / "tmp" / f"trash-{secrets.token_hex(6)}"
        make_dirs_inside(trash.parent, self.root.parent)  # never renamed through a link out of the cache
        try:
            os.rename(directory, trash)
        except FileNotFoundError:
            return None
        return trash

    def _evict(self, candidates: list[EntryStat], reason: str, enough: Callable[[int], bool]) -> list[Removed]:
        """Remove ``candidates`` in order, skipping entries a live process has pinned, until
        ``enough(bytes freed)``; pins are read and entries renamed away under the exclusive lock."""
        removed, trash = [], []
        with _pins_lock(self.root, exclusive=True):
            pinned = self._live_pins()
            freed = 0
            for entry in candidates:
                if enough(freed):
                    break
                if f"{entry.kind}/{entry.key}" in pinned:
                    continue
                folder = self._take_out(entry.kind, entry.key)
                if folder is not None:
                    removed.append(Removed(entry, reason))
                    trash.append(folder)
                freed += entry.bytes
        for folder in trash:
            shutil.rmtree(folder, ignore_errors=True)
        return removed

    # ------------------------------------------------------------ maintenance
    def entries(self) -> list[EntryStat]:
        """Every entry on disk, most recently used first (stat only; nothing is verified)."""
        found = []
        kinds: tuple[Kind, ...] = ("raw", "render")
        for kind in kinds:
            top = self.root / kind
            for shard in _subdirs(top):
                for directory in _subdirs(shard):
                    if directory.name[:2] == shard.name and _is_key(directory.name):
                        stat = _entry_stat(kind, directory)
                        if stat is not None:
                            found.append(stat)
        found.sort(key=lambda e: (-e.last_used, e.kind, e.key))
        return found

    def verify_all(self) -> list[Removed]:
        """Re-hash every entry (as ``get`` would); corrupt ones are removed and returned."""
        corrupt = []
        for entry in self.entries():
            problem = self.verify(entry.kind, entry.key)
            if problem:
                corrupt.append(Removed(entry, problem))
        return corrupt

    def gc(self, max_bytes: int) -> list[Removed]:
        """Evict least-recently-used whole entries until the entries total at most ``max_bytes``."""
        self.sweep_abandoned()
        entries = self.entries()
        total = sum(e.bytes for e in entries)
        # least recently used first; what a running build pinned stays (and still counts)
        return self._evict(list(reversed(entries)), "least recently used", lambda freed: total - freed <= max_bytes)

    def clear(self) -> list[Removed]:
        """Remove every entry (and what dead processes left in ``tmp``); live staging stays,
        and so do the entries a running build holds (pinned)."""
        self.sweep_abandoned()
        return self._evict(self.entries(), "cleared", lambda freed: False)

    def sweep_abandoned(self) -> None:
        """Delete staging folders of processes that are gone (a killed build's half entries)."""
        tmp = self.root / "tmp"
        if tmp.is_symlink() or not tmp.is_dir():  # never sweep through a link out of the cache
            return
        self._live_pins()  # drops the pin files of processes that are gone
        for folder in tmp.iterdir():
            pid_text = folder.name.split("-", 1)[0]
            if folder.name.startswith("trash-") or (pid_text.isdigit() and not _alive(int(pid_text))):
                shutil.rmtree(folder, ignore_errors=True)

    def staging_dir(self) -> Path:
        """A fresh private folder in the cache for building an entry."""
        path = self.root / "tmp" / f"{os.getpid()}-{secrets.token_hex(6)}"
        make_dirs_inside(path.parent, self.root.parent)  # not through a link out of the cache
        path.mkdir()
        return path

    @staticmethod
    def _touch(directory: Path) -> None:
        """Mark use for least-recently-used eviction (one utime; failure is harmless)."""
        try:
            os.utime(directory / MANIFEST)
        except OSError:
            pass


def _unlink_quietly(path: Path) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def _pins_lock(root: Path, exclusive: bool) -> SharedOrExclusive:
    """The cache's pin lock (``pins.lock``, ``locks.SharedOrExclusive``): shared to pin,
    exclusive to evict."""
    root.mkdir(parents=True, exist_ok=True)
    return SharedOrExclusive(root / "pins.lock", exclusive)


def _is_key(text: str) -> bool:
    from .grammar import is_key

    return is_key(text)


def _subdirs(folder: Path) -> list[Path]:
    """The folders directly in ``folder`` (none if it is missing or vanishes meanwhile)."""
    try:
        with os.scandir(folder) as it:
            return [Path(d.path) for d in it if d.is_dir(follow_symlinks=False)]
    except OSError:
        return []


def _entry_stat(kind: Kind, directory: Path) -> EntryStat | None:
    """Size, files and last-used time of an entry folder (``None`` if it vanished meanwhile)."""
    files, size = [], 0
    try:
        with os.scandir(directory) as it:
            for item in it:
                if item.is_file(follow_symlinks=False):
                    size += item.stat(follow_symlinks=False).st_size
                    if item.name != MANIFEST:
                        files.append(item.name)
        try:
            last_used = (directory / MANIFEST).stat().st_mtime
        except FileNotFoundError:  # a damaged entry: fall back to the folder's time
            last_used = directory.stat().st_mtime
    except FileNotFoundError:
        return None
    return EntryStat(kind, directory.name, directory, tuple(sorted(files)), size, last_used)
