"""What the daemon prints: timestamped lines for people, JSON Lines for tools.

Both are called from the main loop and the generation worker, so each takes a lock.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import threading
import time
from pathlib import Path
from typing import Any

from ..build import TrackResult
from ..console import format_result
from ..plan import TrackPlan
from ..progress import ProgressDisplay
from .worker import Generated


class TextWatchReporter:
    """One line per finished job; progress bars (or 10 % milestones) and notes on stderr."""

    def __init__(self, quiet: bool = False):
        self.quiet = quiet
        self.display = ProgressDisplay(enabled=not quiet)
        self._lock = threading.Lock()

    def _say(self, text: str, stream=None) -> None:
        with self._lock:
            print(f"[{time.strftime('%H:%M:%S')}] {text}", file=stream or sys.stderr, flush=True)

    def watching(self, root: Path, observer: str) -> None:
        self._say(f"watching {root} ({observer}); Ctrl-C stops")

    def note(self, message: str) -> None:
        if not self.quiet:
            self._say(message)

    def started(self, plan: TrackPlan) -> None:
        pass

    def progress(self, name: str, done: int, total: int) -> None:
        with self._lock:
            self.display.update(name, done, total)

    def generated(self, job: Generated) -> None:
        with self._lock:
            self.display.close(job.plan.name)

    def queue(self, generating: list[str], queued: list[str]) -> None:
        if self.quiet:
            return
        if not generating and not queued:
            self._say("idle: every track is up to date or failed")
            return
        parts = [f"generating {', '.join(generating)}"] if generating else []
        if queued:
            parts.append(f"{len(queued)} queued: {', '.join(queued[:5])}{' ...' if len(queued) > 5 else ''}")
        self._say("; ".join(parts))

    def finished(self, result: TrackResult) -> None:
        if self.quiet and result.ok:
            return
        self._say(format_result(result), sys.stdout)

    def index_written(self, path: Path, tracks: int) -> None:
        pass

    def error(self, message: str) -> None:
        self._say(f"error: {message}")

    def stopped(self, reason: str) -> None:
        self._say(f"stopped ({reason})")


class JsonWatchReporter:
    """One JSON object per line on stdout, each with an ``event`` field (see --help)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tenths: dict[str, int] = {}

    def _emit(self, event: str, **fields: Any) -> None:
        line = json.dumps({"event": event, "time": round(time.time(), 3), **fields}, sort_keys=True)
        with self._lock:
            print(line, flush=True)

    def watching(self, root: Path, observer: str) -> None:
        self._emit("watching", root=str(root), observer=observer)

    def note(self, message: str) -> None:
        self._emit("note", message=message)

    def started(self, plan: TrackPlan) -> None:
        pass

    def progress(self, name: str, done: int, total: int) -> None:
        tenth = (10 * done) // max(total, 1)
        if tenth > self._tenths.get(name, -1):
            self._tenths[name] = tenth
            self._emit("progress", name=name, done=done, total=total)

    def generated(self, job: Generated) -> None:
        self._tenths.pop(job.plan.name, None)
        self._emit(
            "generated",
            name=job.plan.name,
            key=job.plan.track.keys.generation,
            seconds=round(job.seconds, 3),
            ok=job.error is None,
            error=job.error,
        )

    def queue(self, generating: list[str], queued: list[str]) -> None:
        self._emit("queue", generating=generating, queued=queued)

    def finished(self, result: TrackResult) -> None:
        self._emit("finished", **dataclasses.asdict(result))

    def index_written(self, path: Path, tracks: int) -> None:
        self._emit("index_written", path=str(path), tracks=tracks)

    def error(self, message: str) -> None:
        self._emit("error", message=message)

    def stopped(self, reason: str) -> None:
        self._emit("stopped", reason=reason)
