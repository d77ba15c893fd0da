"""Decide, per track, what a build must do and why. Pure and fast: no audio, no torch.

Inputs are the parsed specs with their keys, the asset index, the cache (presence only)
and the stat state (digests of outputs without reading unchanged files). Every action
carries human reasons ("prompt changed", "output modified", ...).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

from .cache import Kind
from .config import ProjectConfig, rel
from .index import AUDIO_FACTS, index_entry, output_paths
from .keys import changed_fields, continued_key
from .tracks import LoadedTrack, SpecFailure


class CacheView(Protocol):
    """What the plan asks of the cache: presence, and the inputs an entry was made from."""

    def has(self, kind: Kind, key: str) -> bool: ...
    def peek_info(self, kind: Kind, key: str) -> dict[str, Any]: ...


class OutputView(Protocol):
    """What the plan asks of the published files: their sha256 (``None``: missing), and
    the key inputs each track was last built from (``state.State`` answers both by stat)."""

    tracks: dict[str, dict[str, Any]]

    def digest(self, path: Path) -> str | None: ...


Action = Literal["fresh", "index", "restore", "encode", "generate"]


@dataclass
class TrackPlan:
    track: LoadedTrack
    action: Action
    reasons: list[str] = field(default_factory=list)
    #: An index entry whose published files already are this render (a renamed track, a
    #: genre change): restored from those files when the cache no longer has the render.
    donor: dict[str, Any] | None = None
    #: Generated again for its raw audio, which a track generated now continues (its
    #: render may well be cached: a team cache's fetch looks for the raw audio first).
    raw_wanted: bool = False

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


def plan_build(
    config: ProjectConfig,
    loaded: Sequence[LoadedTrack],
    failures: list[SpecFailure],
    index: dict[str, Any],
    cache: CacheView,
    state: OutputView,
    others: Sequence[LoadedTrack] = (),
) -> Plan:
    """The plan for ``loaded``: an action and its reasons per track, and the index entries
    no spec claims any more (removals). ``others`` are tracks known to be up to date that
    are not planned again (the daemon plans only what changed); they still claim their
    names. Nothing here reads a file: what is on disk comes through ``cache`` and ``state``.
    """
    tracks = [_plan_track(config, track, index["tracks"], cache, state) for track in loaded]
    _generate_sources(config, tracks, others, index["tracks"], cache, state)
    claimed = {t.spec.name for t in loaded} | {t.spec.name for t in others}
    unclaimed = [(name, entry) for name, entry in sorted(index["tracks"].items()) if name not in claimed]
    removals = []
    if unclaimed:  # (rare: the paths are only made when some entry lost its spec)
        specs = {rel(config, t.spec.path) for group in (loaded, others) for t in group}
        failing_specs = {rel(config, f.path) for f in failures}
        for name, entry in unclaimed:
            if entry.get("spec") in failing_specs:
                continue
            reason = "spec renamed the track" if entry.get("spec") in specs else "spec deleted"
            removals.append(Removal(name, entry, reason))
    return Plan(tracks, failures, removals, index)


def _plan_track(
    config: ProjectConfig, track: LoadedTrack, entries: dict[str, dict[str, Any]], cache: CacheView, state: OutputView
) -> TrackPlan:
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


def _generate_sources(
    config: ProjectConfig,
    tracks: list[TrackPlan],
    others: Sequence[LoadedTrack],
    entries: dict[str, dict[str, Any]],
    cache: CacheView,
    state: OutputView,
) -> None:
    """A track generated now continues another's raw audio. Where that is not in the cache
    (the source was restored from a team cache's render, or its raw audio was evicted), the
    source is generated again too (its key is unchanged: the same audio), up the chain."""
    by_key = {tp.track.keys.generation: tp for tp in tracks}
    not_planned = {t.keys.generation: t for t in others}
    todo = [tp for tp in tracks if tp.action == "generate"]
    while todo:
        child = todo.pop()
        key = continued_key(child.track.keys.generation_inputs)
        if key is None or cache.has("raw", key):
            continue
        source = by_key.get(key)
        if source is None and key in not_planned:
            source = by_key[key] = _plan_track(config, not_planned.pop(key), entries, cache, state)
            tracks.append(source)
        if source is None or source.action == "generate":
            continue
        source.action, source.donor, source.raw_wanted = "generate", None, True
        source.reasons.append(f"{child.name} continues its generated audio, which is not in the cache")
        todo.append(source)


def _published_render(
    config: ProjectConfig, render_key: str, entries: dict[str, dict[str, Any]], state: OutputView
) -> dict[str, Any] | None:
    """An index entry of this render whose files are all on disk unchanged, if any."""
    for entry in entries.values():
        if (
            entry.get("keys", {}).get("render") == render_key
            and all(k in entry for k in AUDIO_FACTS)
            and all(state.digest(config.root / f["path"]) == f["sha256"] for f in entry["files"].values())
        ):
            return entry
    return None


def _previous_inputs(
    name: str, entry: dict[str, Any], kind: str, state: OutputView, cache: CacheView
) -> dict[str, Any] | None:
    """Key inputs of the last build of a track: from the state, else from its cache entry."""
    remembered = state.tracks.get(name, {}).get(f"{kind}_inputs")
    if remembered:
        return remembered
    cache_kind: Kind = "raw" if kind == "generation" else "render"
    return cache.peek_info(cache_kind, entry.get("keys", {}).get(kind, "")).get("inputs")


def _continued(old: dict[str, Any] | None, new: dict[str, Any]) -> str:
    """What changed in ``continue``: "continues NAME, which" when only that track's audio did."""
    before, after = (old or {}).get("continue") or {}, new.get("continue") or {}
    same_track = after.get("track") is not None and before.get("track") == after.get("track")
    if same_track and {k: v for k, v in before.items() if k != "generation"} == {
        k: v for k, v in after.items() if k != "generation"
    }:
        return f"continues {after['track']}, which"
    if (
        after.get("audio") is not None
        and before.get("audio") not in (None, after.get("audio"))
        and {k: v for k, v in before.items() if k != "audio"} == {k: v for k, v in after.items() if k != "audio"}
    ):
        return "continue_from audio"
    return "continue_from"


def _stale_reasons(
    config: ProjectConfig, track: LoadedTrack, entry: dict[str, Any] | None, state: OutputView, cache: CacheView
) -> list[str] | None:
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
            changed = [_continued(previous, keys.generation_inputs) if c == "continue" else c for c in changed]
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
