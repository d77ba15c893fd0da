"""What each engine needs beside the audio files: written from the final index, after a build.

Only Godot reads a per-file import setting trackspec can write (its ``.import`` sidecars,
``engines.godot``); Unity's and Unreal's import settings are applied by the scripts in
``build_hooks/`` from the same index. ``sync`` is the one call the build and ``watch`` make,
after the index is written: it derives every sidecar from the index alone, so running it
again changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..config import ProjectConfig


@dataclass
class SyncResult:
    written: list[Path] = field(default_factory=list)
    removed: list[Path] = field(default_factory=list)


def snapshot(config: ProjectConfig, index: dict[str, Any]) -> dict[str, Any] | None:
    """What ``sync`` needs of an index that is about to change: the files it lists (``None``
    outside an engine project: there is nothing to sync, and a big index is not copied)."""
    from .godot import find_project

    if find_project(config) is None:
        return None
    return {
        "tracks": {
            name: {"files": {fmt: dict(info) for fmt, info in entry.get("files", {}).items()}}
            for name, entry in index.get("tracks", {}).items()
        }
    }


def sync(config: ProjectConfig, index: dict[str, Any], previous_index: dict[str, Any] | None = None) -> SyncResult:
    """Bring the engines' sidecars in line with ``index`` (the one on disk now).

    ``previous_index`` (the index before this build or cycle) names the files trackspec
    published and may have written sidecars for: those no longer listed lose their sidecar.
    Errors writing one sidecar are logged and do not stop the others (the audio is published
    already; the next build tries again).
    """
    from . import godot

    result = SyncResult()
    godot.sync(config, index, previous_index, result)
    return result
