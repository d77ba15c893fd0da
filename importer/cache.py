"""The content-addressed local cache of raw audio and encoded outputs.

Layout (``v1`` is the layout version)::

    <cache>/v1/raw/<k[:2]>/<generation key>/{audio.f32, manifest.json}
    <cache>/v1/render/<k[:2]>/<render key>/{<name>.<fmt>..., manifest.json}
    <cache>/v1/tmp/            staging for entries being written

An entry is built in ``tmp`` (files fsynced, manifest last) and renamed into place in one
step, so a reader sees a whole entry or none. The manifest lists each file's sha256 and
size; every read verifies them, and an entry that fails is removed and reported as a
miss (``CacheCorrupt`` is logged, the caller rebuilds). Nothing corrupt is ever handed on.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import secrets
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from .fsutil import fsync_dir, sha256_file

log = logging.getLogger(__name__)

LAYOUT = "v1"
MANIFEST = "manifest.json"
Kind = Literal["raw", "render"]


@dataclass(frozen=True)
class CacheEntry:
    """A verified entry: its files by name and the ``info`` stored with them."""

    key: str
    directory: Path
    files: dict[str, Path]
    digests: dict[str, str]
    info: dict[str, Any]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _manifest_digest(manifest: dict[str, Any]) -> str:
    """sha256 of what a manifest vouches for, so a damaged ``info`` is caught like a damaged file."""
    body = {k: manifest.get(k) for k in ("kind", "key", "files", "info")}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


class LocalCache:
    """A cache directory; safe for several processes (entries appear by atomic rename)."""

    def __init__(self, root: Path):
        self.root = root / LAYOUT

    def entry_dir(self, kind: Kind, key: str) -> Path:
        return self.root / kind / key[:2] / key

    def has(self, kind: Kind, key: str) -> bool:
        """Cheap presence test for planning (verification happens on ``get``)."""
        return (self.entry_dir(kind, key) / MANIFEST).is_file()

    def peek_info(self, kind: Kind, key: str) -> dict[str, Any]:
        """An entry's ``info`` without verifying its files (for explanations only; ``{}`` if absent)."""
        try:
            info = json.loads((self.entry_dir(kind, key) / MANIFEST).read_text("utf-8")).get("info")
        except (OSError, ValueError, AttributeError):
            return {}
        return info if isinstance(info, dict) else {}

    def get(self, kind: Kind, key: str) -> CacheEntry | None:
        """The verified entry, or ``None`` (a corrupt entry is removed and logged)."""
        directory = self.entry_dir(kind, key)
        if not directory.exists():
            return None
        problem = None
        try:
            manifest = json.loads((directory / MANIFEST).read_text("utf-8"))
            if manifest.get("key") != key or manifest.get("kind") != kind:
                problem = "manifest names another entry"
            elif manifest.get("digest") != _manifest_digest(manifest):
                problem = "manifest content does not match its digest"
            files, digests = {}, {}
            for name, meta in (manifest.get("files") or {}).items():
                path = directory / name
                if problem:
                    break
                if "/" in name or name.startswith("."):
                    problem = f"bad file name {name!r}"
                elif not path.is_file() or path.stat().st_size != meta["bytes"]:
                    problem = f"{name}: size differs from the manifest"
                elif sha256_file(path) != meta["sha256"]:
                    problem = f"{name}: sha256 differs from the manifest"
                files[name], digests[name] = path, meta["sha256"]
            if not problem and not files:
                problem = "no files"
        except FileNotFoundError:
            problem = "manifest missing"
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            problem = f"unreadable manifest ({exc})"
        if problem:
            log.warning("cache: %s entry %s is corrupt (%s); removed, will rebuild", kind, key[:12], problem)
            self.remove(kind, key)
            return None
        self._touch(directory)
        return CacheEntry(key, directory, files, digests, manifest.get("info", {}))

    def put(self, kind: Kind, key: str, files: dict[str, Path], info: dict[str, Any],
            digests: dict[str, str] | None = None) -> CacheEntry:
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
            manifest = {"kind": kind, "key": key, "files": manifest_files, "info": info,
                        "created": time.time()}
            manifest["digest"] = _manifest_digest(manifest)
            with open(staging / MANIFEST, "w", encoding="utf-8") as fh:
                json.dump(manifest, fh, sort_keys=True, indent=1)
                fh.flush()
                os.fsync(fh.fileno())
            final = self.entry_dir(kind, key)
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

    def remove(self, kind: Kind, key: str) -> None:
        """Take an entry out of sight atomically (rename into tmp), then delete it."""
        directory = self.entry_dir(kind, key)
        trash = self.root / "tmp" / f"trash-{secrets.token_hex(6)}"
        trash.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.rename(directory, trash)
        except FileNotFoundError:
            return
        shutil.rmtree(trash, ignore_errors=True)

    def sweep_abandoned(self) -> None:
        """Delete staging folders of processes that are gone (a killed build's half entries)."""
        tmp = self.root / "tmp"
        if not tmp.is_dir():
            return
        for folder in tmp.iterdir():
            pid_text = folder.name.split("-", 1)[0]
            if folder.name.startswith("trash-") or (pid_text.isdigit() and not _alive(int(pid_text))):
                shutil.rmtree(folder, ignore_errors=True)

    def staging_dir(self) -> Path:
        """A fresh private folder in the cache for building an entry."""
        path = self.root / "tmp" / f"{os.getpid()}-{secrets.token_hex(6)}"
        path.mkdir(parents=True)
        return path

    @staticmethod
    def _touch(directory: Path) -> None:
        """Mark use (for least-recently-used eviction later); failure is harmless."""
        try:
            os.utime(directory)
        except OSError:
            pass
