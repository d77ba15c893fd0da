"""Removals in flight: published files a build has taken out of the index but may not have
deleted yet.

Before a build overwrites or deletes a file that the index on disk lists, it first writes
an index without that track (so the engine is never pointed at a file whose sha256 no
longer matches) and notes the track's old files here. If the build is killed before it
deletes them or lists them again, the next build (under the repo lock) removes those
that no index entry lists: a crash leaves neither a lying index nor files nothing owns.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from ..fsutil import UnsafePath, atomic_write_bytes, read_regular, sha256_file

log = logging.getLogger(__name__)
PENDING_NAME = "pending-removals.json"


def journal_path(state_dir: Path) -> Path:
    return state_dir / PENDING_NAME


def record(state_dir: Path, files: list[dict[str, Any]]) -> None:
    """Note ``files`` (index file records: ``path`` relative to the root, ``sha256``), adding
    to what is already noted; written atomically before the index drops them."""
    path = journal_path(state_dir)
    noted = read(state_dir)
    known = {(f["path"], f["sha256"]) for f in noted}
    noted += [
        {"path": f["path"], "sha256": f.get("sha256", "")}
        for f in files
        if (f["path"], f.get("sha256", "")) not in known
    ]
    atomic_write_bytes(path, json.dumps(noted, sort_keys=True).encode("utf-8"), state_dir / "tmp")


def read(state_dir: Path) -> list[dict[str, Any]]:
    """What is noted (``[]`` when nothing is, or the note is unreadable: it only ever adds safety)."""
    from ..grammar import is_key

    try:
        data = json.loads(read_regular(journal_path(state_dir), 16 << 20))
    except (OSError, ValueError, RecursionError):
        return []
    if not isinstance(data, list):
        return []
    return [f for f in data if isinstance(f, dict) and is_published_path(f.get("path")) and is_key(f.get("sha256"))]


def is_published_path(value: Any) -> bool:
    """Whether ``value`` could name a file trackspec published: relative, inside the repo,
    an audio file (``<name>.<format>``). Only such paths are ever deleted from a note."""
    from ..grammar import PUBLISHED_FORMATS

    return (
        isinstance(value, str)
        and bool(value)
        and not value.startswith("/")
        and "\\" not in value
        and "\0" not in value
        and ".." not in value.split("/")
        and value.rsplit(".", 1)[-1] in PUBLISHED_FORMATS
    )


def replay(root: Path, assets_dir: Path, state_dir: Path, index: dict[str, Any]) -> list[Path]:
    """Delete noted files that no entry of ``index`` lists, then forget the note; call under the lock."""
    from ..publish import remove_owned

    noted = read(state_dir)
    if not noted:
        clear(state_dir)
        return []
    listed = {f["path"] for t in index.get("tracks", {}).values() for f in t.get("files", {}).values()}
    orphans = [(root / f["path"], f["sha256"]) for f in noted if f["path"] not in listed]
    removed = remove_owned(orphans, root, assets_dir, _digest)
    if removed:
        log.info(
            "removed %d file(s) an interrupted build had unlisted: %s", len(removed), ", ".join(str(p) for p in removed)
        )
    clear(state_dir)
    return removed


def clear(state_dir: Path) -> None:
    path = journal_path(state_dir)
    try:
        path.unlink(missing_ok=True)
    except IsADirectoryError:
        raise UnsafePath(f"{path}: a directory is in the way of a file trackspec writes; remove it") from None


def _digest(path: Path) -> str | None:
    try:
        return sha256_file(path)
    except OSError:
        return None
