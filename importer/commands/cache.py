"""``trackspec cache``: list, verify, shrink (LRU) or empty the local cache; push to and pull
from the team cache (``[cache.remote]``)."""

from __future__ import annotations

import argparse
from datetime import UTC
from pathlib import Path

from .common import EXIT_CODES, EXIT_FAILED, EXIT_OK, add_parser, add_root

CACHE_EPILOG = f"""which cache: the repo's (trackspec.toml `cache`, TRACKSPEC_CACHE_DIR overrides); outside a
game repo TRACKSPEC_CACHE_DIR or the user cache dir. Entries are whole: "raw" holds a
track's generated audio (by generation key), "render" its encoded files (by render key).
An entry's "last used" time is refreshed whenever a build restores or re-encodes from it.

--json (every action) prints {{schema_version, command, cache_dir, entries, total_bytes,
removed, freed_bytes, max_bytes}}; entries and removed hold {{kind, key, bytes, files,
formats, last_used, last_used_unix, path}} (+ reason when removed). Schema:
importer/schemas/cache-ls.schema.json.

Removing is safe while builds run: an entry is renamed away whole, then deleted; a build
that needs it again regenerates or re-encodes it. Staging folders of live processes stay.

team cache ([cache.remote] in trackspec.toml): `cache ls --remote` lists its entries (same
--json shape, cache_dir is the s3:// URL); `cache push` uploads local entries it lacks
(conditional creates: nothing there is overwritten), `cache pull` downloads and verifies
entries into the local cache: --all, or the raw audio and render of each TRACK named.
Credentials come from the AWS environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_PROFILE).

{EXIT_CODES}
  (cache verify exits 1 when it found and removed a corrupt entry; push, pull and
  ls --remote exit 1 when the team cache fails, or pull found a corrupt entry)"""

SIZE_HELP = (
    "bytes, or a number with a unit: K M G T (or KiB MiB GiB TiB) = powers of 1024, "
    "KB MB GB TB = powers of 1000; e.g. 500M, 2G, 1.5GiB"
)


def register(sub: argparse._SubParsersAction) -> None:
    cache = add_parser(
        sub,
        "cache",
        "list, verify, shrink or clear the local cache",
        "Inspect and maintain the content-addressed cache of generated audio and encoded files.",
        CACHE_EPILOG,
    )
    actions = cache.add_subparsers(dest="cache_command", metavar="ACTION", required=True)
    ls = add_parser(
        actions,
        "ls",
        "list entries: kind, key, size, last used, formats; and the total",
        "List every cache entry, most recently used first, and the total size.",
    )
    ls.set_defaults(run=run_ls)
    verify = add_parser(
        actions,
        "verify",
        "re-hash every entry; remove corrupt ones (exit 1 if any)",
        "Check every entry's files against its manifest (sha256 and size), as every restore "
        "does. Corrupt entries are removed (a build regenerates them); exit 1 if any was found.",
    )
    verify.set_defaults(run=run_verify)
    gc = add_parser(
        actions,
        "gc",
        "evict least-recently-used entries until the cache fits --max-size",
        "Evict whole entries, least recently used first, until the cache totals at most SIZE.",
    )
    gc.add_argument("--max-size", required=True, type=parse_size, metavar="SIZE", help=SIZE_HELP)
    gc.set_defaults(run=run_gc)
    clear = add_parser(
        actions,
        "clear",
        "remove every entry (says how much was freed)",
        "Remove every cache entry. The next build regenerates what it needs.",
    )
    clear.set_defaults(run=run_clear)
    for action in (ls, verify, gc, clear):
        add_root(action)
        action.add_argument("--json", action="store_true", help="print the result as JSON on stdout")
    ls.add_argument("--remote", action="store_true", help="list the team cache ([cache.remote]) instead")
    push = add_parser(
        actions,
        "push",
        "upload local entries to the team cache (--all, or TRACK...)",
        "Upload local cache entries the team cache lacks: every entry (--all), or the raw audio "
        "and render of each TRACK named.",
    )
    push.set_defaults(run=run_push)
    pull = add_parser(
        actions,
        "pull",
        "download entries from the team cache (--all, or TRACK...)",
        "Download and verify team cache entries into the local cache: every entry (--all), or "
        "the raw audio and render of each TRACK named. `build` restores from them.",
    )
    pull.set_defaults(run=run_pull)
    for action in (push, pull):
        add_root(action)
        action.add_argument("--all", action="store_true", help="every entry")
        action.add_argument("tracks", nargs="*", metavar="TRACK", help="track names")
        action.add_argument(
            "--model",
            metavar="ID_OR_DIR",
            help="the tracks' keys as built with this model (as build --model). Env: TRACKSPEC_MODEL",
        )


_UNITS = {
    "": 1,
    "b": 1,
    "k": 1024,
    "m": 1024**2,
    "g": 1024**3,
    "t": 1024**4,
    "kib": 1024,
    "mib": 1024**2,
    "gib": 1024**3,
    "tib": 1024**4,
    "kb": 1000,
    "mb": 1000**2,
    "gb": 1000**3,
    "tb": 1000**4,
}


def parse_size(text: str) -> int:
    """'1.5GiB' -> 1610612736; an argparse type, so a bad size is a usage error (exit 2)."""
    import re

    match = re.fullmatch(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*([a-zA-Z]*)\s*", text)
    unit = match.group(2).lower() if match else ""
    if not match or unit not in _UNITS:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size; use {SIZE_HELP}")
    return int(float(match.group(1)) * _UNITS[unit])


def _cache(args: argparse.Namespace):
    """The LocalCache of --root's repo, else the nearest repo's, else TRACKSPEC_CACHE_DIR or the
    user cache dir; returns it with the folder it lives in."""
    import os
    from pathlib import Path

    from ..cache import LocalCache
    from ..config import CACHE_ENV, default_cache_dir, find_root, load_config
    from ..errors import ProjectNotFound

    if args.root:
        folder = load_config(args.root.resolve()).cache_dir
    else:
        try:
            folder = load_config(find_root(Path.cwd())).cache_dir
        except ProjectNotFound:
            env = os.environ.get(CACHE_ENV)
            folder = (Path(env).expanduser() if env else default_cache_dir()).resolve()
    return LocalCache(folder), folder


def _entry_json(entry, reason: str | None = None) -> dict:
    from datetime import datetime

    doc = {
        "kind": entry.kind,
        "key": entry.key,
        "bytes": entry.bytes,
        "files": list(entry.files),
        "formats": list(entry.formats),
        "path": str(entry.directory),
        "last_used": datetime.fromtimestamp(entry.last_used, UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "last_used_unix": entry.last_used,
    }
    if reason is not None:
        doc["reason"] = reason
    return doc


def _emit_json(command: str, folder, entries: list, removed: list, max_bytes: int | None = None) -> None:
    """One shape for every action (importer/schemas/cache-ls.schema.json)."""
    import json

    doc = {
        "schema_version": 1,
        "command": command,
        "cache_dir": str(folder),
        "entries": [_entry_json(e) for e in entries],
        "total_bytes": sum(e.bytes for e in entries),
        "removed": [_entry_json(r.entry, r.reason) for r in removed],
        "freed_bytes": sum(r.entry.bytes for r in removed),
        "max_bytes": max_bytes,
    }
    print(json.dumps(doc, indent=2, sort_keys=True))


def _when(timestamp: float) -> str:
    import time

    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(timestamp))


def _describe(entry) -> str:
    from ..console import human_bytes

    formats = " ".join(entry.formats) or "-"
    return f"{entry.kind:<7} {entry.key[:12]}  {human_bytes(entry.bytes):>10}  {_when(entry.last_used)}  {formats}"


def _total_line(entries: list, folder) -> str:
    from ..console import human_bytes

    raw = sum(e.kind == "raw" for e in entries)
    return (
        f"{len(entries)} entries ({raw} raw, {len(entries) - raw} render), "
        f"{human_bytes(sum(e.bytes for e in entries))} in {folder}"
    )


def run_ls(args: argparse.Namespace) -> int:
    if args.remote:
        _, session = _remote(args)
        folder = session.url
        try:
            entries = session.tier().entries()
        except _store_error() as exc:
            raise _remote_error(session, exc, "listing") from None
    else:
        cache, folder = _cache(args)
        entries = cache.entries()
    if args.json:
        _emit_json("ls", folder, entries, [])
        return EXIT_OK
    if entries:
        print(f"{'KIND':<7} {'KEY':<12}  {'SIZE':>10}  {'LAST USED':<19}  FORMATS")
        for entry in entries:
            print(_describe(entry))
    print(_total_line(entries, folder))
    return EXIT_OK


def run_verify(args: argparse.Namespace) -> int:
    cache, folder = _cache(args)
    corrupt = cache.verify_all()
    entries = cache.entries()
    if args.json:
        _emit_json("verify", folder, entries, corrupt)
    else:
        for removed in corrupt:
            e = removed.entry
            print(f"corrupt {e.kind} {e.key[:12]} ({e.directory}): {removed.reason}; removed")
        checked = len(entries) + len(corrupt)
        if corrupt:
            print(
                f"{len(corrupt)} of {checked} entries were corrupt and removed; the next build regenerates "
                "or re-encodes what it needs"
            )
        else:
            print(f"all {checked} entries intact ({folder})")
    return EXIT_FAILED if corrupt else EXIT_OK


def run_gc(args: argparse.Namespace) -> int:
    from ..console import human_bytes

    cache, folder = _cache(args)
    evicted = cache.gc(args.max_size)
    entries = cache.entries()
    if args.json:
        _emit_json("gc", folder, entries, evicted, args.max_size)
        return EXIT_OK
    for removed in evicted:
        print(f"evicted {_describe(removed.entry)}")
    freed = sum(r.entry.bytes for r in evicted)
    print(
        f"freed {human_bytes(freed)} ({len(evicted)} entries); now {_total_line(entries, folder)} "
        f"(limit {human_bytes(args.max_size)})"
    )
    return EXIT_OK


def run_clear(args: argparse.Namespace) -> int:
    from ..console import human_bytes

    cache, folder = _cache(args)
    removed = cache.clear()
    if args.json:
        _emit_json("clear", folder, cache.entries(), removed)
        return EXIT_OK
    print(f"removed {len(removed)} entries, freed {human_bytes(sum(r.entry.bytes for r in removed))} from {folder}")
    return EXIT_OK


# ---------------------------------------------------------------- team cache
def _remote(args: argparse.Namespace):
    """(config, a RemoteSession that raises on failure) for the repo; exit 2 without [cache.remote]."""
    from pathlib import Path

    from ..cache import LocalCache
    from ..config import find_root, load_config
    from ..errors import ConfigError, Location
    from ..remote.session import RemoteSession

    config = load_config(args.root.resolve() if args.root else find_root(Path.cwd()))
    if config.remote is None:
        raise ConfigError(
            Location(config.config_path),
            'no team cache configured: add [cache.remote] with url = "s3://bucket/prefix" (see README, Team cache)',
            "cache.remote",
        )
    return config, RemoteSession(config.remote, LocalCache(config.cache_dir), require=True)


def _store_error():
    from ..remote.store import StoreError

    return StoreError


def _remote_error(session, exc, doing: str):
    from ..remote.session import RemoteError

    return RemoteError(session.describe(exc, doing))


def _track_items(args: argparse.Namespace, config) -> list[tuple[str, str]]:
    """(kind, key) of the raw audio and render of each track named (exit 2 for an unknown name)."""
    from ..errors import ConfigError, Location
    from ..state import State
    from ..tracks import load_tracks
    from .common import model_override

    loaded, _ = load_tracks(config, State.in_folder(config.state_dir), model_override(args), Path.cwd())
    by_name = {t.spec.name: t for t in loaded}
    unknown = [name for name in args.tracks if name not in by_name]
    if unknown:
        raise ConfigError(
            Location(config.config_path),
            f"no valid spec defines track(s) {', '.join(unknown)}; known: {', '.join(sorted(by_name)) or 'none'}",
        )
    items = []
    for name in args.tracks:
        keys = by_name[name].keys
        items += [("raw", keys.generation), ("render", keys.render)]
    return items


def _which(args: argparse.Namespace) -> None:
    if bool(args.all) == bool(args.tracks):
        raise _usage("give --all or one or more TRACK names (not both)")


def _usage(message: str):
    from ..errors import ConfigError, Location

    return ConfigError(Location(Path("trackspec cache")), message)


def run_push(args: argparse.Namespace) -> int:
    _which(args)
    config, session = _remote(args)
    if args.all:
        items = [(e.kind, e.key) for e in session.cache.entries()]
    else:
        items = [(k, key) for k, key in _track_items(args, config) if session.cache.has(k, key)]
    pushed = session.push_many(items)
    print(
        f"pushed {pushed} of {len(items)} local entries to {session.url} "
        f"({len(items) - pushed} already there or gone locally)"
    )
    return EXIT_OK


def run_pull(args: argparse.Namespace) -> int:
    _which(args)
    config, session = _remote(args)
    if args.all:
        try:
            items = [(e.kind, e.key) for e in session.tier().entries()]
        except _store_error() as exc:
            raise _remote_error(session, exc, "listing") from None
    else:
        items = _track_items(args, config)
    wanted = [(k, key) for k, key in items if not session.cache.has(k, key)]
    found = session.fetch_many(wanted)
    print(
        f"pulled {len(found)} entries from {session.url} into {config.cache_dir} "
        f"({len(items) - len(wanted)} already local, {len(wanted) - len(found) - len(session.corrupt)} "
        f"not in the team cache, {len(session.corrupt)} corrupt)"
    )
    return EXIT_FAILED if session.corrupt else EXIT_OK
