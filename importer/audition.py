"""Auditions: several takes of one spec, each with its own seed, kept in the cache only.

A take is the track exactly as ``build`` would make it with that seed (and, for a quick
preview, a shorter duration): the same generation and render keys, so once ``pin`` has
written a take's seed into the spec, the next build restores that take from the cache
with no generation. Take ``n``'s seed is fixed (``take_seed``), independent of the spec,
so auditioning again costs nothing and take numbers keep meaning what was heard, also
after a pin. Nothing in the assets or the index changes; the record of the last audition
of each track (``.trackspec/auditions/<name>.json``) is what ``pin`` and ``report`` read.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .cache import LocalCache
from .config import ProjectConfig, rel
from .errors import TrackspecError
from .fields import MAX_SEED
from .fsutil import UnsafePath, atomic_write_bytes, read_regular
from .grammar import GrammarError, is_name
from .index import model_name
from .keys import track_keys
from .layout import AUDITIONS_DIR
from .plan import TrackPlan
from .state import State
from .tracks import LoadedTrack, load_tracks

#: Most takes one audition may ask for.
MAX_TAKES = 32


def take_seed(take: int) -> int:
    """The seed of take ``take`` (1, 2, ...): fixed, so take numbers mean the same audio."""
    return int.from_bytes(hashlib.sha256(f"trackspec take {take}".encode()).digest()[:8], "big") & (MAX_SEED >> 32)


def take_of_seed(seed: int, limit: int = MAX_TAKES) -> int | None:
    """The take number whose seed is ``seed``, if any (a pinned spec names its take)."""
    return next((n for n in range(1, limit + 1) if take_seed(n) == seed), None)


@dataclass
class Take:
    """One take as the audition record keeps it."""

    take: int
    seed: int
    seconds: float
    preview: bool
    keys: dict[str, str]
    files: dict[str, dict[str, Any]] = field(default_factory=dict)
    duration: float = 0.0
    sample_rate: int = 0
    channels: int = 0
    loop: dict[str, Any] | None = None
    loudness: dict[str, Any] | None = None
    #: "generated", "encoded" (from cached raw audio) or "cached" (nothing to do); "failed".
    action: str = ""
    error: str | None = None


def auditions_dir(config: ProjectConfig) -> Path:
    return config.state_dir / AUDITIONS_DIR


def record_path(config: ProjectConfig, name: str) -> Path:
    return auditions_dir(config) / f"{name}.json"


def load_record(config: ProjectConfig, name: str) -> dict[str, Any] | None:
    """The last audition of track ``name``, or ``None`` (never auditioned, or unreadable).

    The record lies in the state folder, which a cloned repo or a careless hand can fill:
    every value is checked against its grammar (``valid_record``) before a key in it names a
    cache entry; a record that fails is ignored with a warning naming the file.
    """
    if not is_name(name):
        return None
    path = record_path(config, name)
    try:
        record = json.loads(read_regular(path, MAX_RECORD_BYTES))
        problem = valid_record(record, name)
    except FileNotFoundError:
        return None
    except (OSError, ValueError, RecursionError) as exc:
        problem = str(exc) if isinstance(exc, UnsafePath) else f"unreadable ({type(exc).__name__})"
    if problem:
        import logging

        logging.getLogger(__name__).warning("%s: audition record ignored: %s; audition again", path, problem)
        return None
    return record


#: An audition record holds at most ``MAX_TAKES`` takes of a few hundred bytes each.
MAX_RECORD_BYTES = 1 << 20


def valid_record(record: Any, name: str) -> str | None:
    """Why ``record`` is not an audition record of ``name`` that this version wrote (``None``: it is)."""
    from .grammar import check_depth, key, number

    try:
        check_depth(record, "record")
        if not isinstance(record, dict) or record.get("name", name) != name:
            return "not an audition record of this track"
        takes = record.get("takes")
        if not isinstance(takes, list) or len(takes) > MAX_TAKES:
            return f"takes: expected a list of at most {MAX_TAKES}"
        for i, take in enumerate(takes):
            where = f"takes[{i}]"
            if not isinstance(take, dict) or not isinstance(take.get("keys"), dict):
                return f"{where}: not a take"
            number(take.get("take"), where, "take", 1, MAX_TAKES, integer=True)
            number(take.get("seed"), where, "seed", 0, MAX_SEED, integer=True)
            number(take.get("seconds"), where, "seconds", 0, 24 * 3600)
            for kind in ("generation", "render"):
                key(take["keys"].get(kind), where, f"keys.{kind}")
            if take.get("action") == "failed":
                continue
            number(take.get("duration"), where, "duration", 0, 24 * 3600)
            number(take.get("sample_rate"), where, "sample_rate", 1, 768000, integer=True)
            number(take.get("channels"), where, "channels", 1, 64, integer=True)
            files = take.get("files")
            if not isinstance(files, dict):
                return f"{where}: files: expected a table"
            for fmt, info in files.items():
                if not is_name(fmt) or not isinstance(info, dict):
                    return f"{where}: files: not a format and its facts"
                key(info.get("sha256"), where, f"files.{fmt}.sha256")
            loop = take.get("loop")
            if loop is not None:
                if not isinstance(loop, dict):
                    return f"{where}: loop: expected a table"
                for field_name in ("start", "length"):
                    number(loop.get(field_name), where, f"loop.{field_name}", 0, 1 << 40, integer=True)
            loudness = take.get("loudness")
            if loudness is not None and not isinstance(loudness, dict):
                return f"{where}: loudness: expected a table"
    except GrammarError as exc:
        return str(exc)
    return None


def all_records(config: ProjectConfig) -> dict[str, dict[str, Any]]:
    folder = auditions_dir(config)
    if folder.is_symlink() or not folder.is_dir():
        return {}
    names = sorted(p.stem for p in folder.glob("*.json") if is_name(p.stem))
    return {name: rec for name in names if (rec := load_record(config, name)) is not None}


def find_track(config: ProjectConfig, name: str, model_override: str | None, override_base: Path | None) -> LoadedTrack:
    """The loaded track called ``name``; its spec's own error if it cannot build."""
    state = State.in_folder(config.state_dir)
    loaded, failures = load_tracks(config, state, model_override, override_base)
    for track in loaded:
        if track.spec.name == name:
            return track
    for failure in failures:
        if failure.path.stem == name or f"'{name}'" in failure.message:
            raise TrackspecError(failure.message)
    known = ", ".join(sorted(t.spec.name for t in loaded)) or "none"
    raise TrackspecError(f"no track named '{name}' in {config.root} (tracks: {known})")


def take_track(track: LoadedTrack, take: int, seconds: float | None) -> LoadedTrack:
    """The track with take ``take``'s seed (and ``seconds`` of audio for a preview)."""
    spec = dataclasses.replace(track.spec, seed=take_seed(take))
    if seconds is not None and seconds != spec.duration:
        crossfade = spec.loop_crossfade
        if crossfade is not None and crossfade * 2 >= seconds:
            crossfade = seconds / 4  # a preview too short for the spec's crossfade still loops
        # A preview loops as many whole bars as it holds, from the first downbeat it has room for.
        spec = dataclasses.replace(
            spec, duration=float(seconds), loop_crossfade=crossfade, loop_bars=None, loop_start=None
        )
    continuation = track.keys.generation_inputs.get("continue")  # takes continue what the track does
    melody = track.keys.generation_inputs.get("melody")  # and follow its melody
    return LoadedTrack(spec, track.model, track_keys(spec, track.model, continuation, melody), track.license)


#: Generates the raw audio of takes into the cache; returns the errors of those that failed, by take.
Generator = Callable[[list[TrackPlan]], dict[int, str]]


def audition(
    config: ProjectConfig,
    track: LoadedTrack,
    takes: int,
    seconds: float | None,
    progress: Callable[[str, int, int], None] | None = None,
    note: Callable[[str], None] = lambda message: None,
    generator: Generator | None = None,
) -> list[Take]:
    """Make (or find in the cache) ``takes`` takes of ``track``; record and return them.

    ``generator`` makes the missing raw audio: by default a model loaded here; the CLI
    passes a running daemon's (``watch.requests``), whose model is already loaded.
    """
    if not 1 <= takes <= MAX_TAKES:
        raise TrackspecError(f"--takes must be between 1 and {MAX_TAKES}, got {takes}")
    cache = LocalCache(config.cache_dir)
    variants = [take_track(track, n, seconds) for n in range(1, takes + 1)]
    results = [
        Take(
            n,
            v.keys.seed,
            v.spec.duration,
            v.spec.duration != track.spec.duration,
            {"generation": v.keys.generation, "render": v.keys.render},
        )
        for n, v in enumerate(variants, start=1)
    ]
    to_generate = []
    for take, variant in zip(results, variants):
        if cache.has("render", variant.keys.render):
            take.action = "cached"
        elif cache.has("raw", variant.keys.generation):
            take.action = "encoded"
        else:
            take.action = "generated"
            to_generate.append(TrackPlan(variant, "generate"))
    if to_generate:
        generate = generator or (lambda plans: generate_takes(config, plans, progress, note))
        for number, error in generate(to_generate).items():
            results[number - 1].action, results[number - 1].error = "failed", error
    for take, variant in zip(results, variants):
        if take.error is None:
            _render(cache, take, variant)
    _write_record(config, track, results)
    return results


def generate_takes(
    config: ProjectConfig,
    plans: list[TrackPlan],
    progress: Callable[[str, int, int], None] | None,
    note: Callable[[str], None],
) -> dict[int, str]:
    """Generate the takes' raw audio here (``generation``), as many per batch as ``batch_size``
    allows; returns the errors of the takes that failed, by take."""
    from . import generation

    def request(tp: TrackPlan) -> Any:
        return dataclasses.replace(generation.generation_request(tp), name=f"take {_take_number(tp)}")

    results = generation.generate(
        config,
        plans,
        LocalCache(config.cache_dir),
        generation.LoadPerRun(config, note),
        generation.Listener(progress=progress) if progress else generation.Listener(),
        request,
    )
    return {_take_number(g.plan): g.error for g in results if g.error is not None}


def _take_number(tp: TrackPlan) -> int:
    return take_of_seed(tp.track.keys.seed) or 0


def take_plans(track: LoadedTrack, numbers: list[int], seconds: float | None) -> list[TrackPlan]:
    """Generation jobs for takes of ``track``, each named apart ("NAME take N") so that a
    queue keyed by name (the daemon's) holds them beside the track itself; the keys stay
    the take's own."""
    plans = []
    for number in numbers:
        variant = take_track(track, number, seconds)
        named = dataclasses.replace(variant.spec, name=f"{track.spec.name} take {number}")
        plans.append(
            TrackPlan(LoadedTrack(named, variant.model, variant.keys, variant.license), "generate", ["audition"])
        )
    return plans


def _render(cache: LocalCache, take: Take, variant: LoadedTrack) -> None:
    """Find the take's render in the cache, or render its cached raw audio; a failure is the take's."""
    try:
        _find_or_render(cache, take, variant)
    except Exception as exc:  # as in a build: one broken take never stops the others
        detail = str(exc) if isinstance(exc, TrackspecError) else f"internal error: {type(exc).__name__}: {exc}"
        take.action, take.error = "failed", detail


def _find_or_render(cache: LocalCache, take: Take, variant: LoadedTrack) -> None:
    rendered = cache.get("render", variant.keys.render)
    if rendered is None:
        from .render import render_raw, settings_for

        raw = cache.get("raw", variant.keys.generation)
        if raw is None:
            take.action, take.error = "failed", "its raw audio is not in the cache"
            return
        rendered = render_raw(cache, raw, settings_for(variant), variant.keys.render, variant.keys.render_inputs)
    take.files = {
        name.rsplit(".", 1)[-1]: {"sha256": rendered.digests[name], "bytes": path.stat().st_size}
        for name, path in rendered.files.items()
    }
    take.duration = float(rendered.info.get("duration", 0.0))
    take.sample_rate = int(rendered.info.get("sample_rate", 0))
    take.channels = int(rendered.info.get("channels", 0))
    take.loop = rendered.info.get("loop")
    take.loudness = rendered.info.get("loudness")


def _write_record(config: ProjectConfig, track: LoadedTrack, takes: list[Take]) -> None:
    record = {
        "name": track.spec.name,
        "spec": rel(config, track.spec.path),
        "model": model_name(config, track.model),
        "license": track.license,
        "spec_seconds": track.spec.duration,
        "auditioned_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "takes": [dataclasses.asdict(t) for t in takes],
    }
    path = record_path(config, track.spec.name)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, json.dumps(record, indent=2, sort_keys=True).encode() + b"\n", config.staging_dir)


def take_file(config: ProjectConfig, take: dict[str, Any], fmt: str) -> Path | None:
    """The cached file of a recorded take (verified), or ``None`` when the cache lost it."""
    entry = LocalCache(config.cache_dir).get("render", take["keys"]["render"])
    if entry is None:
        return None
    return entry.files.get(f"audio.{fmt}")
