"""``trackspec init`` and ``trackspec new``: commented project and spec files, with tomlkit.

The files document every setting in place, with its default, so a new user can read
them instead of the manual. The comments come from the same field tables the parser
validates with, so they cannot drift from the code.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import tomlkit

from .config import CONFIG_NAME, PROJECT_FIELDS, ProjectConfig
from .fields import GENERATION_FIELDS, OUTPUT_FIELDS, TOP_FIELDS
from .fsutil import atomic_write_bytes
from .spec import SPEC_SUFFIX

#: Folder ``init`` makes for specs and ``new`` writes to when the specs are searched repo-wide.
SPEC_FOLDER = "track_specs"


@dataclass(frozen=True)
class EnginePreset:
    """What ``trackspec init --engine NAME`` sets: where the files go and in which formats."""

    assets: str
    formats: tuple[str, ...]
    note: str


#: ``--engine`` presets. Unity and Unreal re-encode every audio file they import, so they get
#: lossless files (no second lossy pass); Godot plays the OGG as it is (streamed).
ENGINE_PRESETS: dict[str, EnginePreset] = {
    "godot": EnginePreset(
        "assets/music", ("ogg",), "Godot 4: OGG streams as it is; trackspec writes each file's .import (loop, bpm)"
    ),
    "unity": EnginePreset(
        "Assets/Music",
        ("wav",),
        "Unity re-encodes what it imports: lossless WAV in, Vorbis out "
        "(build_hooks/unity/Editor/TrackspecAudioPostprocessor.cs); flac works too",
    ),
    "unreal": EnginePreset(
        "Audio/Music",
        ("wav",),
        "Unreal imports source WAV files into SoundWave assets "
        "(build_hooks/unreal/trackspec_import.py); keep them outside Content/",
    ),
}


def project_config_text(engine: str | None = None) -> str:
    """The commented ``trackspec.toml`` ``init`` writes; ``engine`` applies an ``ENGINE_PRESETS`` entry."""
    preset = ENGINE_PRESETS[engine] if engine else None
    doc = tomlkit.document()
    doc.add(tomlkit.comment("trackspec project file: marks the game repo root. Paths are relative to it."))
    doc.add(tomlkit.comment("Every setting below shows its default; `trackspec build --help` explains the build."))
    if preset is not None:
        doc.add(tomlkit.comment(f"Preset --engine {engine}: {preset.note}."))
    doc.add(tomlkit.nl())
    doc.add("specs", tomlkit.array('["."]'))
    doc["specs"].comment(
        "the whole repo: a spec may lie anywhere; .gitignore'd folders, the assets folder "
        "and hidden folders are skipped"
    )
    for key in (
        "assets",
        "index",
        "device",
        "max_duration",
        "batch_size",
        "encode_workers",
        "commercial",
        "allow_noncommercial_models",
    ):
        value = PROJECT_FIELDS[key].default
        if preset is not None and key == "assets":
            value = preset.assets
        elif preset is not None and key == "index":
            value = f"{preset.assets}/index.json"
        item = tomlkit.item(value)
        item.comment(PROJECT_FIELDS[key].doc)
        doc.add(key, item)
    doc.add(
        tomlkit.comment(
            f'cache = "~/.cache/trackspec"   # {PROJECT_FIELDS["cache"].doc}; TRACKSPEC_CACHE_DIR overrides'
        )
    )
    doc.add(tomlkit.nl())

    defaults = tomlkit.table()
    defaults.add(tomlkit.comment("Defaults for every spec; a spec's own value wins."))
    defaults.add("genre", "synthwave")
    generation = tomlkit.table()
    for key in ("model", "temperature", "top_k", "top_p", "guidance_scale"):
        generation.add(key, GENERATION_FIELDS[key].default)
        generation[key].comment(GENERATION_FIELDS[key].doc)
    output = tomlkit.table()
    formats = preset.formats if preset is not None else ("ogg", "mp3")
    output.add("formats", tomlkit.array("[" + ", ".join(f'"{f}"' for f in formats) + "]"))
    for key in ("sample_rate", "ogg_quality", "mp3_quality", "loudness_profile", "true_peak"):
        output.add(key, OUTPUT_FIELDS[key].default)
        output[key].comment(OUTPUT_FIELDS[key].doc)
    defaults.add("generation", generation)
    defaults.add("output", output)
    doc.add("defaults", defaults)
    return tomlkit.dumps(doc)


def write_project_config(root: Path, engine: str | None = None) -> Path:
    """Write ``root/trackspec.toml`` (``engine``: a preset); refuse to overwrite an existing one."""
    path = root / CONFIG_NAME
    if path.exists():
        raise FileExistsError(f"{path} already exists; edit it, or delete it to start over")
    root.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, project_config_text(engine).encode("utf-8"))
    (root / SPEC_FOLDER).mkdir(exist_ok=True)
    return path


def default_spec_folder(config: ProjectConfig) -> Path:
    """Where ``new`` writes: the first spec folder, or its ``track_specs/`` when that is the repo root."""
    first = config.spec_dirs[0]
    return first / SPEC_FOLDER if first == config.root else first


def spec_text(prompt: str, duration: float, genre: str | None) -> str:
    """A new spec: the required fields set, every optional one shown commented out.

    Optional settings stay comments so the project's ``[defaults]`` keep applying.
    """
    doc = tomlkit.document()
    doc.add(tomlkit.comment("A trackspec: the source of one music track. `trackspec plan` shows what a build"))
    doc.add(tomlkit.comment("would do with it; `trackspec build` makes the files. The name is the file name."))
    doc.add(tomlkit.nl())
    doc.add(tomlkit.comment("What MusicGen should make: style, mood, key, tempo, instruments."))
    doc.add("prompt", prompt)
    doc.add("duration", duration)
    doc["duration"].comment(TOP_FIELDS["duration"].doc)
    if genre is not None:
        doc.add("genre", genre)
        doc["genre"].comment(TOP_FIELDS["genre"].doc)
    doc.add(tomlkit.comment("seed = 1234                  # fix the take; default: derived from this spec"))
    doc.add(tomlkit.comment('description = "..."          # for people; part of no key'))
    doc.add(tomlkit.nl())
    for table, fields, keys in (
        ("generation", GENERATION_FIELDS, ("model", "temperature", "top_k", "top_p")),
        (
            "output",
            OUTPUT_FIELDS,
            ("formats", "ogg_quality", "mp3_quality", "loudness_profile", "true_peak", "loop", "loop_bars"),
        ),
    ):
        doc.add(tomlkit.comment(f"[{table}]   (uncomment to override the project's defaults)"))
        for key in keys:
            value = tomlkit.item(fields[key].default).as_string()
            doc.add(tomlkit.comment(f"{key} = {value}".ljust(28) + f" # {fields[key].doc}"))
        doc.add(tomlkit.nl())
    meta = tomlkit.table()
    meta.add(tomlkit.comment("free data copied into the asset index (part of no key), e.g."))
    meta.add(tomlkit.comment("bpm = 90"))
    meta.add(tomlkit.comment('key = "D minor"'))
    meta.add(tomlkit.comment('tags = ["calm", "exploration"]'))
    doc.add("meta", meta)
    return tomlkit.dumps(doc)


def write_spec(
    config: ProjectConfig, name: str, prompt: str, duration: float, genre: str | None, folder: Path | None = None
) -> Path:
    """Write ``<folder>/<name>.trackspec`` (default: ``default_spec_folder``), checked by the parser.

    Refuses to overwrite, and removes the file again if the parser rejects it, so `new`
    never leaves a spec that `build` would fail on.
    """
    from .spec import parse_spec

    folder = folder or default_spec_folder(config)
    path = folder / f"{name}{SPEC_SUFFIX}"
    folder.mkdir(parents=True, exist_ok=True)
    if path.exists():
        raise FileExistsError(f"{path} already exists; edit it, or pick another name")
    atomic_write_bytes(path, spec_text(prompt, duration, genre).encode("utf-8"))
    try:
        parse_spec(path, config.spec_defaults, config.max_duration)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return path
