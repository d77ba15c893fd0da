"""Asking a running daemon to generate audition takes with the model it keeps loaded.

A second model load (seconds, and GPU memory the daemon already holds) is what a
composer waits for when `trackspec audition` runs beside `trackspec watch`. So the CLI
drops a request file into ``.trackspec/requests/``; the daemon's file watcher sees it,
queues the takes on its generation worker (raw audio into the cache, like any other
job) and answers with a result file. The CLI then encodes the takes itself, exactly as
without a daemon. Files, not sockets: they need no port, survive nothing they should
not, and are written atomically like everything else here.
"""

from __future__ import annotations

import json
import secrets
import stat
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..config import ProjectConfig
from ..fsutil import atomic_write_bytes
from ..layout import REQUESTS_DIR

RESULT_SUFFIX = ".result.json"


def requests_dir(config: ProjectConfig) -> Path:
    return config.state_dir / REQUESTS_DIR


def is_request(config: ProjectConfig, path: Path) -> bool:
    """A request file (what the daemon's watcher wakes for), not a result or a temp file."""
    return (
        path.parent == requests_dir(config)
        and path.name.endswith(".json")
        and not path.name.endswith(RESULT_SUFFIX)
        and not path.name.startswith(".")
    )


def daemon_running(config: ProjectConfig) -> bool:
    """Whether a `trackspec watch` holds this repo's daemon lock."""
    from ..locks import daemon_lock_path, lock_held

    return lock_held(daemon_lock_path(config.state_dir))


def send(config: ProjectConfig, request: dict[str, Any]) -> str:
    request_id = f"audition-{time.strftime('%Y%m%dT%H%M%S')}-{secrets.token_hex(4)}"
    atomic_write_bytes(requests_dir(config) / f"{request_id}.json", json.dumps(request).encode(), config.staging_dir)
    return request_id


def wait_for_result(
    config: ProjectConfig, request_id: str, alive: Callable[[], bool], poll: float = 0.2
) -> dict[str, Any] | None:
    """The daemon's answer; ``None`` if the daemon stopped before giving one."""
    path = requests_dir(config) / f"{request_id}{RESULT_SUFFIX}"
    checked = time.monotonic()
    while True:
        try:
            from ..fsutil import read_regular

            result = json.loads(read_regular(path, MAX_REQUEST_BYTES))
        except FileNotFoundError:
            result = None
        except (OSError, ValueError, RecursionError):  # not a result the daemon wrote
            path.unlink(missing_ok=True)
            result = {"error": "the daemon's answer was unreadable"}
        if result is not None:
            path.unlink(missing_ok=True)
            return result
        if time.monotonic() - checked >= 1.0:
            if not alive():
                (requests_dir(config) / f"{request_id}.json").unlink(missing_ok=True)
                return None
            checked = time.monotonic()
        time.sleep(poll)


#: A request is a few hundred bytes; a result a few kilobytes.
MAX_REQUEST_BYTES = 64 << 10
#: A result nobody collected (its CLI was killed) is removed after this many seconds.
STALE_RESULT_SECONDS = 3600.0
#: Longest preview a request may ask for, as ``audition --seconds`` allows.
MAX_SECONDS = 600.0


def validate_request(request: Any) -> dict[str, Any]:
    """The request with every value checked as the CLI checks its arguments (``ValueError``
    naming the field otherwise): a track name, 1 to ``MAX_TAKES`` distinct take numbers,
    seconds in (0, 600], and an optional model and working directory as plain strings."""
    import math

    from ..audition import MAX_TAKES
    from ..grammar import is_name

    if not isinstance(request, dict):
        raise ValueError("not a request")
    name = request.get("name")
    if not is_name(name):
        raise ValueError("name: expected a track name (a-z, 0-9, _ and -)")
    takes = request.get("takes")
    if (
        not isinstance(takes, list)
        or not 1 <= len(takes) <= MAX_TAKES
        or any(isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_TAKES for n in takes)
        or len(set(takes)) != len(takes)
    ):
        raise ValueError(f"takes: expected 1 to {MAX_TAKES} distinct take numbers from 1 to {MAX_TAKES}")
    seconds = request.get("seconds")
    if seconds is not None and (
        isinstance(seconds, bool)
        or not isinstance(seconds, (int, float))
        or not math.isfinite(seconds)
        or not 0 < seconds <= MAX_SECONDS
    ):
        raise ValueError(f"seconds: expected a number of seconds in (0, {MAX_SECONDS:g}]")
    for field in ("model", "cwd"):
        value = request.get(field)
        if value is not None and (not isinstance(value, str) or not value or len(value) > 4096 or "\0" in value):
            raise ValueError(f"{field}: expected a path or model id")
    return {
        "name": name,
        "takes": list(takes),
        "seconds": seconds,
        "model": request.get("model"),
        "cwd": request.get("cwd"),
    }


def take_requests(config: ProjectConfig) -> list[tuple[str, dict[str, Any]]]:
    """The waiting requests, oldest first; each is taken (its file removed) as it is read.

    Anything else dropped in the folder is survived: a directory, FIFO or socket is never
    opened (``read_regular``); a special file is removed, a directory left alone; an
    unreadable or invalid request is answered with ``{"invalid": ...}`` naming why.
    Results nobody collected for ``STALE_RESULT_SECONDS`` are removed.
    """
    from ..fsutil import read_regular
    from ..grammar import is_file_name

    folder = requests_dir(config)
    if folder.is_symlink() or not folder.is_dir():
        return []
    candidates = []
    now = time.time()
    for path in folder.iterdir():
        try:
            st = path.lstat()
        except OSError:
            continue
        if path.name.endswith(RESULT_SUFFIX):
            if now - st.st_mtime > STALE_RESULT_SECONDS and not stat.S_ISDIR(st.st_mode):
                path.unlink(missing_ok=True)
            continue
        if is_request(config, path) and is_file_name(path.name):
            candidates.append((st.st_mtime_ns, path, st))
    found = []
    for _, path, st in sorted(candidates, key=lambda c: (c[0], c[1].name)):
        if stat.S_ISDIR(st.st_mode):
            continue  # cannot be taken; never blocks the requests after it
        try:
            request = validate_request(json.loads(read_regular(path, MAX_REQUEST_BYTES)))
        except (OSError, ValueError, RecursionError) as exc:
            request = {"invalid": str(exc)[:300] if isinstance(exc, ValueError) else type(exc).__name__}
        path.unlink(missing_ok=True)
        found.append((path.name[: -len(".json")], request))
    return found


def answer(config: ProjectConfig, request_id: str, result: dict[str, Any]) -> None:
    atomic_write_bytes(
        requests_dir(config) / f"{request_id}{RESULT_SUFFIX}", json.dumps(result).encode(), config.staging_dir
    )
