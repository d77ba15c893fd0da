"""Which licence a model's weights carry, and the gate that keeps non-commercial weights
out of a commercial build.

Where a licence comes from, first match wins:

1. A local model directory's ``trackspec-model.toml`` with ``license = "<SPDX id>"``
   (``declare_license`` writes one). It is the way to state a licence the model card does
   not, or to correct it.
2. A local directory's model card: the ``license:`` line of ``README.md``'s YAML front
   matter (hub cards say e.g. ``license: cc-by-nc-4.0``).
3. For a hub id: the table below (every ``facebook/musicgen-*`` checkpoint is released
   under CC-BY-NC 4.0), else the model card in the local Hugging Face cache, if any
   (nothing is downloaded).
4. ``"unknown"``, which the gate treats as not cleared for commercial use.

Nothing here imports torch or transformers.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from importer.errors import ModelError
from importer.grammar import is_licence

UNKNOWN = "unknown"
#: The file a local model directory may declare its licence in.
DECLARATION_FILE = "trackspec-model.toml"

_NC = "CC-BY-NC-4.0"
#: Known hub checkpoints (lowercase ids). Meta released all MusicGen weights under CC-BY-NC 4.0.
KNOWN_LICENSES: dict[str, str] = {
    f"facebook/musicgen-{name}": _NC
    for name in (
        "small",
        "medium",
        "large",
        "melody",
        "melody-large",
        "stereo-small",
        "stereo-medium",
        "stereo-large",
        "stereo-melody",
        "stereo-melody-large",
    )
}
#: Any other checkpoint under this prefix is Meta's too, under the same licence.
_KNOWN_PREFIXES = {"facebook/musicgen-": _NC}

#: Licences that allow commercial use of what the model makes. Deliberately an allow-list:
#: anything else (NC, ND, OpenRAIL variants, "other", "unknown") needs the explicit override.
_COMMERCIAL_IDS = (
    "MIT",
    "Apache-2.0",
    "BSD-2-Clause",
    "BSD-3-Clause",
    "ISC",
    "Unlicense",
    "CC0-1.0",
    "CC-BY-3.0",
    "CC-BY-4.0",
    "CC-BY-SA-3.0",
    "CC-BY-SA-4.0",
)
#: Canonical spelling (SPDX) of the ids model cards write in lowercase.
_SPDX = {
    spdx.lower(): spdx
    for spdx in (
        *_COMMERCIAL_IDS,
        "CC-BY-NC-2.0",
        "CC-BY-NC-3.0",
        "CC-BY-NC-4.0",
        "CC-BY-NC-SA-3.0",
        "CC-BY-NC-SA-4.0",
        "CC-BY-NC-ND-3.0",
        "CC-BY-NC-ND-4.0",
        "CC-BY-ND-4.0",
        "GPL-3.0",
        "LGPL-3.0",
    )
}
COMMERCIAL_OK = frozenset(s.lower() for s in _COMMERCIAL_IDS)

_FRONT_MATTER_LICENSE = re.compile(r"^license:\s*(.*?)\s*$", re.IGNORECASE)


def normalize(license_id: str) -> str:
    """SPDX spelling for the ids we know (``cc-by-nc-4.0`` -> ``CC-BY-NC-4.0``); others
    stripped but kept as written; an empty id is ``unknown``."""
    text = license_id.strip().strip("\"'").strip()
    if not text:
        return UNKNOWN
    return _SPDX.get(text.lower(), text)


def license_of(model_source: str, revision: str | None = None) -> str:
    """The licence of ``model_source`` (``ModelRef.source``: a hub id or a local directory;
    ``revision``, for a hub id, picks which cached model card to read)."""
    directory = Path(model_source).expanduser()
    if directory.is_dir():
        return _declared(directory) or _card_license(directory / "README.md") or UNKNOWN
    key = model_source.strip().lower()
    if key in KNOWN_LICENSES:
        return KNOWN_LICENSES[key]
    for prefix, license_id in _KNOWN_PREFIXES.items():
        if key.startswith(prefix):
            return license_id
    return _cached_card_license(model_source, revision) or UNKNOWN


def is_commercial(license_id: str) -> bool:
    """Whether audio made with weights under ``license_id`` may ship in a commercial game."""
    return normalize(license_id).lower() in COMMERCIAL_OK


def check_commercial(model: str, license_id: str, allow_noncommercial: bool) -> None:
    """The ``commercial = true`` gate: refuse weights not cleared for commercial use.

    Raises ``ModelError`` (a track failure, like a model that does not load) unless the
    licence allows commercial use or ``allow_noncommercial`` is set.
    """
    if allow_noncommercial or is_commercial(license_id):
        return
    if license_id == UNKNOWN:
        why = (
            f'its licence is unknown (declare it with license = "..." in {DECLARATION_FILE} '
            "in the model directory, or a license: line in its README.md)"
        )
    else:
        why = f"its licence is {license_id}, which does not allow commercial use"
    raise ModelError(
        f"model '{model}' cannot be used in a commercial build: {why}. trackspec.toml sets "
        "commercial = true; set allow_noncommercial_models = true there to build anyway"
    )


def declare_license(directory: Path, license_id: str) -> Path:
    """Write ``directory/trackspec-model.toml`` declaring ``license_id``; returns its path.

    The file is part of the model directory, so it enters the local model's digest.
    """
    path = Path(directory) / DECLARATION_FILE
    value = normalize(license_id).replace("\\", "\\\\").replace('"', '\\"')
    path.write_text(f'# The licence of these weights, read by trackspec\nlicense = "{value}"\n', encoding="utf-8")
    return path


def _declared(directory: Path) -> str | None:
    path = directory / DECLARATION_FILE
    from .fsutil import read_regular
    from .grammar import is_licence

    try:
        data = tomllib.loads(read_regular(path, 64 << 10).decode("utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, RecursionError) as exc:  # ValueError: TOML or UTF-8
        raise ModelError(f"{path}: cannot read the model's licence declaration: {exc}") from None
    value = data.get("license")
    if not isinstance(value, str) or not value.strip() or not is_licence(normalize(value)):
        raise ModelError(
            f'{path}: expected license = "<SPDX id>", e.g. license = "CC-BY-4.0" (letters, digits, . + and -)'
        )
    return normalize(value)


def _card_license(readme: Path) -> str | None:
    """``license:`` from a model card's YAML front matter (between the first two ``---``)."""
    from .fsutil import read_regular

    try:
        text = read_regular(readme, 4 << 20).decode("utf-8", errors="replace")
    except OSError:
        return None
    lines = text.splitlines()
    if not lines or lines[0].strip() != "---":
        return None
    for line in lines[1:]:
        if line.strip() == "---":
            break
        if match := _FRONT_MATTER_LICENSE.match(line):
            value = normalize(match.group(1)) if match.group(1) else None
            return value if value and is_licence(value) else None
    return None


def _cached_card_license(repo_id: str, revision: str | None) -> str | None:
    """The card of a hub model already in the Hugging Face cache; no network access."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # core install: no hub client
        return None
    try:
        found = try_to_load_from_cache(repo_id, "README.md", revision=revision)
    except Exception:  # an id the hub client rejects is just not in the cache
        return None
    return _card_license(Path(found)) if isinstance(found, str) else None
