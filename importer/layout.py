"""Names and places of a game repo: ``trackspec.toml`` marks its root, ``.trackspec/`` holds state.

Standard library only (``os``): the CLI and the no-op fast path (``fastpath``) need the
root before anything else is imported, and ``config`` (which imports the TOML and field
machinery) would cost more than the whole fast path.
"""

from __future__ import annotations

import os

CONFIG_NAME = "trackspec.toml"
STATE_DIR_NAME = ".trackspec"
CACHE_ENV = "TRACKSPEC_CACHE_DIR"
MODEL_ENV = "TRACKSPEC_MODEL"
SPEC_SUFFIX = ".trackspec"

# What the state folder (``.trackspec/``) holds: one name each, spelled here only.
#: The stat cache (``state``).
STATE_FILE = "state.json"
#: The repo lock and the one-daemon lock (``locks``).
REPO_LOCK = "lock"
DAEMON_LOCK = "watch.lock"
#: The no-op record (``fastpath``).
NOOP_RECORD = "noop.marshal"
#: Files unlisted from the index but not yet deleted (``index.pending``).
PENDING_REMOVALS = "pending-removals.json"
#: Staging for files bound for the assets folder and the index.
STAGING_DIR = "tmp"
#: The last audition of each track (``audition``).
AUDITIONS_DIR = "auditions"
#: Audition requests to a running daemon and its answers (``watch.requests``).
REQUESTS_DIR = "requests"


def looks_like_path(model: str) -> bool:
    """Hub ids are ``name`` or ``org/name``; anything else that looks like a path is one."""
    return model.startswith((".", "/", "~")) or "\\" in model or model.count("/") > 1


def find_root_dir(start: str) -> str | None:
    """The nearest folder at or above ``start`` (resolved) holding ``trackspec.toml``, or ``None``."""
    folder = os.path.realpath(start)
    while True:
        if os.path.isfile(os.path.join(folder, CONFIG_NAME)):
            return folder
        parent = os.path.dirname(folder)
        if parent == folder:
            return None
        folder = parent
