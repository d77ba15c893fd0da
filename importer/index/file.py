"""The asset index: the JSON file the game engine reads.

Written atomically (temp file, fsync, rename) with sorted keys, so the engine never sees
half an index and diffs stay small. Its JSON Schema ships beside this module
(``schemas/index.schema.json``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..errors import IndexCorrupt
from ..fsutil import atomic_write_bytes

SCHEMA_VERSION = 1
SCHEMA_PATH = Path(__file__).parent.parent / "schemas" / "index.schema.json"


def empty_index() -> dict[str, Any]:
    return {"schema_version": SCHEMA_VERSION, "tracks": {}}


def load_index(path: Path) -> dict[str, Any]:
    """The index at ``path``; an empty one if absent. A broken index is an error, not a reset."""
    try:
        data = json.loads(path.read_text("utf-8"))
    except FileNotFoundError:
        return empty_index()
    except (OSError, ValueError) as exc:
        raise IndexCorrupt(f"{path}: the asset index cannot be read ({exc}); fix or delete it, "
                          "then run `trackspec build` to rebuild it") from exc
    if not isinstance(data, dict) or data.get("schema_version") != SCHEMA_VERSION \
            or not isinstance(data.get("tracks"), dict):
        raise IndexCorrupt(f"{path}: not a schema_version {SCHEMA_VERSION} trackspec index; "
                          "delete it and run `trackspec build` to rebuild it")
    return data


def dump_index(index: dict[str, Any]) -> bytes:
    return (json.dumps(index, sort_keys=True, indent=2, ensure_ascii=False) + "\n").encode("utf-8")


def write_index(path: Path, index: dict[str, Any], staging: Path | None = None) -> bool:
    """Write the index if its content changed; return whether it was written."""
    data = dump_index(index)
    try:
        if path.read_bytes() == data:
            return False
    except OSError:
        pass
    atomic_write_bytes(path, data, staging)
    return True
