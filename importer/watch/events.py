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
from pathlib import Path
from typing import Callable

from ..config import CONFIG_NAME, ProjectConfig
from ..spec import SPEC_SUFFIX
from .requests import is_request

#: Event types that never mean content changed.
_IGNORED_TYPES = {"opened", "closed_no_write"}


def is_relevant(config: ProjectConfig, path: str, is_directory: bool) -> bool:
    """Could a change at ``path`` change the build? Mirrors ``discover_specs``' rules."""
    p = Path(os.path.abspath(path))
    if not is_directory and is_request(config, p):
        return True  # `trackspec audition` asking for takes (``watch.requests``)
    if not is_directory and p.name == CONFIG_NAME:
        return p.parent == config.root
    if not is_directory and (not p.name.endswith(SPEC_SUFFIX) or p.name.startswith(".")):
        return False  # editor temp files (.swp, ~, ___jb_tmp___, .#lock) end up here
    try:
        parts = p.relative_to(config.root).parts
    except ValueError:
        return False
    if any(part.startswith(".") for part in parts[:-1] if part not in (".", "..")) or \
            (is_directory and parts and parts[-1].startswith(".")):
        return False  # .git, .trackspec, hidden folders are never searched for specs
    for skip in (config.assets_dir, config.state_dir, config.cache_dir):
        if p == skip or skip in p.parents:
            return False
    return any(p == top or top in p.parents for top in config.spec_dirs)


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


def make_handler(config_of: Callable[[], ProjectConfig], wakeups: Wakeups):
    """A watchdog event handler that forwards relevant events to ``wakeups``."""
    from watchdog.events import FileSystemEventHandler

    class SpecEvents(FileSystemEventHandler):
        def on_any_event(self, event) -> None:
            if event.event_type in _IGNORED_TYPES:
                return
            if event.is_directory and event.event_type == "modified":
                return  # every write in a folder says this; the file's own event follows
            config = config_of()
            paths = [event.src_path, getattr(event, "dest_path", "") or ""]
            for path in paths:  # both ends of a move: one spec is gone, another is new
                if path and is_relevant(config, os.fsdecode(path), event.is_directory):
                    wakeups.changed(os.fsdecode(path))

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
