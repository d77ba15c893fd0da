"""The build's side of the farm: batches out to free workers, verified cache entries back.

``FarmGenerator.generate`` has ``generation.generate``'s signature and contract: the
planner's batches (``generation.generation_batches``, so the same batches as a local
build) go to whichever worker is free, preferring one that already holds the batch's
model; results come back per batch, in batch order, through the listener. Every entry a
worker returns is checked like a team-cache download (manifest names the track's key
and matches its digest, each file's size and sha256) before ``LocalCache.put``; the raw
entry of a track is its ``Generated.raw``, its render entry waits in the cache for the
build to publish. A worker that dies has its batch sent to another one (a replacement
is started); after ``MAX_ATTEMPTS`` losses of one batch its tracks fail. When the farm
is unreachable, or loses every worker, what is left is generated here by the caller's
``backends``, after one message (or, with ``require``, fails with the reason).
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .. import generation
from ..cache import LocalCache
from ..config import ProjectConfig
from ..errors import TrackspecError
from ..farm_settings import FarmSettings
from ..generation import Generated, Listener
from ..plan import TrackPlan
from .cluster import Farm, FarmUnavailable, connect

log = logging.getLogger(__name__)

#: Times one batch may lose its worker before its tracks fail.
MAX_ATTEMPTS = 3
#: Seconds between progress polls of busy workers.
POLL_SECONDS = 0.25
#: Seconds the farm may go without one ready worker before the rest is built here.
START_TIMEOUT = 180.0


class FarmRequired(TrackspecError):
    """``--require-farm`` (or ``[farm] require``) and the farm cannot be used."""


@dataclass
class _Slot:
    number: int
    actor: Any
    hello: Any = None  # the pending hello() call, until the worker answers
    info: dict[str, Any] = field(default_factory=dict)
    batch: int | None = None  # the batch in flight
    call: Any = None  # its run() call
    poll: Any = None  # the pending progress() call
    polled: float = 0.0  # when it was made
    model: tuple | None = None  # the model it last loaded

    @property
    def label(self) -> str:
        where = f" on {self.info['host']}, pid {self.info['pid']}" if self.info else ""
        return f"farm worker {self.number}{where}"


class FarmGenerator:
    """Generation on the farm for one process (a build, or the watch daemon's worker)."""

    def __init__(self, settings: FarmSettings, note: Callable[[str], None]):
        self.settings = settings
        self.note = note
        self.farm: Farm | None = None
        self._slots: list[_Slot] = []
        self._numbers = 0
        self._unusable: str | None = None
        #: Workers started to replace lost ones (bounded: a farm that kills every worker is given up).
        self._replaced = 0

    # ------------------------------------------------------------ connection
    def _connect(self, config: ProjectConfig) -> Farm | None:
        if self.farm is not None or self._unusable is not None:
            return self.farm
        try:
            self.farm = connect(config, self.settings)
        except FarmUnavailable as exc:
            self._give_up(str(exc))
            return None
        self.note(self.farm.describe)
        worker_class = self.farm.ray.remote(max_concurrency=2)(_worker_class())
        self._actor = worker_class.options(**self.farm.options)
        for _ in range(self.farm.workers):
            self._start_worker()
        return self.farm

    def _give_up(self, why: str) -> None:
        self._unusable = why
        if self.settings.require:
            raise FarmRequired(f"{why}; the build requires the farm (--require-farm / [farm] require)")
        self.note(f"{why}; generating on this machine instead")

    def _start_worker(self) -> None:
        self._numbers += 1
        actor = self._actor.remote()
        self._slots.append(_Slot(self._numbers, actor, hello=actor.hello.remote()))

    def close(self) -> None:
        if self.farm is None:
            return
        for slot in self._slots:
            self.farm.ray.kill(slot.actor, no_restart=True)
        self._slots = []
        self.farm.close()  # stops a Ray started here; disconnects from a joined cluster
        self.farm = None

    # ------------------------------------------------------------ generation
    def generate(
        self,
        config: ProjectConfig,
        plans: list[TrackPlan],
        cache: LocalCache,
        backends: generation.Backends,
        listener: Listener,
        request_for: Any = None,
    ) -> list[Generated]:
        """``generation.generate`` on the farm (``backends`` serve only a local fallback).

        Tracks that continue audio (``continue_from``) are generated here, after the farm's:
        their primer is read from this machine's cache (the track they continue may be one
        the farm just made), and they come in waves after what they continue. Tracks that
        follow a melody (``melody``) too: the file is in this machine's checkout, not a worker's.
        """
        local = ("continue", "melody")
        conditioned = [tp for tp in plans if any(k in tp.track.keys.generation_inputs for k in local)]
        plans = [tp for tp in plans if not any(k in tp.track.keys.generation_inputs for k in local)]
        batches = [
            batch for group in generation.generation_batches(plans, config.batch_size).values() for batch in group
        ]
        farm = self._connect(config) if batches else None
        results: list[Generated] = []
        left = batches
        if farm is not None:
            try:
                left = self._run(farm, config, batches, cache, listener, results)
            except BaseException:  # Ctrl-C, a stopping daemon: outstanding farm work is dropped
                self._cancel_all()
                raise
        rest = [tp for batch in left for tp in batch] + conditioned
        if rest:
            results += generation.generate(config, rest, cache, backends, listener, request_for)
        return results

    def _run(
        self,
        farm: Farm,
        config: ProjectConfig,
        batches: list[list[TrackPlan]],
        cache: LocalCache,
        listener: Listener,
        results: list[Generated],
    ) -> list[list[TrackPlan]]:
        """Run ``batches`` on the workers; returns the batches left for a local build."""
        ray = farm.ray
        todo: deque[int] = deque(range(len(batches)))
        attempts = [0] * len(batches)
        done: dict[int, list[Generated]] = {}
        shown: dict[str, tuple[int, int]] = {}
        next_out = 0
        waiting_since = time.monotonic()
        while len(done) < len(batches):
            if not self._slots:
                self._give_up("the farm has no worker left")
                break
            self._dispatch(config, batches, todo, attempts, listener)
            calls = {s.hello: ("hello", s) for s in self._slots if s.hello is not None}
            calls.update({s.call: ("run", s) for s in self._slots if s.call is not None})
            calls.update({s.poll: ("poll", s) for s in self._slots if s.poll is not None})
            ready, _ = ray.wait(list(calls), num_returns=1, timeout=POLL_SECONDS)
            for ref in ready:
                what, slot = calls[ref]
                if what == "hello":
                    self._hello(slot)
                    waiting_since = time.monotonic()
                elif what == "poll":
                    slot.poll = None
                    try:
                        self._show(listener, ray.get(ref), shown)
                    except ray.exceptions.RayError:
                        pass  # the run() call reports what happened to the worker
                else:
                    finished = self._finished(slot, batches, todo, attempts, cache, listener, shown)
                    if finished is not None:
                        done[finished[0]] = finished[1]
            now = time.monotonic()
            for slot in self._slots:  # ask busy workers how far they are, every POLL_SECONDS
                if slot.call is not None and slot.poll is None and now - slot.polled >= POLL_SECONDS:
                    slot.poll, slot.polled = slot.actor.progress.remote(), now
            while next_out in done:  # results in batch order, as a local build gives them
                listener.batch_done(done[next_out])
                results += done[next_out]
                next_out += 1
            if all(s.hello is not None for s in self._slots) and time.monotonic() - waiting_since > START_TIMEOUT:
                self._give_up(f"no farm worker started within {START_TIMEOUT:.0f} s")
                break
        left = [batches[i] for i in sorted(set(range(len(batches))) - set(done))]
        if left:
            self._cancel_all()
        return left

    def _dispatch(
        self,
        config: ProjectConfig,
        batches: list[list[TrackPlan]],
        todo: deque[int],
        attempts: list[int],
        listener: Listener,
    ) -> None:
        for slot in self._slots:
            if not todo or slot.hello is not None or slot.call is not None:
                continue
            index = next((i for i in todo if _model(batches[i]) == slot.model), todo[0])
            todo.remove(index)
            slot.batch, slot.model = index, _model(batches[index])
            if attempts[index] == 0:
                for tp in batches[index]:
                    listener.started(tp)
            self.note(f"{slot.label}: batch {index + 1}/{len(batches)} ({len(batches[index])} track(s))")
            slot.call = slot.actor.run.remote(config, batches[index], _to_render(batches[index]))

    def _hello(self, slot: _Slot) -> None:
        ray = self.farm.ray  # type: ignore[union-attr]
        try:
            slot.info = ray.get(slot.hello)
        except ray.exceptions.RayError as exc:
            slot.hello = None
            self._lost(slot, exc)
            return
        slot.hello = None
        from .. import __version__

        if slot.info.get("version") != __version__:
            self.note(
                f"{slot.label} runs trackspec {slot.info.get('version')}, this build {__version__}; "
                "not used (install the same version on the workers)"
            )
            self._slots.remove(slot)
            ray.kill(slot.actor, no_restart=True)
            return
        self.note(f"{slot.label}: ready")

    def _finished(
        self,
        slot: _Slot,
        batches: list[list[TrackPlan]],
        todo: deque[int],
        attempts: list[int],
        cache: LocalCache,
        listener: Listener,
        shown: dict[str, tuple[int, int]],
    ) -> tuple[int, list[Generated]] | None:
        """A run() call returned: (the batch, its results), or ``None`` when the batch was requeued."""
        ray = self.farm.ray  # type: ignore[union-attr]
        index, call = slot.batch, slot.call
        slot.batch, slot.call = None, None
        assert index is not None
        batch = batches[index]
        try:
            reply = ray.get(call)
        except ray.exceptions.RayActorError as exc:
            attempts[index] += 1
            self._lost(slot, exc)
            if attempts[index] < MAX_ATTEMPTS:
                self.note(f"batch {index + 1} goes to another worker (attempt {attempts[index] + 1})")
                todo.appendleft(index)
                return None
            error = f"the farm lost the worker of this track's batch {attempts[index]} times"
            return index, [Generated(tp, 0.0, error=error) for tp in batch]
        except ray.exceptions.RayError as exc:  # the call failed without its worker dying
            error = f"farm: {type(exc).__name__}: {str(exc).strip().splitlines()[-1]}"
            return index, [Generated(tp, 0.0, error=error) for tp in batch]
        for message in reply["notes"]:
            self.note(f"{slot.label}: {message}")
        self._show(listener, reply["progress"], shown)
        return index, [self._received(slot, tp, track, cache) for tp, track in zip(batch, reply["tracks"])]

    def _received(self, slot: _Slot, tp: TrackPlan, reply: dict[str, Any], cache: LocalCache) -> Generated:
        """One track's entries verified into the local cache, as a team-cache restore is."""
        if reply["name"] != tp.name:
            return Generated(tp, reply["seconds"], error=f"{slot.label} answered for another track")
        raw = None
        try:
            for entry in reply.get("entries", []):
                key = tp.track.keys.generation if entry["kind"] == "raw" else tp.track.keys.render
                put = verified_put(cache, entry, key, slot.label)
                raw = put if entry["kind"] == "raw" else raw
        except (TrackspecError, OSError) as exc:
            return Generated(tp, reply["seconds"], error=str(exc))
        return Generated(tp, reply["seconds"], raw=raw, error=reply["error"])

    def _show(
        self, listener: Listener, progress: dict[str, tuple[int, int]], shown: dict[str, tuple[int, int]]
    ) -> None:
        for name, (steps, total) in progress.items():
            if shown.get(name) != (steps, total):
                shown[name] = (steps, total)
                listener.progress(name, steps, total)

    def _lost(self, slot: _Slot, exc: BaseException) -> None:
        """A worker died: say so, drop it, start a replacement."""
        cause = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        self.note(f"{slot.label} lost ({type(exc).__name__}: {cause[:200]})")
        if slot in self._slots:
            self._slots.remove(slot)
        try:
            self.farm.ray.kill(slot.actor, no_restart=True)  # type: ignore[union-attr]
        except Exception:
            pass
        self._replaced += 1
        if self._replaced <= 2 * self.farm.workers + MAX_ATTEMPTS:  # type: ignore[union-attr]
            self._start_worker()

    def _cancel_all(self) -> None:
        """Outstanding work is abandoned: busy workers stop at their next step."""
        for slot in self._slots:
            if slot.call is not None:
                slot.actor.cancel.remote()
                slot.call, slot.batch = None, None


def verified_put(cache: LocalCache, entry: dict[str, Any], key: str, source: str) -> Any:
    """Check a returned entry (manifest for ``key``, every file's size and sha256) and put it."""
    from ..errors import CacheCorrupt
    from ..remote.tier import RemoteCorrupt, checked_manifest

    kind = entry["kind"]
    try:
        manifest = checked_manifest(kind, key, entry["manifest"], source)
    except RemoteCorrupt as exc:
        raise CacheCorrupt(f"{source} returned a bad entry: {exc}") from None
    files = entry["files"]
    if set(files) != set(manifest["files"]):
        raise CacheCorrupt(f"{source} returned a {kind} entry whose files differ from its manifest")
    staging = cache.staging_dir()
    try:
        paths, digests = {}, {}
        for name, meta in manifest["files"].items():
            data = files[name]
            if len(data) != meta["bytes"] or hashlib.sha256(data).hexdigest() != meta["sha256"]:
                raise CacheCorrupt(f"{source} returned {kind} entry {key[:12]} with {name} not matching its manifest")
            (staging / name).write_bytes(data)
            paths[name], digests[name] = staging / name, meta["sha256"]
        return cache.put(kind, key, paths, manifest["info"], digests)
    finally:
        import shutil

        shutil.rmtree(staging, ignore_errors=True)


def _to_render(batch: list[TrackPlan]) -> set[str]:
    """The tracks a worker renders too: not audition takes (``audition.take_plans`` names them
    apart from their track, and ``audition`` renders them under their track's name itself)."""
    return {tp.name for tp in batch if "audition" not in tp.reasons}


def _model(batch: list[TrackPlan]) -> tuple:
    model = batch[0].track.model
    return (model.source, model.revision)


def _worker_class() -> type:
    from .worker import FarmWorker

    return FarmWorker
