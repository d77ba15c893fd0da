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
from collections.abc import Callable
from typing import Any

from .. import generation
from ..cache import LocalCache
from ..config import ProjectConfig
from ..generation import Cancelled, Generated, KeptModel, generation_batches, split_by_generation_key
from ..keys import continued_key
from ..locks import SharedRepoLock, Stopped
from ..plan import TrackPlan

__all__ = ["Cancelled", "Generated", "GenerationWorker"]

#: Batches whose cache pins the worker keeps (the daemon publishes a batch in the next cycle).
HELD_BATCHES = 4


class GenerationWorker:
    def __init__(
        self,
        lock: SharedRepoLock,
        reporter: Any,
        on_done: Callable[[list[Generated]], None],
        unload_after: float,
        should_stop: Callable[[], bool],
    ):
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
        #: The model, kept loaded between batches (``generation.KeptModel``).
        self._model = KeptModel(reporter.note)
        #: Generation on the farm (``farm.client.FarmGenerator``), set by ``watch --farm``/``[farm]``.
        self.farm: Any = None
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
            # A cycle that planned while this thread generated may ask for audio now in the cache
            # (a chain's next track, planned when the one it continues arrived): the poke that
            # stored it brings the cycle that publishes it.
            cache = LocalCache(config.cache_dir)
            wanted = {
                tp.name: tp
                for tp in plans
                if tp.track.keys.generation not in busy and not cache.has("raw", tp.track.keys.generation)
            }
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
            self._model.close()

    def _next_batch(self) -> list[TrackPlan] | None:
        with self._cond:
            while not self._pending and not self._stopping:
                if self._model.loaded:
                    idle = time.monotonic() - self._idle_since
                    if idle >= self.unload_after:
                        self._model.close()
                        self.reporter.note(f"model unloaded after {idle:.0f} s idle")
                        continue
                    self._cond.wait(self.unload_after - idle)
                else:
                    self._cond.wait()
            if self._stopping:
                return None
            assert self._config is not None
            leaders, _ = split_by_generation_key(list(self._pending.values()))
            # A track that continues one still queued waits for it (its audio primes this one).
            waiting = {tp.track.keys.generation for tp in leaders}
            leaders = [tp for tp in leaders if continued_key(tp.track.keys.generation_inputs) not in waiting] or leaders
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

    def _generate(
        self, config: ProjectConfig, cache: LocalCache, batch: list[TrackPlan], start: float
    ) -> list[Generated]:
        self._model.config = config
        generate = self.farm.generate if self.farm is not None else generation.generate
        results = generate(config, batch, cache, self._model, generation.Listener(progress=self._progress))
        for result in results:  # the job's time includes its wait for the lock
            result.seconds = time.monotonic() - start
        return results

    def _progress(self, name: str, done: int, total: int) -> None:
        if self._stopping or self._should_stop():
            raise Cancelled()
        self.reporter.progress(name, done, total)
