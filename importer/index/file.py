"""The asset index: the JSON file the game engine reads.

Written atomically (temp file, fsync, rename) with sorted keys, so the engine never sees
half an index and diffs stay small. Its JSON Schema ships beside this module
(``schemas/index.schema.json``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..errors import IndexCorrupt
from ..fsutil import atomic_write_bytes, file_signature, read_regular
from ..grammar import MAX_DEPTH, PUBLISHED_FORMATS

SCHEMA_VERSION = 1
SCHEMA_PATH = Path(__file__).parent.parent / "schemas" / "index.schema.json"


def empty_index() -> dict[str, Any]:
    return {"schema_version": SCHEMA_VERSION, "tracks": {}}


def load_index(path: Path) -> dict[str, Any]:
    """The index at ``path``; an empty one if absent. A broken index is an error, not a reset."""
    try:
        data = json.loads(read_regular(path).decode("utf-8"))
    except FileNotFoundError:
        return empty_index()
    except RecursionError:
        raise IndexCorrupt(
            f"{path}: the asset index is nested more than {MAX_DEPTH} levels deep; delete it, "
            "then run `trackspec build` to rebuild it"
        ) from None
    except (OSError, ValueError) as exc:
        raise IndexCorrupt(
            f"{path}: the asset index cannot be read ({exc}); fix or delete it, "
            "then run `trackspec build` to rebuild it"
        ) from exc
    if (
        not isinstance(data, dict)
        or data.get("schema_version") != SCHEMA_VERSION
        or not isinstance(data.get("tracks"), dict)
    ):
        raise IndexCorrupt(
            f"{path}: not a schema_version {SCHEMA_VERSION} trackspec index; "
            "delete it and run `trackspec build` to rebuild it"
        )
    return drop_malformed_entries(path, data)


#: The formats an index entry may list (its schema's enum).
INDEX_FORMATS = PUBLISHED_FORMATS


def entry_problem(name: Any, entry: Any) -> str | None:
    """Why one index entry does not match the index's grammar (``None``: it does).

    Checked before anything is built from it: its paths are deleted and replaced, its
    keys name cache entries, its numbers decide what is stale."""
    import math

    from ..grammar import is_key, is_name

    if not is_name(name):
        return "the track name is not a-z, 0-9, _ and -"
    if not isinstance(entry, dict):
        return "not a table"
    files = entry.get("files")
    if not isinstance(files, dict) or not files:
        return "files: expected a table of formats"
    for fmt, info in files.items():
        if fmt not in INDEX_FORMATS or not isinstance(info, dict):
            return f"files.{fmt}: not a format and its file"
        rel_path = info.get("path")
        if (
            not isinstance(rel_path, str)
            or not rel_path
            or rel_path.startswith("/")
            or "\\" in rel_path
            or "\0" in rel_path
            or ".." in rel_path.split("/")
        ):
            return f"files.{fmt}.path: expected a path inside the repo"
        if not is_key(info.get("sha256")):
            return f"files.{fmt}.sha256: expected 64 lowercase hex digits"
        size = info.get("bytes")
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            return f"files.{fmt}.bytes: expected a size in bytes"
    for field in ("sample_rate", "channels", "samples", "seed"):
        value = entry.get(field)
        if field in entry and (not isinstance(value, int) or isinstance(value, bool) or value < 0):
            return f"{field}: expected a whole number"
    duration = entry.get("duration", 1.0)
    if isinstance(duration, bool) or not isinstance(duration, (int, float)) or not math.isfinite(duration):
        return "duration: expected a finite number"
    keys = entry.get("keys", {})
    if not isinstance(keys, dict) or any(not is_key(keys[k]) for k in ("generation", "render") if k in keys):
        return "keys: expected 64-hex generation and render keys"
    for field in ("spec", "genre", "model", "license"):
        if field in entry and not isinstance(entry[field], str):
            return f"{field}: expected a string"
    if "genre" in entry and not is_name(entry["genre"]):
        return "genre: not a-z, 0-9, _ and -"
    for field in ("loop", "loudness", "meta"):
        if entry.get(field) is not None and not isinstance(entry[field], dict):
            return f"{field}: expected a table"
    return None


def drop_malformed_entries(path: Path, index: dict[str, Any]) -> dict[str, Any]:
    """``index`` without the entries that fail ``entry_problem``, each logged as a warning
    naming the file: such a track is treated as not built (the next build makes it again
    and rewrites its entry), never followed to a path or a cache key."""
    import logging

    from ..grammar import check_depth

    try:
        check_depth(index, str(path))
    except (ValueError, RecursionError) as exc:
        raise IndexCorrupt(f"{exc}; delete it and run `trackspec build` to rebuild it") from None
    dropped = False
    for name in list(index["tracks"]):
        problem = entry_problem(name, index["tracks"][name])
        if problem:
            shown = name if isinstance(name, str) and len(name) <= 100 and name.isprintable() else "?"
            logging.getLogger(__name__).warning("%s: tracks.%s: %s; treated as not built", path, shown, problem)
            del index["tracks"][name]
            dropped = True
    if dropped:
        index["tracks"] = RepairedTracks(index["tracks"])
    return index


class RepairedTracks(dict):
    """The tracks of an index that had malformed entries dropped: a build writes it back
    even when nothing else changed, so the warning is given once, not on every build."""


def needs_rewrite(index: dict[str, Any]) -> bool:
    return isinstance(index.get("tracks"), RepairedTracks)


def dump_index(index: dict[str, Any], texts: EntryTexts | None = None) -> bytes:
    """The index as written: JSON, sorted keys, indented by 2 (small diffs).

    With ``texts``, each track's entry is serialised once and its bytes reused while the
    entry is the same object (entries are replaced, never changed in place), and the
    sorted order of names is kept while the names stay the same: the daemon rewrites an
    index of thousands of tracks for one changed entry. Same bytes either way.
    """
    if texts is None or set(index) != {"schema_version", "tracks"}:
        return (json.dumps(index, sort_keys=True, indent=2, ensure_ascii=False) + "\n").encode("utf-8")
    tracks = index["tracks"]
    body = b"{\n" + b",\n".join(texts.parts(tracks)) + b"\n  }" if tracks else b"{}"
    version = json.dumps(index["schema_version"], ensure_ascii=False).encode()
    return b'{\n  "schema_version": ' + version + b',\n  "tracks": ' + body + b"\n}\n"


class EntryTexts:
    """Serialised index entries (each ``"name": {...}`` as it stands at depth 2 of the
    index, UTF-8), by track name, with the sorted order of the names last serialised; and
    what this process last wrote to the index file (``write_index`` compares against it
    instead of reading the file back while the file is as it left it)."""

    def __init__(self) -> None:
        self._texts: dict[str, tuple[Any, bytes]] = {}
        self._order: list[str] = []
        self._names: set[str] = set()
        #: ``(path, stat signature, bytes)`` of the last write (or ``None``).
        self.written: tuple[Path, tuple[int, int, int], bytes] | None = None

    def parts(self, tracks: dict[str, Any]) -> list[bytes]:
        """Each entry's bytes, in sorted name order (unchanged entries from the cache)."""
        if tracks.keys() != self._names:
            self._order = sorted(tracks)
            self._names = set(self._order)
            if len(self._texts) > len(self._names):
                self._texts = {n: t for n, t in self._texts.items() if n in self._names}
        texts, make = self._texts, self._text
        return [
            known[1] if (known := texts.get(name)) is not None and known[0] is tracks[name] else make(name, tracks)
            for name in self._order
        ]

    def _text(self, name: str, tracks: dict[str, Any]) -> bytes:
        entry = tracks[name]
        body = json.dumps(entry, sort_keys=True, indent=2, ensure_ascii=False).replace("\n", "\n    ")
        text = f"    {json.dumps(name, ensure_ascii=False)}: {body}".encode()
        self._texts[name] = (entry, text)
        return text


def write_index(
    path: Path, index: dict[str, Any], staging: Path | None = None, texts: EntryTexts | None = None
) -> bool:
    """Write the index if its content changed; return whether it was written."""
    data = dump_index(index, texts)
    known = texts.written if texts is not None else None
    if known is not None and known[0] == path and known[1] == file_signature(path):
        if known[2] == data:  # the file is as this process wrote it: no need to read it back
            return False
    else:
        try:
            if read_regular(path) == data:
                return False
        except OSError:
            pass
    atomic_write_bytes(path, data, staging)
    if texts is not None:
        signature = file_signature(path)
        texts.written = None if signature is None else (path, signature, data)
    return True


class IndexFile:
    """One repo's index kept in memory between a long-running process's reads (the watch
    daemon's cycles): read and checked again only when the file's stat (size, mtime,
    inode: every write is a rename, so a new inode) differs from what this process last
    read or wrote. ``keep`` marks the index in memory as what is on disk; anything that
    could have left it otherwise (an error mid-way) calls ``forget``."""

    def __init__(self, path: Path):
        self.path = path
        self.texts = EntryTexts()
        self._kept: tuple[tuple[int, int, int], dict[str, Any]] | None = None

    def load(self) -> dict[str, Any]:
        signature = file_signature(self.path)
        if self._kept is not None and signature is not None and self._kept[0] == signature:
            return self._kept[1]
        self._kept = None
        return load_index(self.path)

    def keep(self, index: dict[str, Any]) -> None:
        signature = file_signature(self.path)
        self._kept = None if signature is None or needs_rewrite(index) else (signature, index)

    def forget(self) -> None:
        self._kept = None

    def warm(self, index: dict[str, Any]) -> None:
        """Serialise every entry of ``index`` now (idle time), so the next write, which may be
        a user's save waiting for its index update, serialises only what changed."""
        data = dump_index(index, self.texts)
        signature = file_signature(self.path)
        if signature is None:
            return
        try:
            same = read_regular(self.path) == data
        except OSError:
            return
        if same and signature == file_signature(self.path):
            self.texts.written = (self.path, signature, data)
