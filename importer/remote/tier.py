"""Cache entries kept in an object store: the remote tier under ``LocalCache``.

Layout under the configured prefix (``v1`` is the layout version, as in the local cache)::

    v1/blobs/<sha[:2]>/<sha256>     one file of an entry, named by its content
    v1/<kind>/<key>.json            the entry's manifest: the commit point

A writer uploads the blobs first, then the manifest, each with a conditional create
(``If-None-Match: *``): a reader that finds a manifest finds an entry whose files were
all uploaded before it, concurrent writers of one key leave exactly one manifest (the
first), and no verified object is ever overwritten. Blobs are content-addressed, so two
writers of the same file agree on its bytes whoever wins. A reader trusts nothing: the
manifest must name the key asked for and match its digest, and each blob is hashed on
download; anything else is ``RemoteCorrupt`` and never reaches the local cache.
"""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
import shutil
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..cache import MANIFEST, CacheEntry, Kind, LocalCache, manifest_digest, render_formats
from ..errors import TrackspecError
from ..grammar import is_file_name, is_key
from .store import ObjectStore, StoreError

log = logging.getLogger(__name__)

LAYOUT = "v1"
#: A manifest lists a few files; anything bigger is not one trackspec wrote.
MAX_MANIFEST_BYTES = 1 << 20
KINDS: tuple[Kind, ...] = ("raw", "render")


class RemoteCorrupt(TrackspecError):
    """A remote entry failed verification (the message says which object and how)."""


@dataclass(frozen=True)
class RemoteEntry:
    """An entry as listed in the store (shaped like ``cache.EntryStat`` for ``cache ls``)."""

    kind: Kind
    key: str
    directory: str
    files: tuple[str, ...]
    bytes: int
    last_used: float

    @property
    def formats(self) -> tuple[str, ...]:
        return render_formats(self.kind, self.files)


def manifest_name(kind: Kind, key: str) -> str:
    return f"{LAYOUT}/{kind}/{key}.json"


def blob_name(sha256: str) -> str:
    return f"{LAYOUT}/blobs/{sha256[:2]}/{sha256}"


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1024 * 1024):
            digest.update(chunk)
    return digest.hexdigest()


def checked_manifest(kind: Kind, key: str, text: bytes, where: str) -> dict[str, Any]:
    """A manifest that came from elsewhere (the store, a farm worker), checked before anything
    of its entry is trusted: its key is a key, it names ``kind``/``key``, lists valid files
    and matches its digest. ``RemoteCorrupt`` (naming ``where``) otherwise."""
    if not is_key(key):  # an object name anybody with write access could craft
        raise RemoteCorrupt(
            f"{kind} entry in {where}: an object name that is not a 64-hex key; ignored (delete it from the bucket)"
        )
    try:
        if len(text) > MAX_MANIFEST_BYTES:
            raise ValueError(f"{len(text)} bytes, more than {MAX_MANIFEST_BYTES}")
        manifest = json.loads(text)
        files = manifest["files"]
        ok_files = (
            isinstance(files, dict)
            and files
            and all(
                is_file_name(n)
                and n != MANIFEST
                and isinstance(m, dict)
                and is_key(m.get("sha256"))
                and isinstance(m.get("bytes"), int)
                and not isinstance(m["bytes"], bool)
                and m["bytes"] >= 0
                for n, m in files.items()
            )
        )
    except (ValueError, KeyError, TypeError, AttributeError, RecursionError) as exc:
        raise RemoteCorrupt(f"{kind} entry {key[:12]}: unreadable manifest ({exc}; {where})") from None
    if manifest.get("kind") != kind or manifest.get("key") != key:
        raise RemoteCorrupt(f"{kind} entry {key[:12]}: the manifest names another entry ({where})")
    if not ok_files or not isinstance(manifest.get("info"), dict):
        raise RemoteCorrupt(f"{kind} entry {key[:12]}: the manifest lists no valid files ({where})")
    if manifest.get("digest") != manifest_digest(manifest):
        raise RemoteCorrupt(f"{kind} entry {key[:12]}: the manifest does not match its digest ({where})")
    return manifest


class RemoteTier:
    """Read-through and push of ``LocalCache`` entries, over any ``ObjectStore``."""

    def __init__(self, store: ObjectStore):
        self.store = store

    @property
    def location(self) -> str:
        return self.store.location

    # ------------------------------------------------------------------ reading
    def fetch(self, kind: Kind, key: str, cache: LocalCache) -> CacheEntry | None:
        """Download, verify and add one entry to ``cache``; ``None`` when the store has none.

        Raises ``RemoteCorrupt`` (nothing is added) or ``StoreError``.
        """
        text = self.store.get_bytes(manifest_name(kind, key))
        if text is None:
            return None
        manifest = self._checked_manifest(kind, key, text)
        staging = cache.staging_dir()
        try:
            files, digests = {}, {}
            for name, meta in manifest["files"].items():
                target = staging / name
                where = f"{self.location}/{blob_name(meta['sha256'])}"
                if not self.store.download(blob_name(meta["sha256"]), target):
                    raise RemoteCorrupt(f"{kind} entry {key[:12]}: {name} is missing ({where})")
                if target.stat().st_size != meta["bytes"]:
                    raise RemoteCorrupt(f"{kind} entry {key[:12]}: {name} has the wrong size ({where})")
                if _sha256_file(target) != meta["sha256"]:
                    raise RemoteCorrupt(f"{kind} entry {key[:12]}: {name} does not match its sha256 ({where})")
                files[name], digests[name] = target, meta["sha256"]
            return cache.put(kind, key, files, manifest["info"], digests)
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def _checked_manifest(self, kind: Kind, key: str, text: bytes) -> dict[str, Any]:
        return checked_manifest(kind, key, text, f"{self.location}/{manifest_name(kind, key)}")

    def has(self, kind: Kind, key: str) -> bool:
        return self.store.exists(manifest_name(kind, key))

    # ------------------------------------------------------------------ writing
    def push(self, kind: Kind, entry: CacheEntry, repair: bool = False) -> bool:
        """Upload a verified local entry: blobs, then the manifest (the commit point).

        Returns ``False`` when the store already had the entry (nothing is overwritten).
        With ``repair`` (the entry was found corrupt in the store) the objects that fail
        verification are deleted and uploaded again; intact ones are kept.
        """
        name = manifest_name(kind, entry.key)
        if not repair and self.store.exists(name):
            return False
        for file_name, path in entry.files.items():
            sha = entry.digests[file_name]
            if repair:
                self._drop_if_bad(blob_name(sha), sha)
            self.store.put_if_absent(blob_name(sha), path)
        if repair:
            text = self.store.get_bytes(name)
            if text is not None:
                try:
                    self._checked_manifest(kind, entry.key, text)
                except RemoteCorrupt:
                    self.store.delete(name)
        return self.store.put_if_absent(name, (entry.directory / MANIFEST).read_bytes())

    def _drop_if_bad(self, name: str, sha: str) -> None:
        probe = Path(self._scratch()) / "blob"
        try:
            if self.store.download(name, probe) and _sha256_file(probe) != sha:
                log.warning("team cache: deleting corrupt %s/%s before uploading it again", self.location, name)
                self.store.delete(name)
        finally:
            shutil.rmtree(probe.parent, ignore_errors=True)

    @staticmethod
    def _scratch() -> str:
        import tempfile

        return tempfile.mkdtemp(prefix="trackspec-remote-")

    # ------------------------------------------------------------------ listing
    def entries(self) -> list[RemoteEntry]:
        """Every entry in the store (manifests read, blobs not verified), newest first."""
        found = [
            (kind, info)
            for kind in KINDS
            for info in self.store.list(f"{LAYOUT}/{kind}/")
            if info.name.endswith(".json")
        ]

        def describe(item) -> RemoteEntry | None:
            kind, info = item
            key = info.name.rsplit("/", 1)[-1][: -len(".json")]
            if info.name != manifest_name(kind, key):  # a crafted name (a path, another layout)
                key = ""
            text = self.store.get_bytes(info.name) if key else b""
            try:
                manifest = self._checked_manifest(kind, key, text or b"")
            except RemoteCorrupt as exc:
                log.warning("team cache: %s", exc)
                return None
            files = manifest["files"]
            size = info.size + sum(m["bytes"] for m in files.values())
            return RemoteEntry(kind, key, f"{self.location}/{info.name}", tuple(sorted(files)), size, info.modified)

        with ThreadPoolExecutor(8) as pool:
            entries = [e for e in pool.map(describe, found) if e is not None]
        entries.sort(key=lambda e: (-e.last_used, e.kind, e.key))
        return entries

    # ------------------------------------------------------------------ checks
    def check_read(self) -> int:
        """List the tier's objects (reachability and read permission); returns how many manifests."""
        return sum(1 for kind in KINDS for info in self.store.list(f"{LAYOUT}/{kind}/") if info.name.endswith(".json"))

    def check_write(self) -> None:
        """Create and delete a probe object; ``StoreError`` (cause ``denied``) if writing is refused."""
        name = f"{LAYOUT}/doctor/probe-{secrets.token_hex(8)}"
        self.store.put_if_absent(name, b"trackspec doctor write probe\n")
        try:
            self.store.delete(name)
        except StoreError as exc:
            log.debug("could not delete the doctor's probe %s: %s", name, exc)
