"""Pin an auditioned take: write its seed into the spec, and change nothing else.

The spec is the composer's file, comments and layout included, so it is edited with
tomlkit (which round-trips TOML byte for byte) and only the ``seed`` value changes: an
existing ``seed = ...`` line keeps its indentation and trailing comment, a missing one
is added after the spec's top-level keys. The file is replaced atomically.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from .audition import find_track, load_record
from .config import ProjectConfig
from .errors import TrackspecError
from .fsutil import atomic_write_bytes


@dataclass
class Pinned:
    name: str
    take: int
    seed: int
    spec: Path
    #: The seed the spec had before (``None``: it had none, the seed was derived).
    previous_seed: int | None
    #: True when the take was a shorter preview: the build generates the full length.
    preview: bool
    #: True when the next build restores exactly the auditioned files (no generation).
    cached: bool


def pin_take(
    config: ProjectConfig, name: str, take: int, model_override: str | None = None, override_base: Path | None = None
) -> Pinned:
    record = load_record(config, name)
    if record is None:
        raise TrackspecError(f"track '{name}' has no audition to pin from; run `trackspec audition {name}` first")
    chosen = next((t for t in record["takes"] if t.get("take") == take), None)
    if chosen is None:
        known = ", ".join(str(t.get("take")) for t in record["takes"])
        raise TrackspecError(f"track '{name}' has no take {take}; its last audition has takes {known}")
    if chosen.get("error"):
        raise TrackspecError(f"take {take} of '{name}' failed in its audition ({chosen['error']}); pin another")
    track = find_track(config, name, model_override, override_base)
    seed = int(chosen["seed"])
    write_seed(track.spec.path, seed)
    pinned = find_track(config, name, model_override, override_base)
    return Pinned(
        name,
        take,
        seed,
        track.spec.path,
        track.spec.seed,
        bool(chosen.get("preview")),
        cached=pinned.keys.render == chosen["keys"]["render"],
    )


def write_seed(path: Path, seed: int) -> None:
    """Set the spec's top-level ``seed``, keeping every other byte of the file."""
    import tomlkit
    from tomlkit.items import Integer, Item

    raw = path.read_bytes()
    bom = b"\xef\xbb\xbf" if raw.startswith(b"\xef\xbb\xbf") else b""
    document = tomlkit.parse(raw[len(bom) :].decode("utf-8"))
    old = document.item("seed") if "seed" in document else None
    # an existing value keeps its trivia (comment, whitespace)
    document["seed"] = Integer(seed, old.trivia, str(seed)) if isinstance(old, Item) else seed
    target = path.resolve()  # a symlinked spec: edit the file, keep the link
    mode = os.stat(target).st_mode & 0o7777
    atomic_write_bytes(target, bom + tomlkit.dumps(document).encode("utf-8"))
    os.chmod(target, mode)
