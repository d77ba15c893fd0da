"""The generation worker: one thread, one loaded model, a queue that keeps only the newest.

The planning cycle submits every track that needs generation; a resubmitted track
replaces its queued version (repeated edits of a spec generate only the newest content)
and a track no longer submitted leaves the queue. The worker generates, stores the raw
audio in the cache under its own generation key and reports back; it never publishes.
The model stays loaded between jobs and is unloaded after ``unload_after`` idle seconds.
"""

from __future__ import annotations

import collections
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

from ..build import (generation_batches, generation_request, model_field, model_load_error,
                     split_by_generation_key, store_raw)
from ..cache import LocalCache
from ..config import ProjectConfig
from ..errors import TrackspecError
from ..plan import TrackPlan
from .locks import SharedRepoLock, Stopped


#: Batches whose cache pins the worker keeps (the daemon publishes a batch in the next cycle).
HELD_BATCHES = 4

class Cancelled(Exception):
    """Raised from the progress callback to abandon a generation when the daemon stops."""


@dataclass
class Generated:
    """One finished job: the raw audio is in the cache unless ``error`` says why not."""

    plan: TrackPlan
    seconds: float
    error: str | None = None


class GenerationWorker:
    def __init__(self, lock: SharedRepoLock, reporter: Any, on_done: Callable[[list[Generated]], None],
                 unload_after: float, should_stop: Callable[[], bool]):
        self.lock = lock
        self._should_stop = should_stop
        self.reporter = reporter
        self.on_done = on_done
        self.unload_after = unload_after
        self._cond = threading.Condition()
        self._pending: dict[str, TrackPlan] = {}
        self._in_flight: dict[str, str] = {}  # name -> generation key
        self._config: ProjectConfig | None = None
        self._stopping = False
        self._backend: Any = None
        self._backend_id: tuple | None = None
        self._idle_since = time.monotonic()
        #: The caches of the last batches: each pins the raw audio it stored until the next
        #: cycles have published it, so a concurrent `cache gc` never takes what was just made.
        self._holding: collections.deque = collections.deque(maxlen=HELD_BATCHES)
        self._thread = threading.Thread(target=self._loop, name="trackspec-generation", daemon=True)

    # ------------------------------------------------------------ from the cycle
    def start(self) -> None:
        self._thread.start()

    def submit(self, config: ProjectConfig, plans: list[TrackPlan]) -> None:
        """Make ``plans`` the queue (newest content per track); in-flight jobs are not repeated."""
        with self._cond:
            self._config = config
            busy = set(self._in_flight.values())
            wanted = {tp.name: tp for tp in plans if tp.track.keys.generation not in busy}
            self._pending = {name: wanted[name] for name in [*self._pending, *wanted] if name in wanted}
            self._cond.notify_all()

    def snapshot(self) -> tuple[list[str], list[str]]:
        """(names being generated, names queued)."""
        with self._cond:
            return sorted(self._in_flight), [n for n in self._pending if n not in self._in_flight]

    def stop(self) -> None:
        """Stop taking work and abandon the generation in progress (at its next step)."""
        with self._cond:
            self._stopping = True
            self._pending.clear()
            self._cond.notify_all()

    def join(self, timeout: float) -> bool:
        self._thread.join(timeout)
        return not self._thread.is_alive()

    # ---------------------------------------------------------------- the thread
    def _loop(self) -> None:
        try:
            while True:
                batch = self._next_batch()
                if batch is None:
                    return
                try:
                    self._run(batch)
                finally:
                    with self._cond:
                        self._in_flight.clear()
                        self._idle_since = time.monotonic()
        finally:
            self._unload()

    def _next_batch(self) -> list[TrackPlan] | None:
        with self._cond:
            while not self._pending and not self._stopping:
                if self._backend is not None:
                    idle = time.monotonic() - self._idle_since
                    if idle >= self.unload_after:
                        self._unload()
                        self.reporter.note(f"model unloaded after {idle:.0f} s idle")
                        continue
                    self._cond.wait(self.unload_after - idle)
                else:
                    self._cond.wait()
            if self._stopping:
                return None
            assert self._config is not None
            leaders, _ = split_by_generation_key(list(self._pending.values()))
            batch = next(iter(generation_batches(leaders, self._config.batch_size).values()))[0]
            keys = {tp.track.keys.generation for tp in batch}
            for tp in batch:
                self._in_flight[tp.name] = tp.track.keys.generation
            # Tracks with the same audio wait for none: the next cycle restores them from the cache.
            self._pending = {n: tp for n, tp in self._pending.items() if tp.track.keys.generation not in keys}
            return batch

    def _run(self, batch: list[TrackPlan]) -> None:
        config = self._config
        assert config is not None
        cache = LocalCache(config.cache_dir)
        self._holding.append(cache)
        start = time.monotonic()
        done: list[Generated] = []
        todo: list[TrackPlan] = []
        for tp in batch:  # a `trackspec build` may have made it while this waited in the queue
            if cache.has("raw", tp.track.keys.generation):
                done.append(Generated(tp, 0.0))
            else:
                todo.append(tp)
        try:
            if todo:
                with self.lock.held():
                    done += self._generate(config, cache, todo, start)
        except (Stopped, Cancelled):
            return
        self.on_done(done)

    def _generate(self, config: ProjectConfig, cache: LocalCache, batch: list[TrackPlan],
                  start: float) -> list[Generated]:
        model = batch[0].track.model
        try:
            backend = self._load(config, model.source, model.revision)
        except Exception as exc:
            message = model_load_error(model.source, exc)
            return [Generated(tp, time.monotonic() - start, f"{model_field(config, tp.track)}: {message}")
                    for tp in batch]
        try:
            audios = backend.generate([generation_request(tp) for tp in batch], progress=self._progress)
        except Cancelled:
            raise
        except Exception as exc:  # the batch fails; each of its tracks says why
            audios = [exc] * len(batch)
        results = []
        for tp, audio in zip(batch, audios):
            error = None
            if isinstance(audio, Exception):
                error = str(audio) if isinstance(audio, TrackspecError) else f"{type(audio).__name__}: {audio}"
            else:
                try:
                    store_raw(cache, tp.track, audio, backend)
                except (OSError, TrackspecError) as exc:
                    error = f"cannot store the generated audio in the cache: {exc}"
            results.append(Generated(tp, time.monotonic() - start, error))
        return results

    def _load(self, config: ProjectConfig, source: str, revision: str | None) -> Any:
        from ..generate.base import load_backend

        wanted = (source, revision, config.device, config.batch_size)
        if self._backend is not None and self._backend_id == wanted:
            return self._backend
        self._unload()
        start = time.monotonic()
        self._backend = load_backend(source, revision, config.device, config.batch_size)
        self._backend_id = wanted
        self.reporter.note(f"model loaded: {self._backend.description} ({time.monotonic() - start:.1f} s); "
                           "kept loaded between generations")
        return self._backend

    def _unload(self) -> None:
        if self._backend is not None:
            self._backend.close()
            self._backend, self._backend_id = None, None

    def _progress(self, name: str, done: int, total: int) -> None:
        if self._stopping or self._should_stop():
            raise Cancelled()
        self.reporter.progress(name, done, total)
