"""`trackspec watch --json` as a child process, read the way tools read it: one JSON event a line.

Two reader threads collect the event lines (stdout) and the stderr lines. Tests wait on
conditions over what was read (bounded waits, never a fixed sleep), ``barrier`` proves
that the daemon has handled every file change made before it, and ``stop``/``wait_exit``
join the readers, so every line the daemon wrote has been read when they return.
(Shared by tests/test_watch.py and the reliability tests that run the daemon.)
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable

#: The spec that ``barrier`` saves (sorted last, so it is easy to tell apart in a listing).
BARRIER = "zz_barrier"


class WatchProcess:
    """The daemon, its events (``events``) and stderr lines (``stderr``), read as they come.

    ``launcher``: Python source run with ``-c`` instead of ``-m importer`` (it must end by
    calling ``importer.cli.main``), for tests that instrument the daemon's process;
    ``pass_fds``: file descriptors the child inherits.
    """

    def __init__(self, repo, *args: str, launcher: str | None = None, pass_fds: tuple[int, ...] = ()):
        self.repo = repo
        entry = ["-c", launcher] if launcher is not None else ["-m", "importer"]
        self.proc = subprocess.Popen(
            [sys.executable, *entry, "watch", "--json", *args],
            cwd=repo.root,
            env=repo.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            pass_fds=pass_fds,
        )
        self.events: list[dict] = []
        self.stderr: list[str] = []
        self._cond = threading.Condition()
        self._barriers = 0
        self._readers = [
            threading.Thread(target=self._read, args=(self.proc.stdout, True), daemon=True),
            threading.Thread(target=self._read, args=(self.proc.stderr, False), daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    def _read(self, stream, events: bool) -> None:
        for line in stream:
            with self._cond:
                if events:
                    self.events.append(json.loads(line))
                else:
                    self.stderr.append(line)
                self._cond.notify_all()
        with self._cond:  # EOF: the daemon has exited (or closed the stream)
            self._cond.notify_all()

    # ------------------------------------------------------------------ waiting
    def wait_for(self, predicate: Callable[[dict], bool], timeout: float = 300, after: int = 0) -> dict:
        """The first event from index ``after`` on that satisfies ``predicate``."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for event in self.events[after:]:
                    if predicate(event):
                        return event
                if not self._readers[0].is_alive() and self.proc.poll() is not None:
                    raise AssertionError(
                        f"the daemon exited (rc={self.proc.returncode}) without that event\n" + self.log()
                    )
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no such event in {timeout} s; rc={self.proc.poll()}\n" + self.log())
                self._cond.wait(min(left, 1.0))  # woken by every line and by EOF

    def finished(self, name: str, after: int = 0, timeout: float = 300, **fields) -> dict:
        return self.wait_for(
            lambda e: e["event"] == "finished" and e["name"] == name and all(e.get(k) == v for k, v in fields.items()),
            timeout=timeout,
            after=after,
        )

    def barrier(self, text: str, timeout: float = 300) -> int:
        """Return once the daemon has handled every file change made before this call.

        Saves the spec ``BARRIER`` (``text``, any ``name`` line dropped, a ``meta.barrier``
        counter added: a restore the first time when ``text``'s audio and render are cached,
        an index update after) and waits for its job and the index write that ends its
        cycle. File events arrive in order and cycles run one after another, so every
        earlier change was handled by then. Twice: the second cycle also lets out the
        "queue" line the first cycle may print after its index write. Returns the mark
        before the second save: every event of the cycles before it lies before that mark.
        """
        path = self.repo.root / "track_specs" / f"{BARRIER}.trackspec"
        mark = 0
        for _ in range(2):
            self._barriers += 1
            mark = self.mark()
            path.write_text(_with_meta(_unnamed(text), f"barrier = {self._barriers}"), encoding="utf-8")
            done = self.finished(BARRIER, after=mark, ok=True, timeout=timeout)
            # The index write closes the barrier's cycle (only a "queue" line may follow it).
            self.wait_for(lambda e: e["event"] == "index_written", after=self._position(done, mark))
        return mark

    def _position(self, event: dict, after: int) -> int:
        with self._cond:
            return next(i for i in range(after, len(self.events)) if self.events[i] is event)

    def drop_barrier(self, timeout: float = 120) -> None:
        """Delete the barrier spec and wait until the daemon has removed its track."""
        mark = self.mark()
        (self.repo.root / "track_specs" / f"{BARRIER}.trackspec").unlink()
        done = self.finished(BARRIER, after=mark, action="remove", ok=True, timeout=timeout)
        self.wait_for(lambda e: e["event"] == "index_written", after=self._position(done, mark))

    def queue_now(self) -> tuple[list[str], list[str]]:
        """(generating, queued) as the daemon last said (both empty before it said anything)."""
        queues = self.since(0, "queue")
        return (queues[-1]["generating"], queues[-1]["queued"]) if queues else ([], [])

    def mark(self) -> int:
        with self._cond:
            return len(self.events)

    def since(self, mark: int, event: str, name: str | None = None) -> list[dict]:
        with self._cond:
            return [e for e in self.events[mark:] if e["event"] == event and (name is None or e.get("name") == name)]

    # ------------------------------------------------------------------ the end
    def wait_exit(self, timeout: float = 60) -> int:
        """The exit code, once the daemon has exited and both readers have read to the end."""
        rc = self.proc.wait(timeout)
        for reader in self._readers:
            reader.join(30)
            assert not reader.is_alive(), "the daemon's output stayed open after it exited\n" + self.log()
        return rc

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.wait_exit(timeout)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()

    def log(self) -> str:
        return "\n".join(json.dumps(e) for e in self.events[-40:]) + "\n" + "".join(self.stderr[-40:])


def _unnamed(text: str) -> str:
    """``text`` without a ``name = ...`` line: the barrier's track is named after its file."""
    return re.sub(r"(?m)^name\s*=.*\n", "", text)


def _with_meta(text: str, line: str) -> str:
    """``text`` with ``line`` added to its ``[meta]`` table (made if there is none)."""
    if re.search(r"(?m)^\[meta\]\s*$", text):
        return re.sub(r"(?m)^\[meta\]\s*$", lambda m: f"{m.group(0)}\n{line}", text, count=1)
    return f"{text.rstrip()}\n\n[meta]\n{line}\n"
