"""The daemon's main loop: an initial build, then a planning cycle per settled change.

A cycle is the build's own plan and quick phase (restore, re-encode, index-only,
removal) under the repo lock, with one index write at its end; tracks that need
generation go to the worker. When the worker has put new raw audio in the cache it
pokes the loop, and the next cycle encodes and publishes it, but only if the spec still
asks for exactly that audio: a spec edited meanwhile simply plans a different key.
"""

from __future__ import annotations

import errno
import gc
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from .. import engines
from ..build import (
    BuildOptions,
    Executor,
    Reporter,
    TrackResult,
    make_plan,
    prefetch_output_digests,
    remote_session,
    sweep_leftovers,
)
from ..cache import LocalCache
from ..config import ProjectConfig, load_config, rel
from ..errors import TrackspecError
from ..fsutil import file_signature
from ..index import IndexFile
from ..layout import SPEC_SUFFIX
from ..locks import SharedRepoLock, Stopped, daemon_lock
from ..plan import Plan, TrackPlan, plan_build
from ..state import State
from ..tracks import (
    LoadedTrack,
    ParsedSpecs,
    SpecFailure,
    SpecLoader,
    dependents,
    input_files,
    link_chains,
    spec_paths,
    without_duplicates,
)
from .events import FolderWatches, OverflowAlarm, Wakeups, make_handler
from .worker import Generated, GenerationWorker

log = logging.getLogger(__name__)
#: The stat state is written at most this often while the daemon runs (and when it stops).
STATE_SAVE_SECONDS = 2.0


@dataclass
class WatchOptions:
    model_override: str | None = None
    override_base: Path | None = None
    #: Quiet time after the last relevant event before a cycle runs.
    debounce: float = 0.1
    #: Idle seconds after which the worker unloads the model (frees GPU memory).
    unload_after: float = 300.0
    #: Poll the file system every this many seconds instead of inotify (network shares).
    poll: float | None = None
    #: Keep the HTML report (``trackspec report``) current: rewrite it after each cycle that changed something.
    report: bool = False


class WatchReporter(Reporter, Protocol):
    def watching(self, root: Path, observer: str) -> None: ...
    def queue(self, generating: list[str], queued: list[str]) -> None: ...
    def generated(self, job: Generated) -> None: ...
    def error(self, message: str) -> None: ...
    def stopped(self, reason: str) -> None: ...


class Daemon:
    def __init__(self, root: Path, options: WatchOptions, reporter: WatchReporter):
        self.root = root
        self.options = options
        self.reporter = reporter
        self.config: ProjectConfig = load_config(root)
        self.build_options = BuildOptions(model_override=options.model_override, override_base=options.override_base)
        self.wakeups = Wakeups(options.debounce)
        self._stop_reason: str | None = None  # set from signal handlers: no locks there
        self._signals = 0
        self.lock = SharedRepoLock(self.config.state_dir, self._waiting_for_lock, self._stopping)
        self.worker = GenerationWorker(self.lock, reporter, self._on_generated, options.unload_after, self._stopping)
        self._jobs_lock = threading.Lock()
        self._generated: dict[str, Generated] = {}  # generation key -> job awaiting publication
        self._failed: dict[str, str] = {}  # generation key -> error; not retried until the key changes
        self._shown_failures: dict[str, str] = {}  # spec -> error last printed (printed once)
        self._first_cycle = True
        self._freeze_due = False
        self._planned_all = False
        self._parsed = ParsedSpecs()
        #: Every spec as the last cycles loaded it (before the duplicate-name check), by path;
        #: ``None``: plan everything in the next cycle.
        self._known: dict[Path, LoadedTrack | SpecFailure] | None = None
        self._config_digest = ""
        self._rescan_due = False
        #: Specs to plan again in the next cycle although no event named them (generated audio arrived).
        self._replan: set[Path] = set()
        #: The files besides specs that tracks are made from (``tracks.input_files``), by spec
        #: path, and which specs use each: a change to one re-plans those specs.
        self._inputs_of: dict[Path, list[Path]] = {}
        self._input_users: dict[Path, set[Path]] = {}
        #: Published files by path, and the spec of the track each belongs to: one edited or
        #: deleted by hand re-plans that spec (the files come back from the cache).
        self._outputs_of: dict[str, list[Path]] = {}
        self._output_specs: dict[Path, Path] = {}
        self._watch_due = False  # the sets of inputs or outputs changed: tell the watches
        #: Tracks waiting for generation, by name (what the worker's queue is made of).
        self._wanted: dict[str, TrackPlan] = {}
        #: The index and the stat state as the last cycle left them: read again only when
        #: another process (a `trackspec build`) changed their files.
        self._index_file = IndexFile(self.config.index_path)
        self._state: tuple[Path, tuple[int, int, int] | None, State] | None = None
        self._state_saved_at = float("-inf")
        self._last_queue: tuple[list[str], list[str]] = ([], [])
        self._report_due = options.report  # the first cycle writes it
        self._auditions: dict[str, list[TrackPlan]] = {}  # request id -> its take jobs (``requests``)
        self.watches: FolderWatches | None = None

    # ------------------------------------------------------------------ life
    def run(self) -> int:
        watch_lock = daemon_lock(self.config.state_dir)
        try:
            self._install_signal_handlers()
            observer = self._start_observer()
            self.worker.start()
            try:
                self.wakeups.poke("initial build")
                while (work := self.wakeups.wait(self._stopping)) is not None:
                    try:
                        self._cycle(*work)
                    except Exception as exc:  # a daemon outlives its bugs; the next save retries
                        log.debug("cycle failed", exc_info=True)
                        self.reporter.error(
                            f"internal error: {type(exc).__name__}: {exc} (run with -v for the traceback)"
                        )
            finally:
                self.worker.stop()
                observer.stop()
                observer.join(5)
                worker_done = self.worker.join(30)
                if self._state is not None:
                    self._state[2].save()  # what the last cycles kept in memory
            self.reporter.stopped(self._stop_reason or "stopped")
        finally:
            watch_lock.release()
        if not worker_done:  # stuck in a model load: nothing of it is on disk yet
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(0)
        return 0

    def _stopping(self) -> bool:
        return self._stop_reason is not None

    def _install_signal_handlers(self) -> None:
        def handler(signum: int, _frame: Any) -> None:
            self._signals += 1
            if self._signals > 1:
                # Second Ctrl-C: out at once. Files bound for the assets are staged in the
                # state dir and renamed into place, so nothing partial is left there.
                os.write(2, b"trackspec: stopped at once\n")
                os._exit(130)
            self._stop_reason = f"{signal.Signals(signum).name}: finishing the current step, then exiting"

        signal.signal(signal.SIGINT, handler)
        signal.signal(signal.SIGTERM, handler)

    def _start_observer(self):
        from watchdog.observers import Observer
        from watchdog.observers.polling import PollingObserver

        alarm = OverflowAlarm(self._rescan)
        logging.getLogger("watchdog").addHandler(alarm)
        handler = make_handler(lambda: self.config, self.wakeups, lambda: self.watches)
        observer = PollingObserver(timeout=self.options.poll) if self.options.poll else Observer()
        self.watches = FolderWatches(observer, handler, lambda: self.config)  # no ignored tree is watched
        try:
            self.watches.schedule_all()
            observer.start()
        except OSError as exc:
            if exc.errno not in (errno.ENOSPC, errno.EMFILE):
                raise
            self.reporter.error(
                f"cannot watch {self.root} with inotify ({exc.strerror}); polling every 1 s instead. "
                "Raise the limit with `sudo sysctl fs.inotify.max_user_watches=524288` "
                "(and max_user_instances), or use --poll SECONDS"
            )
            observer = PollingObserver(timeout=1.0)
            self.watches = FolderWatches(observer, handler, lambda: self.config)
            self.watches.schedule_all()
            observer.start()
            self._rescan("switched to polling")
        kind = f"polling every {self.options.poll or 1.0:g} s" if isinstance(observer, PollingObserver) else "inotify"
        self.reporter.watching(self.root, kind)
        return observer

    def _rescan(self, why: str) -> None:
        self.reporter.error(f"{why}; rescanning every spec")
        with self._jobs_lock:
            self._rescan_due = True
        self.wakeups.poke("rescan")

    def _waiting_for_lock(self) -> None:
        self.reporter.note("waiting for another trackspec process to release the repo lock ...")

    # ----------------------------------------------------------------- cycle
    def _cycle(self, changes: list[str] | None = None, reasons: list[str] | None = None) -> None:
        try:
            config = load_config(self.root)
        except TrackspecError as exc:
            self._show_failure("trackspec.toml", str(exc))
            return
        self._shown_failures.pop("trackspec.toml", None)
        changed_config = config.digest != self.config.digest
        self.config = config
        if changed_config and self.watches is not None:
            self.watches.schedule_all(tolerant=True)  # `specs` may name other folders now (only added)
        try:
            with self.lock.held():
                state = self._kept_state(config)
                kept = False
                try:
                    plan, known = self._plan(config, state, [Path(c) for c in changes or []])
                    if self._first_cycle:
                        sweep_leftovers(config, plan)
                        self._first_cycle = False
                    listed_before = engines.snapshot(config, plan.index)
                    executor = Executor(
                        config,
                        plan,
                        state,
                        _CycleReporter(self, plan),
                        index_flush_seconds=None,
                        remote=remote_session(config),
                        index_texts=self._index_file.texts,
                    )
                    pending = executor.run_quick()
                    self._index_file.keep(plan.index)  # what is on disk now: no need to read it back
                    self._note_outputs(config, plan)
                    engines.sync(config, plan.index, listed_before)  # Godot .import sidecars
                    if self.options.report and (self._report_due or any(r.action != "fresh" for r in executor.results)):
                        self._write_report(config, state)
                    kept = True
                finally:
                    # The stat state is a cache (losing it costs a re-hash): with thousands of
                    # files, writing it after every save would cost more than the cycle itself.
                    if not kept or time.monotonic() - self._state_saved_at >= STATE_SAVE_SECONDS:
                        state.save()
                        self._state_saved_at = time.monotonic()
                    self._keep_state(state if kept else None)
                    if not kept:
                        self._index_file.forget()
        except Stopped:
            return
        except TrackspecError as exc:  # an unreadable index: say so, keep watching
            self._show_failure("index", str(exc))
            return
        self._shown_failures.pop("index", None)
        if self._freeze_due:
            # Thousands of specs loaded, planned and indexed make many long-lived objects,
            # and a full garbage collection walks all of them (tens of ms, at random
            # cycles). Frozen, collections skip them until the next full cycle.
            self._freeze_due = False
            self._index_file.warm(plan.index)
            gc.collect()
            gc.freeze()
        takes = self._serve_auditions(config)
        names = {track.spec.name for track in known}
        for tp in plan.tracks:  # planned again: generation is wanted only if it still says so
            self._wanted.pop(tp.name, None)
        self._wanted = {name: tp for name, tp in self._wanted.items() if name in names}
        self._wanted.update((tp.name, tp) for tp in pending)
        with self._jobs_lock:
            current = {track.keys.generation for track in known}
            self._generated = {k: g for k, g in self._generated.items() if k in current}
            wanted = [tp for tp in self._wanted.values() if tp.track.keys.generation not in self._failed]
        self.worker.submit(config, wanted + takes)
        queue = self.worker.snapshot()
        if queue != self._last_queue:
            self._last_queue = queue
            self.reporter.queue(*queue)

    def _kept_state(self, config: ProjectConfig) -> State:
        """The stat state the last cycle saved, unless its file changed since (or moved)."""
        if self._state is not None:
            path, signature, state = self._state
            if path.parent == config.state_dir and signature == file_signature(path):
                return state
        return State.in_folder(config.state_dir)

    def _keep_state(self, state: State | None) -> None:
        self._state = None if state is None else (state.path, file_signature(state.path), state)

    def _plan(self, config: ProjectConfig, state: State, changes: list[Path]) -> tuple[Plan, list[LoadedTrack]]:
        """Plan the specs this cycle concerns; return the plan and every track that loads.

        The first cycle, a rescan, an edit of ``trackspec.toml`` and any change that is not
        a spec file (a folder moved or deleted) plan every spec. Otherwise only the specs
        the events named, those whose generated audio arrived, and those that failed last
        time (a duplicate name may have gone) are loaded and planned again; the others are
        as the last cycles left them (up to date) and only claim their names.
        """
        from .requests import is_request

        with self._jobs_lock:
            replan, self._replan = self._replan, set()
            rescan, self._rescan_due = self._rescan_due, False
        changes = [path for path in changes if not is_request(config, path)]
        inputs_changed = [path for path in changes if path in self._input_users]
        outputs_changed = [path for path in changes if path in self._output_specs]
        changes = [path for path in changes if path not in self._input_users and path not in self._output_specs]
        loader = SpecLoader(
            config, state, self.build_options.model_override, self.build_options.override_base, self._parsed
        )
        full = (
            rescan
            or self._known is None
            or config.digest != self._config_digest
            or any(not path.name.endswith(SPEC_SUFFIX) for path in changes)
        )
        self._config_digest = config.digest
        if full:
            gc.unfreeze()  # what the last full cycle froze may be garbage now (see _cycle)
            self._freeze_due = True
            paths = list(spec_paths(config))
            self._parsed.keep_only(set(paths))
            self._known = {path: loader.load(path) for path in paths}
            dirty = set(paths)
        else:
            assert self._known is not None
            failed = {path for path, result in self._known.items() if isinstance(result, SpecFailure)}
            dirty = set(changes) | replan | failed
            for path in inputs_changed:
                dirty |= self._input_users[path]
            dirty |= {self._output_specs[path] for path in outputs_changed}
            for path in dirty:
                if path.is_file() and path.name.endswith(SPEC_SUFFIX):
                    self._known[path] = loader.load(path)
                else:
                    self._known.pop(path, None)
        self._note_inputs(config, dirty)
        self._planned_all = full
        loaded, failures = without_duplicates(
            [r for r in self._known.values() if isinstance(r, LoadedTrack)],
            [r for r in self._known.values() if isinstance(r, SpecFailure)],
            config,
        )
        loaded, failures = link_chains(loaded, failures)
        dirty |= {f.path for f in failures}
        # What depends on them: a track continuing a re-planned one has a new key or new audio to continue.
        again = dependents(loaded, {t.spec.name for t in loaded if t.spec.path in dirty})
        dirty |= {t.spec.path for t in loaded if t.spec.name in again}
        planned = [t for t in loaded if t.spec.path in dirty]
        others = [t for t in loaded if t.spec.path not in dirty]
        if self._index_file.path != config.index_path:
            self._index_file = IndexFile(config.index_path)
        index = self._index_file.load()
        prefetch_output_digests(config, planned, index, state)
        return plan_build(config, planned, failures, index, LocalCache(config.cache_dir), state, others), loaded

    def _note_inputs(self, config: ProjectConfig, planned: set[Path]) -> None:
        """Which files besides specs the ``planned`` specs are made from (``_note_outputs``
        then tells the watches, with the published files)."""
        assert self._known is not None
        if len(planned) >= len(self._known):
            self._inputs_of = {}
        for path in planned:
            self._inputs_of.pop(path, None)
            result = self._known.get(path)
            if isinstance(result, SpecFailure):  # it may fail for want of that very file
                try:
                    spec = self._parsed.parse(path, config)
                except TrackspecError:
                    continue
            elif result is not None:
                spec = result.spec
            else:
                continue
            if files := input_files(config, spec):
                self._inputs_of[path] = files
        users: dict[Path, set[Path]] = {}
        for spec_path, files in self._inputs_of.items():
            for file in files:
                users.setdefault(file, set()).add(spec_path)
        self._watch_due |= users.keys() != self._input_users.keys()
        self._input_users = users

    def _note_outputs(self, config: ProjectConfig, plan: Plan) -> None:
        """Which published files belong to which spec, after a cycle; watch them and the inputs."""
        tracks = plan.index["tracks"]
        specs = {tp.name: tp.track.spec.path for tp in plan.tracks}
        if self._planned_all:
            self._outputs_of, self._output_specs = {}, {}
            names: Iterable[str] = tracks
        else:
            names = [*specs, *(r.name for r in plan.removals)]
        for name in names:
            old = self._outputs_of.pop(name, [])
            for path in old:
                self._output_specs.pop(path, None)
            entry = tracks.get(name)
            spec = specs.get(name) or (config.root / entry["spec"] if entry and entry.get("spec") else None)
            paths = (
                []
                if entry is None or spec is None
                else [Path(os.path.normpath(config.root / f["path"])) for f in entry.get("files", {}).values()]
            )
            if paths and spec is not None:
                self._outputs_of[name] = paths
                self._output_specs.update((path, spec) for path in paths)
            self._watch_due |= paths != old
        if self._watch_due and self.watches is not None:
            self._watch_due = False
            self.watches.watch_files(set(self._input_users), set(self._output_specs))

    def _serve_auditions(self, config: ProjectConfig) -> list[TrackPlan]:
        """Take new audition requests, answer finished ones; return the take jobs still to generate.

        Takes go through the worker like tracks (its model stays loaded) but are never
        published: their keys are in no plan. The CLI that asked encodes them.
        """
        from ..audition import find_track, take_of_seed, take_plans
        from ..cache import LocalCache
        from .requests import answer, take_requests

        for request_id, request in take_requests(config):
            try:
                if "invalid" in request:
                    raise ValueError(request["invalid"])
                name = request["name"]
                track = find_track(config, name, request.get("model"), Path(request.get("cwd") or self.root))
                self._auditions[request_id] = take_plans(
                    track, [int(n) for n in request["takes"]], request.get("seconds")
                )
            except (TrackspecError, KeyError, TypeError, ValueError) as exc:
                answer(config, request_id, {"error": f"audition request refused: {exc}"})
                continue
            self.reporter.note(f"audition of {name}: {len(self._auditions[request_id])} takes queued")
        cache = LocalCache(config.cache_dir)
        waiting = []
        for request_id, plans in list(self._auditions.items()):
            keys = [tp.track.keys.generation for tp in plans]
            with self._jobs_lock:
                errors = {
                    take_of_seed(tp.track.keys.seed): self._failed[k] for tp, k in zip(plans, keys) if k in self._failed
                }
            left = [tp for tp, k in zip(plans, keys) if k not in self._failed and not cache.has("raw", k)]
            if left:
                waiting += left
                continue
            answer(config, request_id, {"errors": errors})
            del self._auditions[request_id]
            with self._jobs_lock:  # an audition may try a failed take again
                for key in keys:
                    self._failed.pop(key, None)
        return waiting

    def _write_report(self, config: ProjectConfig, state: State) -> None:
        """Rewrite the HTML report from a fresh plan (stat only: the cycle just brought it up to date)."""
        from ..report import write_report

        self._report_due = False
        try:
            page = write_report(config, make_plan(config, self.build_options, state, self._parsed))
        except Exception as exc:  # a report is a view: it never stops the daemon
            self.reporter.error(f"report not written: {type(exc).__name__}: {exc}")
            return
        self.reporter.note(f"report written: {page}")

    def _on_generated(self, jobs: list[Generated]) -> None:
        """From the worker thread: raw audio is in the cache (or the job failed)."""
        self._report_due = True  # published by the next cycle
        with self._jobs_lock:
            for job in jobs:
                self._replan.add(job.plan.track.spec.path)
                key = job.plan.track.keys.generation
                if job.error:
                    self._failed[key] = job.error
                else:
                    self._generated[key] = job
        for job in jobs:
            self.reporter.generated(job)
            if job.error:
                tp = job.plan
                self.reporter.finished(
                    TrackResult(
                        tp.name,
                        rel(self.config, tp.track.spec.path),
                        "generate",
                        list(tp.reasons),
                        ok=False,
                        error=job.error,
                        seconds=job.seconds,
                    )
                )
        self.wakeups.poke("generation finished")

    def report(self, result: TrackResult, tp: TrackPlan | None) -> None:
        """A cycle's track result: print what changed, each failure once."""
        if not result.ok:
            self._show_failure(result.spec, result.error or "failed", result)
            return
        self._shown_failures.pop(result.spec, None)
        job = None
        if tp is not None:
            with self._jobs_lock:
                job = self._generated.pop(tp.track.keys.generation, None)
        if job is not None:  # the worker's audio, published now: one line for the whole job
            result.action = "generate"
            result.reasons = list(job.plan.reasons)
            result.seconds += job.seconds
        elif result.action == "fresh":
            return
        self.reporter.finished(result)

    def _show_failure(self, where: str, message: str, result: TrackResult | None = None) -> None:
        if self._shown_failures.get(where) == message:
            return
        self._shown_failures[where] = message
        if result is not None:
            self.reporter.finished(result)
        else:
            self.reporter.error(message)


class _CycleReporter:
    """The executor's reporter during a cycle: routes track results through the daemon."""

    def __init__(self, daemon: Daemon, plan: Plan):
        self.daemon = daemon
        self.plans = {tp.name: tp for tp in plan.tracks}

    def note(self, message: str) -> None:
        self.daemon.reporter.note(message)

    def started(self, plan: TrackPlan) -> None:
        pass

    def progress(self, name: str, done: int, total: int) -> None:
        self.daemon.reporter.progress(name, done, total)

    def finished(self, result: TrackResult) -> None:
        self.daemon.report(result, self.plans.get(result.name or ""))

    def index_written(self, path: Path, tracks: int) -> None:
        self.daemon.reporter.index_written(path, tracks)
