"""Every lock trackspec takes, and the one primitive under them.

Two locks live in a repo's state folder (their names: ``layout``):

* the **repo lock** (``lock``): held by a build while it plans and publishes, by the watch
  daemon while it works (a planning cycle or a generation), and for a moment by the no-op
  fast path, so none of them sees another halfway through publishing;
* the **daemon lock** (``watch.lock``): one ``trackspec watch`` per repo.

The primitive is an exclusive, non-blocking lock on an open file: ``flock`` on POSIX
(Linux, macOS), ``msvcrt.locking`` on Windows, released when the file is closed (also
when a process dies). ``filelock.FileLock`` takes the same ``flock``, so tools and tests
that use it see these locks. Only the standard library is imported: the fast path takes
the repo lock for a moment and must not pay for more.
"""

from __future__ import annotations

import os
import time

from .layout import DAEMON_LOCK, REPO_LOCK

TYPE_CHECKING = False  # not typing's: the no-op fast path imports this module
if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

#: How often a blocking wait tries the lock again.
POLL_SECONDS = 0.05


class Stopped(Exception):
    """A wait for a lock was given up because the waiter is stopping."""


def _try_lock(fd: int) -> bool:
    if os.name == "nt":
        import msvcrt

        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)  # type: ignore[attr-defined]
        except OSError:
            return False
        return True
    import fcntl

    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False
    return True


class FileLock:
    """An exclusive lock on ``path`` (created if missing), held by this object until ``release``."""

    def __init__(self, path: str | os.PathLike[str]):
        self.path = os.fspath(path)
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def try_acquire(self, create: bool = True) -> bool:
        """Take the lock if it is free; ``False`` if another holder has it (or, without
        ``create``, if the lock file does not exist)."""
        if self._fd is not None:
            return True
        try:
            fd = os.open(self.path, os.O_RDWR | (os.O_CREAT if create else 0), 0o644)
        except OSError:
            if create:
                raise
            return False
        if not _try_lock(fd):
            os.close(fd)
            return False
        self._fd = fd
        return True

    def acquire(self, on_wait: Callable[[], None] | None = None, should_stop: Callable[[], bool] | None = None) -> None:
        """Wait for the lock; ``on_wait`` is called once if it is held; ``should_stop``
        returning true gives up with ``Stopped``."""
        waited = False
        while not self.try_acquire():
            if should_stop is not None and should_stop():
                raise Stopped()
            if not waited:
                waited = True
                if on_wait is not None:
                    on_wait()
            time.sleep(POLL_SECONDS)

    def release(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)  # closing releases the lock

    def __enter__(self) -> FileLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


class SharedOrExclusive:
    """A blocking lock on ``path`` (created if missing) for the length of a ``with``: shared
    (many holders) or exclusive. The cache's pins use it: pinning is shared, eviction is
    exclusive. POSIX ``flock``; Windows has no shared byte-range lock in ``msvcrt``, so there
    both kinds are exclusive (correct, only less concurrent)."""

    def __init__(self, path: str | os.PathLike[str], exclusive: bool):
        self.path = os.fspath(path)
        self.exclusive = exclusive
        self._fd: int | None = None

    def __enter__(self) -> SharedOrExclusive:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            if os.name == "nt":
                import msvcrt

                msvcrt.locking(fd, msvcrt.LK_LOCK, 1)  # type: ignore[attr-defined]
            else:
                import fcntl

                fcntl.flock(fd, fcntl.LOCK_EX if self.exclusive else fcntl.LOCK_SH)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        return self

    def __exit__(self, *exc: object) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)  # closing releases the lock


def repo_lock_path(state_dir: str | os.PathLike[str]) -> str:
    return os.path.join(os.fspath(state_dir), REPO_LOCK)


def daemon_lock_path(state_dir: str | os.PathLike[str]) -> str:
    return os.path.join(os.fspath(state_dir), DAEMON_LOCK)


def repo_lock(state_dir: Path, wait: bool, on_wait: Callable[[], None]) -> FileLock:
    """Take the repo lock; without ``wait``, ``LockBusy`` if another process holds it."""
    from .errors import LockBusy
    from .fsutil import ensure_state_dir

    ensure_state_dir(state_dir)
    lock = FileLock(repo_lock_path(state_dir))
    if lock.try_acquire():
        return lock
    if not wait:
        raise LockBusy(
            f"another trackspec process is building {state_dir.parent} "
            f"(lock {repo_lock_path(state_dir)}); try again when it finishes"
        )
    lock.acquire(on_wait)
    return lock


def daemon_lock(state_dir: Path) -> FileLock:
    """Take the one-daemon-per-repo lock or raise ``LockBusy``; the caller releases it."""
    from .errors import LockBusy
    from .fsutil import ensure_state_dir

    ensure_state_dir(state_dir)
    lock = FileLock(daemon_lock_path(state_dir))
    if not lock.try_acquire():
        raise LockBusy(
            f"another `trackspec watch` is already watching {state_dir.parent} "
            f"(lock {daemon_lock_path(state_dir)}); stop it first"
        )
    return lock


def lock_held(path: str | os.PathLike[str]) -> bool:
    """Whether another process holds the lock file ``path`` (tried and released at once);
    a missing lock file is free, and none is made."""
    lock = FileLock(path)
    if not os.path.isfile(lock.path):
        return False
    if lock.try_acquire(create=False):
        lock.release()
        return False
    return os.path.isfile(lock.path)


def repo_unlocked(root: str) -> FileLock | None:
    """The repo lock taken without waiting (or creating it), for the moment of a check;
    ``None`` if another process holds it or it does not exist. The caller releases it."""
    from .layout import STATE_DIR_NAME

    lock = FileLock(repo_lock_path(os.path.join(root, STATE_DIR_NAME)))
    return lock if lock.try_acquire(create=False) else None


class SharedRepoLock:
    """The repo lock, held while any of the daemon's threads works: taken when the first
    starts and released when the last one stops."""

    def __init__(self, state_dir: Path, on_wait: Callable[[], None], should_stop: Callable[[], bool]):
        import threading  # (not at module level: the no-op fast path imports this module)

        self._file = FileLock(repo_lock_path(state_dir))
        self._mutex = threading.Lock()
        self._holders = 0
        self._on_wait = on_wait
        self._should_stop = should_stop

    def held(self) -> _Hold:
        return _Hold(self)

    def _enter(self) -> None:
        with self._mutex:
            if self._holders == 0:
                self._file.acquire(self._on_wait, self._should_stop)
            self._holders += 1

    def _leave(self) -> None:
        with self._mutex:
            self._holders -= 1
            if self._holders == 0:
                self._file.release()


class _Hold:
    def __init__(self, lock: SharedRepoLock):
        self.lock = lock

    def __enter__(self) -> None:
        self.lock._enter()

    def __exit__(self, *exc: object) -> None:
        self.lock._leave()
