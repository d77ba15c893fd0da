"""File events in, "something relevant changed" out: filtering and debouncing.

Decisions are never taken from an event itself: events only say *when* to look again, and
the planning cycle decides from the files' contents (their keys). That makes every
editor's save dance (in-place, temp+rename, vim's backup/rename, JetBrains' safe write,
duplicate events) collapse into one look at the final content once the writes settle.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

from ..config import CONFIG_NAME, ProjectConfig
from ..gitignore import IGNORE_FILE, path_ignored
from ..spec import SPEC_SUFFIX
from .requests import is_request, requests_dir

#: Event types that never mean content changed.
_IGNORED_TYPES = {"opened", "closed_no_write"}


def is_relevant(config: ProjectConfig, path: str, is_directory: bool) -> bool:
    """Could a change at ``path`` change the build? Mirrors ``discover_specs``' rules: a spec,
    a folder that may hold specs, a ``.gitignore`` (it changes what is searched), outside the
    trees discovery prunes (hidden, ignored, the assets, state and cache folders)."""
    p = Path(os.path.abspath(path))
    if not is_directory and is_request(config, p):
        return True  # `trackspec audition` asking for takes (``watch.requests``)
    if not is_directory and p.name == CONFIG_NAME:
        return p.parent == config.root
    if not is_directory and p.name != IGNORE_FILE and (not p.name.endswith(SPEC_SUFFIX) or p.name.startswith(".")):
        return False  # editor temp files (.swp, ~, ___jb_tmp___, .#lock) end up here
    try:
        parts = p.relative_to(config.root).parts
    except ValueError:
        return False
    if any(part.startswith(".") for part in parts[:-1] if part not in (".", "..")) or (
        is_directory and parts and parts[-1].startswith(".")
    ):
        return False  # .git, .trackspec, hidden folders are never searched for specs
    for skip in (config.assets_dir, config.state_dir, config.cache_dir):
        if p == skip or skip in p.parents:
            return False
    if not any(p == top or top in p.parents for top in config.spec_dirs):
        return False
    return not path_ignored(str(config.root), str(p), is_directory)


def _pruned(config: ProjectConfig) -> set[Path]:
    return {config.assets_dir, config.state_dir, config.cache_dir}


def watch_plan(config: ProjectConfig, top: Path | None = None) -> list[tuple[Path, bool]]:
    """``(folder, recursive)`` watches that see every folder discovery searches (under ``top``,
    default each spec folder) and no tree it prunes: Unity's ``Library/``, ``.git``, build output.

    A folder whose subtree prunes nothing gets one recursive watch; one that holds a pruned
    folder is watched alone and its other subfolders are planned the same way. The root is
    always watched (``trackspec.toml``), and the audition requests folder.
    """
    from ..gitignore import IGNORE_FILE as IGNORES
    from ..gitignore import Ignores

    root = str(config.root)
    pruned = _pruned(config)
    plan: list[tuple[Path, bool]] = []

    def visit(folder: Path, ignores: Ignores) -> bool:
        """Plan ``folder``'s subtree; True if nothing in it is pruned (the caller may cover it)."""
        try:
            entries = [e for e in os.scandir(folder) if e.is_dir(follow_symlinks=False)]
            has_ignore_file = os.path.exists(os.path.join(folder, IGNORES))
        except OSError:
            return True
        rel = os.path.relpath(folder, root).replace(os.sep, "/")
        prefix = "" if rel == "." else rel + "/"
        if rel != ".":
            ignores = ignores.descend(rel, str(folder), has_ignore_file)
        clean_children, all_clean = [], True
        for entry in sorted(entries, key=lambda e: e.name):
            child = Path(entry.path)
            if entry.name.startswith(".") or child in pruned or ignores.ignored(prefix + entry.name, True):
                all_clean = False
                continue
            if visit(child, ignores):
                clean_children.append(child)
            else:
                all_clean = False
        if all_clean:
            return True
        plan.append((folder, False))
        plan.extend((child, True) for child in clean_children)
        return False

    tops = [top] if top is not None else list(config.spec_dirs)
    for folder in tops:
        if not folder.is_dir() or (folder != config.root and path_ignored(root, str(folder), True)):
            continue
        start = Ignores.for_folder(root, str(folder.parent)) if folder != config.root else Ignores.at_root(root)
        if visit(folder, start):
            plan.append((folder, True))
    if top is None:
        if not any(folder == config.root for folder, _ in plan):
            plan.append((config.root, False))
        requests = requests_dir(config)
        requests.mkdir(parents=True, exist_ok=True)
        plan.append((requests, False))
    return plan


class FolderWatches:
    """The observer's watches, per ``watch_plan``; a folder created where only its parent is
    watched (not recursively) gets watches of its own before the cycle looks at it."""

    def __init__(self, observer, handler, config_of: Callable[[], ProjectConfig]):
        self.observer = observer
        self.handler = handler
        self.config_of = config_of
        self._lock = threading.Lock()
        self._watches: dict[Path, tuple[bool, object | None]] = {}
        self._files: frozenset[Path] = frozenset()
        self._outputs: frozenset[Path] = frozenset()

    def watch_files(self, inputs: set[Path], outputs: set[Path]) -> None:
        """Also see changes to ``inputs`` (audio files specs are made from) and to ``outputs``
        (published files, edited or deleted by hand), wherever they are in the repo: their
        folders get a watch of their own where none covers them."""
        fresh = (inputs | outputs) - self._files - self._outputs
        self._files, self._outputs = frozenset(inputs), frozenset(outputs)
        for folder in {path.parent for path in fresh}:
            if self.covered(folder) or folder in self._watches or not folder.is_dir():
                continue
            try:
                self._add(folder, False)
            except OSError:
                pass  # out of watches: such a file is seen at the next full re-plan

    def is_watched_file(self, path: Path, event_type: str) -> bool:
        """Whether an event of ``event_type`` at ``path`` may change the build: any change to an
        input; to a published file, only a deletion or a write in place (files trackspec
        publishes arrive by a rename, seen as created)."""
        if path in self._files:
            return True
        return path in self._outputs and event_type in ("deleted", "modified", "closed", "moved")

    def schedule_all(self, tolerant: bool = False) -> int:
        """Add the watches ``watch_plan`` asks for and are not there yet; return how many there are.

        ``tolerant``: a watch that cannot be added (limits, a folder gone) is skipped; else the
        ``OSError`` is raised (at start, where the daemon falls back to polling)."""
        for folder, recursive in watch_plan(self.config_of()):
            try:
                self._add(folder, recursive)
            except OSError:
                if not tolerant:
                    raise
        return len(self._watches)

    def _add(self, folder: Path, recursive: bool) -> None:
        # The observer's lock is taken outside ours, never inside: the observer thread holds its
        # lock while a handler runs (and the handler takes ours, ``folder_created``), while the
        # daemon's thread schedules watches too (``watch_files``, a config change).
        with self._lock:
            if folder in self._watches:
                return
            self._watches[folder] = (recursive, None)  # taken: another thread adds it no more
        try:
            watch = self.observer.schedule(self.handler, str(folder), recursive=recursive)
        except BaseException:
            with self._lock:
                self._watches.pop(folder, None)
            raise
        with self._lock:
            if folder in self._watches:
                self._watches[folder] = (recursive, watch)
                return
        self._unschedule([watch])  # its folder was deleted meanwhile

    def covered(self, path: Path) -> bool:
        """Is ``path`` already inside a recursive watch?"""
        with self._lock:
            return any(
                rec and (path == folder or folder in path.parents) for folder, (rec, _w) in self._watches.items()
            )

    def folder_created(self, path: str) -> None:
        folder = Path(os.path.abspath(path))
        if self.covered(folder) or not folder.is_dir():
            return
        config = self.config_of()
        if not is_relevant(config, str(folder), True):
            return
        for sub, recursive in watch_plan(config, folder):
            try:
                self._add(sub, recursive)
            except OSError:
                pass  # gone again, or out of watches: the next rescan finds its specs anyway

    def folder_deleted(self, path: str) -> None:
        folder = Path(os.path.abspath(path))
        with self._lock:
            gone = [f for f in self._watches if f == folder or folder in f.parents]
            watches = [self._watches.pop(f)[1] for f in gone]
        self._unschedule(watches)

    def _unschedule(self, watches: list[object | None]) -> None:
        for watch in watches:
            if watch is None:  # being scheduled: ``_add`` unschedules it when done
                continue
            try:
                self.observer.unschedule(watch)
            except (KeyError, OSError):
                pass


class Wakeups:
    """What the daemon's main loop waits for: settled changes, pokes, a stop request.

    File changes are debounced: the loop wakes once no relevant event came for
    ``debounce`` seconds. Pokes (a finished generation, a rescan) wake it at once.
    """

    def __init__(self, debounce: float):
        self.debounce = debounce
        self._cond = threading.Condition()
        self._changes: set[str] = set()
        self._last_change = 0.0
        self._reasons: list[str] = []

    def changed(self, path: str) -> None:
        with self._cond:
            self._changes.add(path)
            self._last_change = time.monotonic()
            self._cond.notify_all()

    def poke(self, reason: str) -> None:
        with self._cond:
            self._reasons.append(reason)
            self._cond.notify_all()

    def wait(self, should_stop: Callable[[], bool], tick: float = 0.1) -> tuple[list[str], list[str]] | None:
        """Block until there is work: ``(changed paths, reasons)``; ``None`` once stopping.

        Wakes at least every ``tick`` seconds to look at ``should_stop`` (set from a
        signal handler, which must not take locks).
        """
        with self._cond:
            while True:
                if should_stop():
                    return None
                now = time.monotonic()
                settled = self._changes and now - self._last_change >= self.debounce
                if self._reasons or settled:
                    changes = sorted(self._changes) if settled else []
                    if settled:
                        self._changes.clear()
                    reasons, self._reasons = self._reasons, []
                    return changes, reasons
                timeout = tick
                if self._changes:
                    timeout = min(tick, self.debounce - (now - self._last_change))
                self._cond.wait(max(timeout, 0.001))


def make_handler(
    config_of: Callable[[], ProjectConfig], wakeups: Wakeups, watches: Callable[[], FolderWatches | None] = lambda: None
):
    """A watchdog event handler that forwards relevant events to ``wakeups`` (and new or
    deleted folders to the ``FolderWatches`` that ``watches`` returns, first)."""
    from watchdog.events import FileSystemEventHandler

    class SpecEvents(FileSystemEventHandler):
        def on_any_event(self, event) -> None:
            if event.event_type in _IGNORED_TYPES:
                return
            if event.is_directory and event.event_type == "modified":
                return  # every write in a folder says this; the file's own event follows
            folders = watches()
            if folders is not None and event.is_directory:
                if event.event_type in ("created", "moved"):
                    folders.folder_created(os.fsdecode(getattr(event, "dest_path", "") or event.src_path))
                if event.event_type in ("deleted", "moved"):
                    folders.folder_deleted(os.fsdecode(event.src_path))
            config = config_of()
            paths = [event.src_path, getattr(event, "dest_path", "") or ""]
            for end, path in enumerate(paths):  # both ends of a move: one spec is gone, another is new
                if not path:
                    continue
                path = os.fsdecode(path)
                kind = "created" if end else event.event_type  # a move's destination is a new file there
                if is_relevant(config, path, event.is_directory) or (
                    folders is not None and not event.is_directory and folders.is_watched_file(Path(path), kind)
                ):
                    wakeups.changed(path)

    return SpecEvents()


class OverflowAlarm(logging.Handler):
    """Turns watchdog's "queue overflowed" log record into a full rescan.

    watchdog recovers its own watches after an inotify overflow but only logs it; events
    were lost, so the daemon must look at everything again.
    """

    def __init__(self, on_overflow: Callable[[str], None]):
        super().__init__(level=logging.WARNING)
        self.on_overflow = on_overflow

    def emit(self, record: logging.LogRecord) -> None:
        if "overflow" in record.getMessage().lower():
            self.on_overflow("file event queue overflowed; events were lost")
