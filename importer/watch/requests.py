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
import time
from pathlib import Path
from typing import Any, Callable

from ..config import ProjectConfig
from ..fsutil import atomic_write_bytes
from ..layout import REQUESTS_DIR
RESULT_SUFFIX = ".result.json"


def requests_dir(config: ProjectConfig) -> Path:
    return config.state_dir / REQUESTS_DIR


def is_request(config: ProjectConfig, path: Path) -> bool:
    """A request file (what the daemon's watcher wakes for), not a result or a temp file."""
    return (path.parent == requests_dir(config) and path.name.endswith(".json")
            and not path.name.endswith(RESULT_SUFFIX) and not path.name.startswith("."))


def daemon_running(config: ProjectConfig) -> bool:
    """Whether a `trackspec watch` holds this repo's daemon lock."""
    from ..locks import daemon_lock_path, lock_held

    return lock_held(daemon_lock_path(config.state_dir))


def send(config: ProjectConfig, request: dict[str, Any]) -> str:
    request_id = f"audition-{time.strftime('%Y%m%dT%H%M%S')}-{secrets.token_hex(4)}"
    atomic_write_bytes(requests_dir(config) / f"{request_id}.json", json.dumps(request).encode(),
                       config.staging_dir)
    return request_id


def wait_for_result(config: ProjectConfig, request_id: str, alive: Callable[[], bool],
                    poll: float = 0.2) -> dict[str, Any] | None:
    """The daemon's answer; ``None`` if the daemon stopped before giving one."""
    path = requests_dir(config) / f"{request_id}{RESULT_SUFFIX}"
    checked = time.monotonic()
    while True:
        try:
            result = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            result = None
        if result is not None:
            path.unlink(missing_ok=True)
            return result
        if time.monotonic() - checked >= 1.0:
            if not alive():
                (requests_dir(config) / f"{request_id}.json").unlink(missing_ok=True)
                return None
            checked = time.monotonic()
        time.sleep(poll)


def take_requests(config: ProjectConfig) -> list[tuple[str, dict[str, Any]]]:
    """The waiting requests, oldest first; each is taken (its file removed) as it is read."""
    folder = requests_dir(config)
    found = []
    for path in sorted(folder.glob("*.json"), key=lambda p: p.stat().st_mtime_ns) if folder.is_dir() else []:
        if not is_request(config, path):
            continue
        try:
            request = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            request = {"invalid": True}
        path.unlink(missing_ok=True)
        found.append((path.name[: -len(".json")], request))
    return found


def answer(config: ProjectConfig, request_id: str, result: dict[str, Any]) -> None:
    atomic_write_bytes(requests_dir(config) / f"{request_id}{RESULT_SUFFIX}", json.dumps(result).encode(),
                       config.staging_dir)
