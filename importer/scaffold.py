"""``trackspec init``: write a commented ``trackspec.toml`` with tomlkit.

The file documents every project setting in place, with its default, so a new user can
read it instead of the manual. The comments come from the same field tables the parser
validates with, so they cannot drift from the code.
"""

from __future__ import annotations

from pathlib import Path

import tomlkit

from .config import CONFIG_NAME, PROJECT_FIELDS
from .fields import GENERATION_FIELDS, OUTPUT_FIELDS
from .fsutil import atomic_write_bytes


def project_config_text() -> str:
    doc = tomlkit.document()
    doc.add(tomlkit.comment("trackspec project file: marks the game repo root. Paths are relative to it."))
    doc.add(tomlkit.comment("Every setting below shows its default; `trackspec build --help` explains the build."))
    doc.add(tomlkit.nl())
    doc.add("specs", tomlkit.array('["track_specs"]'))
    doc["specs"].comment(PROJECT_FIELDS["specs"].doc)
    for key in ("assets", "index", "device", "max_duration", "batch_size"):
        doc.add(key, PROJECT_FIELDS[key].default)
        doc[key].comment(PROJECT_FIELDS[key].doc)
    doc.add(tomlkit.comment(f'cache = "~/.cache/trackspec"   # {PROJECT_FIELDS["cache"].doc}; '
                            "TRACKSPEC_CACHE_DIR overrides"))
    doc.add(tomlkit.nl())

    defaults = tomlkit.table()
    defaults.add(tomlkit.comment("Defaults for every spec; a spec's own value wins."))
    defaults.add("genre", "synthwave")
    generation = tomlkit.table()
    for key in ("model", "temperature", "top_k", "top_p", "guidance_scale"):
        generation.add(key, GENERATION_FIELDS[key].default)
        generation[key].comment(GENERATION_FIELDS[key].doc)
    output = tomlkit.table()
    output.add("formats", tomlkit.array('["ogg", "mp3"]'))
    for key in ("sample_rate", "ogg_quality", "mp3_quality"):
        output.add(key, OUTPUT_FIELDS[key].default)
        output[key].comment(OUTPUT_FIELDS[key].doc)
    defaults.add("generation", generation)
    defaults.add("output", output)
    doc.add("defaults", defaults)
    return tomlkit.dumps(doc)


def write_project_config(root: Path) -> Path:
    """Write ``root/trackspec.toml``; refuse to overwrite an existing one."""
    path = root / CONFIG_NAME
    if path.exists():
        raise FileExistsError(f"{path} already exists; edit it, or delete it to start over")
    root.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, project_config_text().encode("utf-8"))
    (root / "track_specs").mkdir(exist_ok=True)
    return path
