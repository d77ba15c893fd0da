"""The daemon's two locks: one daemon per repo, and the repo lock shared by its threads.

The repo lock is the file lock ``trackspec build`` takes. The daemon holds it whenever
it works (a planning cycle, or a generation in the worker), so a ``build`` started
meanwhile waits, and releases it when idle. Its threads share one hold: the file is
locked when the first of them starts working and unlocked when the last one stops.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

from ..errors import LockBusy


class Stopped(Exception):
    """The daemon was asked to stop while waiting for the repo lock."""


def daemon_lock(state_dir: Path):
    """Acquire the one-daemon-per-repo lock or raise ``LockBusy``; the caller releases it."""
    from filelock import FileLock, Timeout

    from ..fsutil import ensure_state_dir

    ensure_state_dir(state_dir)
    lock = FileLock(str(state_dir / "watch.lock"), thread_local=False)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        raise LockBusy(f"another `trackspec watch` is already watching {state_dir.parent} "
                       f"(lock {state_dir / 'watch.lock'}); stop it first") from None
    return lock


def lock_held(path: Path) -> bool:
    """Whether another process holds the file lock ``path`` (tried with timeout 0 and
    released at once); a missing lock file is free, and none is made."""
    from filelock import FileLock, Timeout

    if not path.is_file():
        return False
    lock = FileLock(str(path), thread_local=False)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        return True
    lock.release()
    return False


class SharedRepoLock:
    """The repo lock, held while any of the daemon's threads works."""

    def __init__(self, path: Path, on_wait: Callable[[], None], should_stop: Callable[[], bool]):
        from filelock import FileLock

        self._file = FileLock(str(path), thread_local=False)
        self._mutex = threading.Lock()
        self._holders = 0
        self._on_wait = on_wait
        self._should_stop = should_stop

    @contextmanager
    def held(self) -> Iterator[None]:
        self._enter()
        try:
            yield
        finally:
            self._leave()

    def _enter(self) -> None:
        from filelock import Timeout

        with self._mutex:
            if self._holders == 0:
                waited = False
                while True:
                    try:
                        self._file.acquire(timeout=0.1)
                        break
                    except Timeout:
                        if self._should_stop():
                            raise Stopped() from None
                        if not waited:
                            waited = True
                            self._on_wait()
            self._holders += 1

    def _leave(self) -> None:
        with self._mutex:
            self._holders -= 1
            if self._holders == 0:
                self._file.release()
