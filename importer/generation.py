"""The one path from plans to raw audio in the cache.

``generate`` takes the tracks that need generating, groups them into batches (same
model, length and windows; at most ``batch_size``), gets a backend for each model from
the ``Backends`` the caller passes, generates, and stores each track's raw audio in the
cache under its generation key. It returns (and reports batch by batch) one
``Generated`` per track: the cache entry, or the error that track failed with. A model
that fails to load fails its tracks, a batch that fails fails its own tracks, and one
track that cannot be stored fails alone.

The callers keep only their own policy: ``build`` renders and publishes each batch while
the next one generates, the watch worker keeps its model loaded (``KeptModel``) and
cancels from the progress callback (``Cancelled``), ``audition`` names its takes.
``load_backend`` is called here and nowhere else.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from .conditioning import primed_request
from .config import ProjectConfig, rel
from .errors import TrackspecError
from .fsutil import atomic_write_bytes
from .generate.base import GenerationRequest
from .keys import continued_key

if TYPE_CHECKING:
    from .cache import CacheEntry, LocalCache
    from .generate.base import Backend
    from .plan import TrackPlan
    from .tracks import LoadedTrack


class Cancelled(Exception):
    """Raised from a progress callback to abandon a generation (the daemon is stopping)."""


@dataclass
class Generated:
    """One track's generation: its raw audio in the cache, or why not."""

    plan: TrackPlan
    seconds: float
    raw: CacheEntry | None = None
    error: str | None = None


class Backends(Protocol):
    """Where ``generate`` gets a loaded model from, and gives it back after its batches."""

    def get(self, source: str, revision: str | None) -> Backend: ...
    def release(self, backend: Backend) -> None: ...


def _ignore(*_args: Any) -> None:
    pass


@dataclass
class Listener:
    """What ``generate`` tells its caller as it goes (each part optional)."""

    #: A track's generation begins (before its model loads).
    started: Callable[[TrackPlan], None] = _ignore
    #: ``progress(name, steps_done, steps_total)`` after each decoding step; may raise ``Cancelled``.
    progress: Callable[[str, int, int], None] = _ignore
    #: A batch is in the cache (or failed): its results, in batch order.
    batch_done: Callable[[list[Generated]], None] = _ignore


def load_backend(model: str, revision: str | None, device: str, max_batch: int = 8) -> Backend:
    """Load the MusicGen backend for a hub id or a local directory (same code path)."""
    try:
        from .generate.musicgen import MusicGenBackend
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.split(".")[0] in ("torch", "transformers", "tokenizers", "safetensors"):
            from .errors import ModelError

            raise ModelError(
                f"generating needs {exc.name}, which is not installed: "
                "pip install 'trackspec[generate]' (for CUDA, install torch from "
                "https://pytorch.org first)"
            ) from exc
        raise

    return MusicGenBackend.load(model, revision=revision, device=device, max_batch=max_batch)


def _load(
    config: ProjectConfig, source: str, revision: str | None, note: Callable[[str], None], suffix: str = ""
) -> Any:
    start = time.monotonic()
    backend = load_backend(source, revision, config.device, config.batch_size)
    note(f"model loaded: {backend.description} ({time.monotonic() - start:.1f} s){suffix}")
    return backend


class LoadPerRun:
    """A model loaded for the batches of one ``generate`` call, then closed (build, audition)."""

    def __init__(self, config: ProjectConfig, note: Callable[[str], None]):
        self.config = config
        self.note = note

    def get(self, source: str, revision: str | None) -> Backend:
        return _load(self.config, source, revision, self.note)

    def release(self, backend: Backend) -> None:
        backend.close()


class KeptModel:
    """The last model loaded stays loaded across calls until ``close`` (the watch worker)."""

    def __init__(self, note: Callable[[str], None]):
        self.note = note
        self.config: ProjectConfig | None = None
        self._backend: Any = None
        self._id: tuple | None = None

    @property
    def loaded(self) -> bool:
        return self._backend is not None

    def get(self, source: str, revision: str | None) -> Backend:
        assert self.config is not None, "set .config before generating"
        wanted = (source, revision, self.config.device, self.config.batch_size)
        if self._backend is not None and self._id == wanted:
            return self._backend
        self.close()
        self._backend = _load(self.config, source, revision, self.note, "; kept loaded between generations")
        self._id = wanted
        return self._backend

    def release(self, backend: Backend) -> None:
        pass

    def close(self) -> None:
        if self._backend is not None:
            self._backend.close()
            self._backend, self._id = None, None


def generate(
    config: ProjectConfig,
    plans: list[TrackPlan],
    cache: LocalCache,
    backends: Backends,
    listener: Listener,
    request_for: Callable[[TrackPlan], GenerationRequest] | None = None,
) -> list[Generated]:
    """Generate ``plans`` batch by batch into ``cache``; one result per track, in batch order.

    ``Cancelled`` (from the listener's progress) propagates: nothing of the batch in
    flight is stored. Every other failure becomes the error of the tracks it concerns.
    """
    kept = _KeptAcrossWaves(backends)
    try:
        return _generate_waves(config, plans, cache, kept, listener, request_for or generation_request)
    finally:
        kept.close()


class _KeptAcrossWaves:
    """The last model got stays loaded until another is needed or the waves are done: a chain
    of tracks (one wave each) loads its model once."""

    def __init__(self, backends: Backends):
        self.backends = backends
        self._held: Backend | None = None
        self._id: tuple | None = None

    def get(self, source: str, revision: str | None) -> Backend:
        if self._held is not None and self._id == (source, revision):
            return self._held
        self.close()
        self._held, self._id = self.backends.get(source, revision), (source, revision)
        return self._held

    def release(self, backend: Backend) -> None:
        pass

    def close(self) -> None:
        if self._held is not None:
            held, self._held, self._id = self._held, None, None
            self.backends.release(held)


def _generate_waves(
    config: ProjectConfig,
    plans: list[TrackPlan],
    cache: LocalCache,
    backends: Backends,
    listener: Listener,
    request_for: Callable[[TrackPlan], GenerationRequest],
) -> list[Generated]:
    """Tracks that continue others come in waves after them (``continuation_waves``); a track
    whose source failed fails without generating."""
    results: list[Generated] = []
    failed: dict[str, str] = {}  # generation key -> error, for the tracks that continue it
    for wave in continuation_waves(plans):
        ready = []
        for tp in wave:
            parent = continued_key(tp.track.keys.generation_inputs)
            if parent in failed:
                lost = Generated(
                    tp, 0.0, error=f"continues {tp.track.spec.continues_track}, which failed: {failed[parent]}"
                )
                listener.batch_done([lost])
                results.append(lost)
            else:
                ready.append(tp)
        done = _generate_wave(config, ready, cache, backends, listener, request_for)
        failed.update({g.plan.track.keys.generation: g.error for g in done if g.error is not None})
        results += done
    return results


def continuation_waves(plans: list[TrackPlan]) -> list[list[TrackPlan]]:
    """``plans`` in waves: a track that continues another of ``plans`` comes in a wave after it."""
    by_key = {tp.track.keys.generation: tp for tp in plans}
    depth: dict[str, int] = {}

    def depth_of(key: str) -> int:
        if key not in depth:
            depth[key] = 0  # a cycle cannot reach here (keys contain their parents'), but never loop
            parent = continued_key(by_key[key].track.keys.generation_inputs)
            depth[key] = depth_of(parent) + 1 if parent in by_key else 0
        return depth[key]

    waves: dict[int, list[TrackPlan]] = {}
    for tp in plans:
        waves.setdefault(depth_of(tp.track.keys.generation), []).append(tp)
    return [waves[d] for d in sorted(waves)]


def _generate_wave(
    config: ProjectConfig,
    plans: list[TrackPlan],
    cache: LocalCache,
    backends: Backends,
    listener: Listener,
    request_for: Callable[[TrackPlan], GenerationRequest],
) -> list[Generated]:
    """``generate`` for tracks none of which continues another of them."""
    results: list[Generated] = []
    for (source, revision), batches in generation_batches(plans, config.batch_size).items():
        start = time.monotonic()
        group = [tp for batch in batches for tp in batch]
        for tp in group:
            listener.started(tp)
        try:
            backend = backends.get(source, revision)
        except Cancelled:
            raise
        except Exception as exc:  # a broken model fails its tracks, not the caller
            message = model_load_error(source, exc)
            failed = [
                Generated(tp, time.monotonic() - start, error=f"{model_field(config, tp.track)}: {message}")
                for tp in group
            ]
            listener.batch_done(failed)
            results += failed
            continue
        try:
            for batch in batches:
                batch_start = time.monotonic()
                audios: list[Any] = [None] * len(batch)
                requests = {}
                for i, tp in enumerate(batch):
                    try:  # the audio a track continues, if any: one that cannot be read fails that track
                        requests[i] = primed_request(
                            request_for(tp), tp.track, config, cache, backend.sample_rate, backend.channels
                        )
                    except TrackspecError as exc:
                        audios[i] = exc
                try:
                    made = backend.generate(list(requests.values()), progress=listener.progress) if requests else []
                except Cancelled:
                    raise
                except Exception as exc:  # the batch fails; each of its tracks says why
                    made = [exc] * len(requests)
                for i, audio in zip(requests, made, strict=True):
                    audios[i] = audio
                done = [_stored(cache, tp, audio, backend, batch_start) for tp, audio in zip(batch, audios)]
                listener.batch_done(done)
                results += done
        finally:
            backends.release(backend)
    return results


def _stored(cache: LocalCache, tp: TrackPlan, audio: Any, backend: Backend, start: float) -> Generated:
    if isinstance(audio, Exception):
        return Generated(tp, time.monotonic() - start, error=error_text(audio))
    try:
        raw = store_raw(cache, tp.track, audio, backend)
    except (OSError, TrackspecError) as exc:
        return Generated(tp, time.monotonic() - start, error=f"cannot store the generated audio in the cache: {exc}")
    return Generated(tp, time.monotonic() - start, raw=raw)


def error_text(exc: BaseException) -> str:
    """What a track's failure says: a trackspec error as it is, anything else as an internal error."""
    if isinstance(exc, TrackspecError):
        return str(exc)
    return f"internal error: {type(exc).__name__}: {exc}"


def split_by_generation_key(plans: list[TrackPlan]) -> tuple[list[TrackPlan], list[TrackPlan]]:
    """(one track per generation key, the others): identical audio is generated once."""
    leaders: dict[str, TrackPlan] = {}
    followers = []
    for tp in plans:
        if tp.track.keys.generation in leaders:
            followers.append(tp)
        else:
            leaders[tp.track.keys.generation] = tp
    return list(leaders.values()), followers


def generation_batches(plans: list[TrackPlan], batch_size: int) -> dict[tuple, list[list[TrackPlan]]]:
    """Batches of tracks that can be generated together, grouped by (model source, revision).

    Tracks share a batch only when they share model, duration and window settings.
    """
    groups: dict[tuple, list[TrackPlan]] = {}
    for tp in plans:
        spec, model = tp.track.spec, tp.track.model
        key = (model.source, model.revision, spec.duration, spec.window, spec.window_stride)
        groups.setdefault(key, []).append(tp)
    by_model: dict[tuple, list[list[TrackPlan]]] = {}
    for key, group in groups.items():
        by_model.setdefault(key[:2], []).extend(group[i : i + batch_size] for i in range(0, len(group), batch_size))
    return by_model


def generation_request(tp: TrackPlan) -> GenerationRequest:
    spec = tp.track.spec
    return GenerationRequest(
        name=tp.name,
        prompt=spec.prompt,
        duration=spec.duration,
        seed=tp.track.keys.seed,
        temperature=spec.temperature,
        top_k=spec.top_k,
        top_p=spec.top_p,
        guidance_scale=spec.guidance_scale,
        window=spec.window,
        window_stride=spec.window_stride,
    )


def model_field(config: ProjectConfig, track: LoadedTrack) -> str:
    """Where a track's model was named: its spec's field, or the run's override."""
    named = track.spec.model
    if track.model.source in (named, str((config.root / Path(named).expanduser()).resolve())):
        return f"{rel(config, track.spec.path)}: generation.model"
    return "--model/TRACKSPEC_MODEL"


def model_load_error(source: str, exc: Exception) -> str:
    if isinstance(exc, TrackspecError):
        return str(exc)
    return f"cannot load model '{source}': {type(exc).__name__}: {exc}"


def store_raw(cache: LocalCache, track: LoadedTrack, audio: Any, backend: Any) -> CacheEntry:
    """Put generated audio in the cache under the track's generation key."""
    import numpy as np

    samples = np.ascontiguousarray(audio, dtype="<f4")
    staging = cache.staging_dir()
    try:
        path = staging / "audio.f32"
        atomic_write_bytes(path, samples.tobytes())
        info = {
            "sample_rate": backend.sample_rate,
            "channels": int(samples.shape[0]),
            "samples": int(samples.shape[1]),
            "seed": track.keys.seed,
            "model": backend.description,
            "inputs": track.keys.generation_inputs,
        }
        return cache.put("raw", track.keys.generation, {"audio.f32": path}, info)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
