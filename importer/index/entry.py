"""The shape of an index entry, and where a track's files are published.

The one place that knows what an entry holds: spec facts (spec path, genre, model,
seed, licence, keys, ``[meta]``), the published ``files`` and the audio facts of the
render (``AUDIO_FACTS``). ``plan`` compares entries made here with the index on disk;
the build writes them.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..config import ProjectConfig, rel
from ..output_settings import with_declared

if TYPE_CHECKING:
    from ..model_ref import ModelRef
    from ..spec import TrackSpec
    from ..tracks import LoadedTrack

#: What the index takes from a render: the audio, its loop points, its measured loudness and tempo.
AUDIO_FACTS = ("sample_rate", "channels", "samples", "duration", "loop", "loudness", "tempo")


def model_name(config: ProjectConfig, model: ModelRef) -> str:
    """How the index names a model: a local folder relative to the repo root, else its hub id."""
    return rel(config, Path(model.source)) if model.is_local else model.source


def index_entry(
    config: ProjectConfig, track: LoadedTrack, files: dict[str, Any], audio_facts: dict[str, Any]
) -> dict[str, Any]:
    """The index entry of a track: spec facts, its ``files`` and the audio facts of those files."""
    model = track.model
    return {
        "spec": rel(config, track.spec.path),
        "genre": track.spec.genre,
        "files": files,
        "model": model_name(config, model),
        "seed": track.keys.seed,
        "license": track.license,
        "ogg_quality": track.spec.ogg_quality,
        "keys": {"generation": track.keys.generation, "render": track.keys.render},
        "meta": track.spec.meta,
        **{k: audio_facts[k] for k in AUDIO_FACTS},
        "tempo": with_declared(audio_facts["tempo"], track.spec.meta),
    }


def output_paths(config: ProjectConfig, spec: TrackSpec) -> dict[str, Path]:
    """Where a track's files are published: ``<assets>/<genre>/<name>.<format>``."""
    return {fmt: config.assets_dir / spec.genre / f"{spec.name}.{fmt}" for fmt in spec.formats}


def listed_paths(index: dict[str, Any]) -> set[str]:
    """Every file path the index lists."""
    return {
        f["path"]
        for t in index["tracks"].values()
        for f in t.get("files", {}).values()
        if isinstance(f, dict) and isinstance(f.get("path"), str)
    }
