"""Spec loading: find the project's specs, parse them, resolve their models, compute keys.

What comes out is a list of ``LoadedTrack`` (ready to plan) and a list of
``SpecFailure`` (a spec that cannot be built, with its error): one bad spec never stops
the rest. Deciding what to do with them is ``plan``'s job.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .config import ProjectConfig, rel
from .errors import Location, SpecError, TrackspecError
from .generate.base import MELODY_MODEL_TYPE
from .keys import TrackKeys, continuation_inputs, melody_inputs, track_keys
from .licences import check_commercial, license_of
from .model_ref import ModelRef, model_type, resolve_model
from .spec import TrackSpec, discover_specs, parse_spec
from .state import State
from .tags import TrackTags
from .tomlsource import read_toml


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


def tags_for(track: LoadedTrack, loop: dict[str, Any] | None = None) -> TrackTags:
    """What the files of ``track`` say about it; ``loop`` is the index's loop entry."""
    from . import __version__
    from .model_ref import model_label

    return TrackTags(
        title=track.spec.name,
        render_key=track.keys.render,
        model=model_label(track.model),
        seed=track.keys.seed,
        version=__version__,
        license=track.license,
        loop_start=loop["start"] if loop else None,
        loop_length=loop["length"] if loop else None,
    )


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
        raise SpecError(
            Location(path), f"links to {target}, outside the game repo ({config.root}); copy the spec into the repo"
        )


@dataclass
class SpecLoader:
    """Loads specs one by one, resolving each model and licence once per loader."""

    config: ProjectConfig
    state: State
    model_override: str | None = None
    override_base: Path | None = None
    parsed: ParsedSpecs | None = None
    _models: dict[tuple[str, str, Path], ModelRef | Exception] = field(default_factory=dict)
    _licenses: dict[str, str | Exception] = field(default_factory=dict)
    _model_types: dict[tuple[str, str | None], str | None] = field(default_factory=dict)

    def load(self, path: Path) -> LoadedTrack | SpecFailure:
        config = self.config
        try:
            check_inside_repo(config, path)
            if self.parsed is not None:
                spec = self.parsed.parse(path, config)
            else:
                spec = parse_spec(path, config.spec_defaults, config.max_duration)
        except TrackspecError as exc:
            return SpecFailure(path, str(exc))
        model_name = self.model_override or spec.model
        base = self.override_base if self.model_override and self.override_base else config.root
        cache_key = (model_name, spec.revision, base)
        if cache_key not in self._models:
            try:
                self._models[cache_key] = resolve_model(model_name, spec.revision, base, self.state)
            except OSError as exc:
                self._models[cache_key] = exc
        model = self._models[cache_key]
        if isinstance(model, Exception):
            where = "--model/TRACKSPEC_MODEL" if self.model_override else f"{path}: generation.model"
            return SpecFailure(path, f"{where}: {model}")
        if model.source not in self._licenses:
            try:
                self._licenses[model.source] = license_of(model.source, model.revision)
            except TrackspecError as exc:
                self._licenses[model.source] = exc
        license = self._licenses[model.source]
        try:
            if isinstance(license, Exception):
                raise license
            if config.commercial:
                check_commercial(model_name, license, config.allow_noncommercial_models)
        except TrackspecError as exc:
            return SpecFailure(path, f"{path}: generation.model: {exc}")
        try:
            continuation = self._continuation(spec)
            melody = self._melody(spec, model)
        except TrackspecError as exc:
            return SpecFailure(path, str(exc))
        return LoadedTrack(spec, model, track_keys(spec, model, continuation, melody), license)

    def _melody(self, spec: TrackSpec, model: ModelRef) -> dict[str, Any] | None:
        """The ``melody`` key input of a spec: the file's content digest. A model known (from
        its config.json) to take no melody is the spec's error, before anything generates."""
        if spec.melody is None:
            return None
        where = read_toml(spec.path, SpecError).locate("generation", "melody")
        cached = (model.source, model.revision)
        if cached not in self._model_types:
            self._model_types[cached] = model_type(model)
        kind = self._model_types[cached]
        if kind is not None and kind != MELODY_MODEL_TYPE:
            raise SpecError(
                where,
                f"the model {model.source} takes no melody (its model_type is '{kind}'); use a "
                "MusicGen-Melody model (facebook/musicgen-melody, musicgen-melody-large, "
                "musicgen-stereo-melody) or remove melody",
                "generation.melody",
            )
        path = spec_audio_path(self.config, spec, "melody", spec.melody)
        digest = self.state.digest(path)
        if digest is None:
            raise SpecError(where, f"{rel(self.config, path)} cannot be read", "generation.melody")
        return melody_inputs(digest)

    def _continuation(self, spec: TrackSpec) -> dict[str, Any] | None:
        """The ``continue`` key input of a spec: a file's content digest. A track it continues
        is only named here; ``link_chains`` puts that track's generation key in."""
        if spec.continue_from is None:
            return None
        other = spec.continues_track
        if other is not None:
            return continuation_inputs(spec, {"track": other, "generation": None})
        path = continue_path(self.config, spec)
        digest = self.state.digest(path)
        if digest is None:
            raise SpecError(
                read_toml(spec.path, SpecError).locate("generation", "continue_from"),
                f"{rel(self.config, path)} cannot be read",
                "generation.continue_from",
            )
        return continuation_inputs(spec, {"audio": digest})


def continue_path(config: ProjectConfig, spec: TrackSpec) -> Path:
    """The audio file ``spec`` continues: relative to the repo root and inside the repo."""
    assert spec.continue_from is not None
    return spec_audio_path(config, spec, "continue_from", spec.continue_from)


def melody_path(config: ProjectConfig, spec: TrackSpec) -> Path:
    """The audio file whose melody ``spec`` follows: relative to the repo root and inside the repo."""
    assert spec.melody is not None
    return spec_audio_path(config, spec, "melody", spec.melody)


def spec_audio_path(config: ProjectConfig, spec: TrackSpec, name: str, value: str) -> Path:
    """An audio file a spec names in ``generation.<name>``: relative to the repo root, inside
    the repo (a build must not depend on files others cannot check out) and a regular file."""
    dotted = f"generation.{name}"
    where = read_toml(spec.path, SpecError).locate("generation", name)
    path = (config.root / Path(value).expanduser()).resolve()
    if config.root.resolve() not in path.parents:
        raise SpecError(
            where, f"{value} is outside the game repo ({config.root}); copy the audio into the repo", dotted
        )
    if not path.is_file():
        raise SpecError(where, f"{value} is not a file (paths are relative to the repo root, {config.root})", dotted)
    return path


def input_files(config: ProjectConfig, spec: TrackSpec) -> list[Path]:
    """The files besides the spec that a track's audio is made from (``spec.audio_inputs``:
    its ``continue_from`` audio file, its ``melody``), as paths under the repo root spelled
    as the root is (not resolved: file events name them so). Whether they exist or stay
    inside the repo is ``spec_audio_path``'s business; this only says which files to watch."""
    return [Path(os.path.normpath(config.root / Path(name).expanduser())) for name in spec.audio_inputs]


def link_chains(loaded: list[LoadedTrack], failures: list[SpecFailure]) -> tuple[list[LoadedTrack], list[SpecFailure]]:
    """Put into each ``continue_from = "track:NAME"`` track's key the generation key of the
    track it continues (so regenerating that one regenerates this one). A missing track or
    a cycle fails every track of the chain, the error naming the chain."""
    by_name = {t.spec.name: t for t in loaded}
    linked: dict[str, LoadedTrack | str] = {}  # name -> linked track, or why it fails

    def chain_of(name: str) -> list[str]:
        chain = [name]
        while (nxt := by_name[chain[-1]].spec.continues_track) is not None and nxt in by_name and nxt not in chain:
            chain.append(nxt)
        if nxt is not None:
            chain.append(nxt)
        return chain

    def link(name: str, visiting: tuple[str, ...]) -> LoadedTrack | str:
        if name in linked:
            return linked[name]
        track = by_name[name]
        other = track.spec.continues_track
        result: LoadedTrack | str
        if other is None:
            result = track
        elif other in visiting or other == name:
            result = f"continue_from makes a cycle: {' -> '.join(chain_of(name))}"
        elif other not in by_name:
            result = (
                f"continues track '{other}', which no spec builds (or whose spec has an error): "
                f"{' -> '.join(chain_of(name))}"
            )
        else:
            parent = link(other, (*visiting, name))
            if isinstance(parent, str):
                cycle = parent.startswith("continue_from makes a cycle")  # each says it from its own end
                result = (
                    f"continue_from makes a cycle: {' -> '.join(chain_of(name))}"
                    if cycle
                    else f"continues '{other}', which cannot be built: {parent}"
                )
            else:
                inputs = continuation_inputs(track.spec, {"track": other, "generation": parent.keys.generation})
                melody = track.keys.generation_inputs.get("melody")
                result = dataclasses.replace(track, keys=track_keys(track.spec, track.model, inputs, melody))
        linked[name] = result
        return result

    kept, failures = [], list(failures)
    for track in loaded:
        result = link(track.spec.name, ())
        if isinstance(result, str):
            where = read_toml(track.spec.path, SpecError).locate("generation", "continue_from")
            failures.append(SpecFailure(track.spec.path, str(SpecError(where, result, "generation.continue_from"))))
        else:
            kept.append(result)
    return kept, failures


def dependents(loaded: Iterable[LoadedTrack], names: set[str]) -> set[str]:
    """Names of the tracks that continue (directly or down a chain) one of ``names``."""
    continues = {t.spec.name: t.spec.continues_track for t in loaded}
    found: set[str] = set()
    frontier = set(names)
    while frontier:
        frontier = {n for n, other in continues.items() if other in frontier and n not in found}
        found |= frontier
    return found


def load_tracks(
    config: ProjectConfig,
    state: State,
    model_override: str | None = None,
    override_base: Path | None = None,
    parsed: ParsedSpecs | None = None,
    paths: Iterable[Path] | None = None,
) -> tuple[list[LoadedTrack], list[SpecFailure]]:
    """Parse every spec (or those at ``paths``), resolve its model and compute keys."""
    loader = SpecLoader(config, state, model_override, override_base, parsed)
    loaded: list[LoadedTrack] = []
    failures: list[SpecFailure] = []
    seen: set[Path] = set()
    for path in spec_paths(config) if paths is None else paths:
        seen.add(path)
        result = loader.load(path)
        (failures if isinstance(result, SpecFailure) else loaded).append(result)  # type: ignore[arg-type]
    if parsed is not None and paths is None:
        parsed.keep_only(seen)
    return link_chains(*without_duplicates(loaded, failures, config))


def without_duplicates(
    loaded: list[LoadedTrack], failures: list[SpecFailure], config: ProjectConfig
) -> tuple[list[LoadedTrack], list[SpecFailure]]:
    """Two specs claiming one name: both fail, each error naming both files."""
    by_name: dict[str, list[LoadedTrack]] = {}
    for track in loaded:
        by_name.setdefault(track.spec.name, []).append(track)
    kept = []
    failures = list(failures)
    for name, tracks in by_name.items():
        if len(tracks) == 1:
            kept.append(tracks[0])
            continue
        files = " and ".join(rel(config, t.spec.path) for t in tracks)
        for track in tracks:
            where = read_toml(track.spec.path, SpecError).locate("name")
            if not where.line:  # the name comes from the file name
                where = Location(track.spec.path, 1, 1)
            failures.append(
                SpecFailure(
                    track.spec.path,
                    str(
                        SpecError(
                            where, f"track name '{name}' is claimed by {files}; give each spec its own name", "name"
                        )
                    ),
                )
            )
    return kept, failures
