"""Changing the index while a build replaces files: the index never names a file whose
sha256 does not match.

Before files the index on disk lists are replaced or deleted, their tracks are taken out
of it in one write (their files noted in the pending-removals journal, ``pending``), for
a whole batch of tracks at once; the new entries come back with the next flush, which
happens at most every ``flush_seconds`` and at ``commit``. A track whose republication
fails gets its old entry back if its files are still intact. So republishing N tracks
costs a handful of index writes, not N.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from ..config import ProjectConfig
from ..fsutil import sha256_file
from ..publish import remove_owned
from ..state import State
from . import pending
from .entry import listed_paths
from .file import EntryTexts, needs_rewrite, write_index


class IndexTransaction:
    """The executor's view of the index: in memory, written in few atomic writes."""

    def __init__(
        self,
        config: ProjectConfig,
        index: dict[str, Any],
        state: State,
        on_written: Callable[[Path, int], None],
        flush_seconds: float | None = 0.5,
        texts: EntryTexts | None = None,
    ):
        self.config = config
        #: Serialised entries kept between writes (``file.EntryTexts``); a long-running daemon keeps one.
        self.texts = texts if texts is not None else EntryTexts()
        self.index = index
        self.state = state
        self.on_written = on_written
        self.flush_seconds = flush_seconds
        self._dirty = needs_rewrite(index)  # malformed entries were dropped on reading: write it back
        self._last_flush = float("-inf")
        #: Paths the index on disk lists now: those files change only after it stops listing
        #: them. Made when first needed after each write (``None`` until then).
        #: The index as its file says (a shallow copy: entries are replaced, never changed in place).
        self._on_disk = dict(index, tracks=dict(index["tracks"]))
        self._listed: set[str] | None = None
        #: Entries taken out of the index before their files change, by track name.
        self._unlisted: dict[str, dict[str, Any]] = {}
        self._unreported = False
        self.writes = 0

    @property
    def tracks(self) -> dict[str, dict[str, Any]]:
        return self.index["tracks"]

    def unlist(self, names: Iterable[str]) -> None:
        """Before the published files of ``names`` are replaced or deleted: write the index
        without those of them it lists on disk, in one write (their files noted in ``pending``)."""
        entries = {name: entry for name in names if (entry := self.tracks.get(name)) is not None}
        if not entries:  # (already unlisted, or never listed: nothing to ask the index on disk)
            return
        on_disk = self._listed_on_disk()
        taken = {
            name: entry
            for name, entry in entries.items()
            if any(f.get("path") in on_disk for f in entry.get("files", {}).values())
        }
        if not taken:
            return
        pending.record(self.config.state_dir, [f for e in taken.values() for f in e.get("files", {}).values()])
        for name in taken:
            del self.tracks[name]
        try:
            self._write()
        except BaseException:
            self.tracks.update(taken)  # nothing is unlisted: the files stay untouched
            raise
        self._unlisted.update(taken)
        self._dirty = True  # the entries come back (or go for good) with the next flush,
        self._unreported = True  # which is reported as the write (the files are done by then)

    def _listed_on_disk(self) -> set[str]:
        if self._listed is None:
            self._listed = listed_paths(self._on_disk)
        return self._listed

    def previous(self, name: str) -> dict[str, Any] | None:
        """The entry ``name`` had before this build touched it (unlisted or still listed)."""
        return self._unlisted.get(name) or self.tracks.get(name)

    def put(self, name: str, entry: dict[str, Any]) -> None:
        """``name``'s new entry: its files are published and verified."""
        self._unlisted.pop(name, None)
        self.tracks[name] = entry
        self.changed()

    def relist_if_intact(self, name: str) -> None:
        """A republication failed: the last good asset stays listed if its files still match."""
        entry = self._unlisted.pop(name, None)
        if entry is not None and files_intact(self.config.root, entry):
            self.tracks[name] = entry
            self.changed()

    def remove(self, name: str) -> None:
        """Unlist ``name``, delete its files, forget it (the index first: see ``pending``)."""
        entry = self.previous(name) or {}
        self.unlist([name])
        self._unlisted.pop(name, None)
        self.delete_files(entry.get("files", {}))
        if self.tracks.pop(name, None) is not None:
            self.changed()
        self.state.forget_track(name)

    def delete_files(self, files: dict[str, dict[str, Any]]) -> None:
        """Delete published files (only those trackspec owns: ``publish.remove_owned``)."""
        owned = [(self.config.root / f["path"], f.get("sha256", "")) for f in files.values()]
        remove_owned(owned, self.config.root, self.config.assets_dir, self.state.digest)
        for path, _ in owned:
            self.state.forget(path)

    def changed(self) -> None:
        self._dirty = True
        if self.flush_seconds is not None and time.monotonic() - self._last_flush >= self.flush_seconds:
            self.flush()

    def flush(self) -> None:
        """Write the index if it changed since the last write."""
        if not self._dirty:
            return
        self._dirty = False
        self._last_flush = time.monotonic()
        written = self._write()
        if written or self._unreported:
            self._unreported = False
            self.on_written(self.config.index_path, len(self.tracks))

    def settle(self) -> None:
        """End of a phase: entries unlisted but not republished come back if intact; the
        index is written; the journal is cleared (every noted file is deleted or listed)."""
        for name in list(self._unlisted):
            self.relist_if_intact(name)
        self.flush()
        pending.clear(self.config.state_dir)

    def _write(self) -> bool:
        written = write_index(self.config.index_path, self.index, self.config.staging_dir, self.texts)
        self.writes += written
        self._on_disk = dict(self.index, tracks=dict(self.tracks))  # what the file says now (entries shared)
        self._listed = None
        return written


def files_intact(root: Path, entry: dict[str, Any]) -> bool:
    """Whether every file of an index entry still has the sha256 it records."""
    try:
        return all(sha256_file(root / f["path"]) == f["sha256"] for f in entry.get("files", {}).values())
    except (OSError, KeyError, TypeError):
        return False
