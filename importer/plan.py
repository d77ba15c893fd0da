"""Decide, per track, what a build must do and why. Pure and fast: no audio, no torch.

Inputs are the parsed specs with their keys, the asset index, the cache (presence only)
and the stat state (digests of outputs without reading unchanged files). Every action
carries human reasons ("prompt changed", "output modified", ...).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Literal

from .cache import LocalCache
from .config import ProjectConfig
from .errors import Location, SpecError, TrackspecError
from .keys import TrackKeys, changed_fields, track_keys
from .licences import check_commercial, license_of
from .model_ref import ModelRef, resolve_model
from .output_settings import with_declared
from .spec import TrackSpec, discover_specs, parse_spec
from .state import State
from .tomlsource import read_toml

Action = Literal["fresh", "index", "restore", "encode", "generate"]


@dataclass
class LoadedTrack:
    """A spec that parsed, with its resolved model and keys."""

    spec: TrackSpec
    model: ModelRef
    keys: TrackKeys
    #: The licence of the model's weights (``licences.license_of``).
    license: str = "unknown"


@dataclass
class SpecFailure:
    """A spec that cannot be built; its last good asset and index entry are kept."""

    path: Path
    message: str


@dataclass
class TrackPlan:
    track: LoadedTrack
    action: Action
    reasons: list[str] = field(default_factory=list)
    #: An index entry whose published files already are this render (a renamed track, a
    #: genre change): restored from those files when the cache no longer has the render.
    donor: dict[str, Any] | None = None

    @property
    def name(self) -> str:
        return self.track.spec.name


@dataclass
class Removal:
    name: str
    entry: dict[str, Any]
    reason: str


@dataclass
class Plan:
    tracks: list[TrackPlan]
    failures: list[SpecFailure]
    removals: list[Removal]
    #: The asset index the plan was made against (the executor updates it in place).
    index: dict[str, Any] = field(default_factory=dict)


def rel(config: ProjectConfig, path: Path) -> str:
    """A path relative to the repo root, with forward slashes (as the index stores it).

    Paths the build makes are already absolute under the (resolved) root: those are
    taken as they are, since resolving every one costs an lstat per path component.
    """
    if path.is_absolute() and ".." not in path.parts:
        try:
            return path.relative_to(config.root).as_posix()
        except ValueError:
            return path.as_posix()
    try:
        return path.resolve().relative_to(config.root).as_posix()
    except ValueError:
        return path.resolve().as_posix()


def output_paths(config: ProjectConfig, spec: TrackSpec) -> dict[str, Path]:
    return {fmt: config.assets_dir / spec.genre / f"{spec.name}.{fmt}" for fmt in spec.formats}


class ParsedSpecs:
    """Parsed specs kept between planning cycles (the daemon's), keyed by file stat.

    A spec is parsed again when its stat or the project config changed. Like git's racy
    index entries, a file modified in the last second is not remembered: a second write
    within the file system's timestamp granularity could keep size and mtime.
    """

    RACY_NS = 1_000_000_000

    def __init__(self) -> None:
        self._entries: dict[Path, tuple[tuple, TrackSpec | TrackspecError]] = {}

    def parse(self, path: Path, config: ProjectConfig) -> TrackSpec:
        try:
            st = path.stat()
            signature: tuple | None = (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, config.digest)
        except OSError:
            signature = None
        known = self._entries.get(path)
        if signature is not None and known is not None and known[0] == signature:
            result = known[1]
        else:
            try:
                result = parse_spec(path, config.spec_defaults, config.max_duration)
            except TrackspecError as exc:
                result = exc
            if signature is not None and time.time_ns() - signature[1] >= self.RACY_NS:
                self._entries[path] = (signature, result)
            else:
                self._entries.pop(path, None)
        if isinstance(result, TrackspecError):
            raise result
        return result

    def keep_only(self, paths: set[Path]) -> None:
        for path in [p for p in self._entries if p not in paths]:
            del self._entries[path]


def spec_paths(config: ProjectConfig, walked: list[Path] | None = None) -> Iterator[Path]:
    """The project's spec files, as every command finds them (``walked``: see ``discover_specs``)."""
    skip = [config.assets_dir, config.state_dir, config.cache_dir]
    return discover_specs(config.root, config.spec_dirs, skip, walked)


def check_inside_repo(config: ProjectConfig, path: Path) -> None:
    """A spec must be a file of the repo: one linked from outside would make the build
    depend on files the repo does not hold (and that others cannot check out). Spec folders
    are resolved inside the repo and not walked through links, so only the file can be one."""
    if not path.is_symlink():
        return
    target = path.resolve()
    if config.root not in target.parents:
        raise SpecError(Location(path), f"links to {target}, outside the game repo ({config.root}); "
                        "copy the spec into the repo")


def load_tracks(config: ProjectConfig, state: State, model_override: str | None = None,
                override_base: Path | None = None,
                parsed: ParsedSpecs | None = None) -> tuple[list[LoadedTrack], list[SpecFailure]]:
    """Parse every spec, resolve its model and compute keys; one bad spec never stops the rest."""
    loaded: list[LoadedTrack] = []
    failures: list[SpecFailure] = []
    models: dict[tuple[str, str, Path], ModelRef | Exception] = {}
    licenses: dict[str, str | Exception] = {}
    seen: set[Path] = set()
    for path in spec_paths(config):
        seen.add(path)
        try:
            check_inside_repo(config, path)
            if parsed is not None:
                spec = parsed.parse(path, config)
            else:
                spec = parse_spec(path, config.spec_defaults, config.max_duration)
        except TrackspecError as exc:
            failures.append(SpecFailure(path, str(exc)))
            continue
        model_name = model_override or spec.model
        base = override_base if model_override and override_base else config.root
        cache_key = (model_name, spec.revision, base)
        if cache_key not in models:
            try:
                models[cache_key] = resolve_model(model_name, spec.revision, base, state)
            except OSError as exc:
                models[cache_key] = exc
        model = models[cache_key]
        if isinstance(model, Exception):
            where = "--model/TRACKSPEC_MODEL" if model_override else f"{path}: generation.model"
            failures.append(SpecFailure(path, f"{where}: {model}"))
            continue
        if model.source not in licenses:
            try:
                licenses[model.source] = license_of(model.source, model.revision)
            except TrackspecError as exc:
                licenses[model.source] = exc
        license = licenses[model.source]
        try:
            if isinstance(license, Exception):
                raise license
            if config.commercial:
                check_commercial(model_name, license, config.allow_noncommercial_models)
        except TrackspecError as exc:
            failures.append(SpecFailure(path, f"{path}: generation.model: {exc}"))
            continue
        loaded.append(LoadedTrack(spec, model, track_keys(spec, model), license))
    if parsed is not None:
        parsed.keep_only(seen)
    return _without_duplicates(loaded, failures, config)


def _without_duplicates(loaded: list[LoadedTrack], failures: list[SpecFailure],
                        config: ProjectConfig) -> tuple[list[LoadedTrack], list[SpecFailure]]:
    """Two specs claiming one name: both fail, each error naming both files."""
    by_name: dict[str, list[LoadedTrack]] = {}
    for track in loaded:
        by_name.setdefault(track.spec.name, []).append(track)
    kept = []
    for name, tracks in by_name.items():
        if len(tracks) == 1:
            kept.append(tracks[0])
            continue
        files = " and ".join(rel(config, t.spec.path) for t in tracks)
        for track in tracks:
            where = read_toml(track.spec.path, SpecError).locate("name")
            if not where.line:  # the name comes from the file name
                where = Location(track.spec.path, 1, 1)
            failures.append(SpecFailure(track.spec.path, str(SpecError(
                where, f"track name '{name}' is claimed by {files}; give each spec its own name", "name"))))
    return kept, failures


def plan_build(config: ProjectConfig, loaded: list[LoadedTrack], failures: list[SpecFailure],
               index: dict[str, Any], cache: LocalCache, state: State) -> Plan:
    tracks = [_plan_track(config, track, index["tracks"], cache, state) for track in loaded]
    claimed = {t.spec.name for t in loaded}
    failing_specs = {rel(config, f.path) for f in failures}
    removals = []
    for name, entry in sorted(index["tracks"].items()):
        if name in claimed or entry.get("spec") in failing_specs:
            continue
        spec_path = config.root / entry.get("spec", "")
        reason = "spec renamed the track" if spec_path.is_file() else "spec deleted"
        removals.append(Removal(name, entry, reason))
    return Plan(tracks, failures, removals, index)


def _plan_track(config: ProjectConfig, track: LoadedTrack, entries: dict[str, dict[str, Any]],
                cache: LocalCache, state: State) -> TrackPlan:
    entry = entries.get(track.spec.name)
    reasons = _stale_reasons(config, track, entry, state, cache)
    if reasons is None:
        assert entry is not None
        if entry != index_entry(config, track, entry["files"], entry):
            return TrackPlan(track, "index", ["index entry changed (meta, spec path or model name)"])
        return TrackPlan(track, "fresh")
    if cache.has("render", track.keys.render):
        return TrackPlan(track, "restore", reasons)
    donor = _published_render(config, track.keys.render, entries, state)
    if donor is not None:
        return TrackPlan(track, "restore", reasons, donor)
    if cache.has("raw", track.keys.generation):
        return TrackPlan(track, "encode", reasons)
    return TrackPlan(track, "generate", reasons)


def _published_render(config: ProjectConfig, render_key: str, entries: dict[str, dict[str, Any]],
                      state: State) -> dict[str, Any] | None:
    """An index entry of this render whose files are all on disk unchanged, if any."""
    for entry in entries.values():
        if entry.get("keys", {}).get("render") == render_key and all(k in entry for k in AUDIO_FACTS) \
                and all(state.digest(config.root / f["path"]) == f["sha256"] for f in entry["files"].values()):
            return entry
    return None


def _previous_inputs(name: str, entry: dict[str, Any], kind: str, state: State,
                     cache: LocalCache) -> dict[str, Any] | None:
    """Key inputs of the last build of a track: from the state, else from its cache entry."""
    remembered = state.tracks.get(name, {}).get(f"{kind}_inputs")
    if remembered:
        return remembered
    cache_kind = "raw" if kind == "generation" else "render"
    return cache.peek_info(cache_kind, entry.get("keys", {}).get(kind, "")).get("inputs")


def _stale_reasons(config: ProjectConfig, track: LoadedTrack, entry: dict[str, Any] | None,
                   state: State, cache: LocalCache) -> list[str] | None:
    """Why the published files are not this track's current render; ``None`` if they are."""
    if entry is None:
        return ["new"]
    if any(k not in entry for k in AUDIO_FACTS):
        return ["index entry incomplete"]
    keys = track.keys
    if entry.get("keys", {}).get("render") != keys.render:
        name = track.spec.name
        if entry.get("keys", {}).get("generation") != keys.generation:
            previous = _previous_inputs(name, entry, "generation", state, cache)
            changed = changed_fields(previous, keys.generation_inputs)
            if track.spec.seed is None and len(changed) > 1:
                changed = [c for c in changed if c != "seed"]  # the derived seed follows the rest
        else:
            changed = changed_fields(_previous_inputs(name, entry, "render", state, cache), keys.render_inputs)
        return [f"{c} changed" for c in changed] or ["settings changed"]
    expected = {fmt: rel(config, p) for fmt, p in output_paths(config, track.spec).items()}
    files = entry.get("files", {})
    if {fmt: f.get("path") for fmt, f in files.items()} != expected:
        return ["output path changed (genre or assets folder)"]
    reasons = []
    for fmt, info in sorted(files.items()):
        digest = state.digest(config.root / info["path"])
        if digest is None:
            reasons.append(f"output missing ({fmt})")
        elif digest != info.get("sha256"):
            reasons.append(f"output modified ({fmt})")
    return reasons or None


#: What the index takes from a render: the audio, its loop points and its measured loudness.
AUDIO_FACTS = ("sample_rate", "channels", "samples", "duration", "loop", "loudness", "tempo")


def model_name(config: ProjectConfig, model: ModelRef) -> str:
    """How the index names a model: a local folder relative to the repo root, else its hub id."""
    return rel(config, Path(model.source)) if model.is_local else model.source


def index_entry(config: ProjectConfig, track: LoadedTrack, files: dict[str, Any],
                audio_facts: dict[str, Any]) -> dict[str, Any]:
    """The index entry of a track: spec facts, its ``files`` and the audio facts of those files."""
    model = track.model
    return {
        "spec": rel(config, track.spec.path),
        "genre": track.spec.genre,
        "files": files,
        "model": model_name(config, model),
        "seed": track.keys.seed,
        "license": track.license,
        "keys": {"generation": track.keys.generation, "render": track.keys.render},
        "meta": track.spec.meta,
        **{k: audio_facts[k] for k in AUDIO_FACTS},
        "tempo": with_declared(audio_facts["tempo"], track.spec.meta),
    }
