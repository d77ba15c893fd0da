"""Execute a plan: restore, encode, generate, publish. Owns the repository lock.

Order of work: index-only changes, cache restores and re-encodes from cached raw audio
(the quick phase), removals, then generation (one model load per model, batches of
tracks that share model and length). The index is rewritten at most every
``index_flush_seconds`` while work goes on and once at the end, so the engine sees
progress, a crash loses only what was in flight, and a thousand restores do not mean a
thousand index rewrites. Audio libraries and torch are imported only when a track needs
them. ``watch`` runs the quick phase itself and hands generation to its worker.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol

from .cache import CacheEntry, LocalCache
from .config import ProjectConfig
from .errors import GenerationError, LockBusy, TrackspecError
from .fsutil import atomic_write_bytes, ensure_state_dir, sweep_temp_files
from . import pending
from .generate.base import GenerationRequest
from .index import load_index, needs_rewrite, write_index
from .plan import (AUDIO_FACTS, LoadedTrack, ParsedSpecs, Plan, TrackPlan, index_entry, load_tracks,
                   output_paths, plan_build, rel)
from .publish import publish_entry, remove_owned
from .render_pool import InOrder, RenderJob, RenderPool
from .state import PARALLEL_MIN_BYTES, State
from .tags import tags_for

log = logging.getLogger(__name__)


@dataclass
class TrackResult:
    """What happened to one track (or one spec that failed to parse)."""

    name: str | None
    spec: str
    action: str
    reasons: list[str] = field(default_factory=list)
    ok: bool = True
    error: str | None = None
    files: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0
    #: The track's generation and render keys (what the published files are, when ok).
    keys: dict[str, str] = field(default_factory=dict)


@dataclass
class BuildReport:
    results: list[TrackResult]
    index_path: Path
    checked_only: bool = False

    @property
    def ok(self) -> bool:
        if self.checked_only:
            return all(r.action == "fresh" for r in self.results)
        return all(r.ok for r in self.results)


class Reporter(Protocol):
    """Where the build says what it does (the CLI prints, tests may collect)."""

    def note(self, message: str) -> None: ...
    def started(self, plan: TrackPlan) -> None: ...
    def progress(self, name: str, done: int, total: int) -> None: ...
    def finished(self, result: TrackResult) -> None: ...
    def index_written(self, path: Path, tracks: int) -> None: ...


@dataclass
class BuildOptions:
    model_override: str | None = None
    override_base: Path | None = None
    check: bool = False
    wait_for_lock: bool = True
    #: Rewrite the index at most this often while tracks finish (and always at the end).
    index_flush_seconds: float = 0.5
    #: When the build began (before the project was read): files changed within a second
    #: of it are not trusted by the no-op record (``fastpath``).
    started_ns: int = field(default_factory=time.time_ns)
    #: Team cache failures fail the build (CI) instead of one warning and a local build.
    require_remote: bool = False


def repo_lock(config: ProjectConfig, reporter: Reporter, wait: bool):
    """The one-per-repo lock (a file in the state folder), waiting with a message if held."""
    from filelock import FileLock, Timeout

    ensure_state_dir(config.state_dir)
    lock = FileLock(str(config.state_dir / "lock"))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        if not wait:
            raise LockBusy(f"another trackspec process is building {config.root} "
                           f"(lock {config.state_dir / 'lock'}); try again when it finishes") from None
        reporter.note("waiting for another trackspec process to finish ...")
        lock.acquire()
    return lock


def run_build(config: ProjectConfig, options: BuildOptions, reporter: Reporter) -> BuildReport:
    """Plan and (unless ``options.check``) execute the build of every track."""
    if options.check:
        plan = inspect_plan(config, options)
        return BuildReport(_check_results(config, plan), config.index_path, checked_only=True)
    lock = repo_lock(config, reporter, options.wait_for_lock)
    try:
        state = State(config.state_dir / "state.json")
        try:
            plan = make_plan(config, options, state)
            noop = is_noop(plan)
            sweep_leftovers(config, plan)
            report = Executor(config, plan, state, reporter, options.index_flush_seconds,
                              remote_session(config, options.require_remote)).run()
            if noop and report.ok:
                record_noop(config, options, plan)
            return report
        finally:
            state.save()
    finally:
        lock.release()


def is_noop(plan: Plan) -> bool:
    """Every track fresh, nothing to remove, no spec failing: what the no-op record describes."""
    return not plan.failures and not plan.removals and all(tp.action == "fresh" for tp in plan.tracks)


def record_noop(config: ProjectConfig, options: BuildOptions, plan: Plan) -> None:
    """Let the next build answer from stat calls (``fastpath``); losing the record costs one full plan."""
    from .fastpath import write_record

    try:
        why_not = write_record(config, options, plan)
    except OSError as exc:
        why_not = f"cannot write it: {exc}"
    if why_not:
        log.debug("no-op record not written: %s", why_not)
    else:
        log.debug("no-op record written: the next build checks %d specs by stat alone", len(plan.tracks))


def remote_session(config: ProjectConfig, require: bool = False):
    """The team cache session of a build (``None`` without ``[cache.remote]``); opens nothing yet."""
    if config.remote is None:
        return None
    from .remote.session import RemoteSession

    return RemoteSession(config.remote, LocalCache(config.cache_dir), require)


def inspect_plan(config: ProjectConfig, options: BuildOptions) -> Plan:
    """The plan a build would execute, made without the lock and without writing anything.

    Only the stat cache is refreshed, and only where it already exists (as `git status`
    refreshes its index): `--check`, `plan` and `status` create no file in a repo.
    """
    state = State(config.state_dir / "state.json")
    plan = make_plan(config, options, state)
    if config.state_dir.is_dir():
        state.save()
    return plan


def sweep_leftovers(config: ProjectConfig, plan: Plan) -> None:
    """Remove what killed processes left: temp files where outputs go, staging in the cache.

    Only the folders this build writes to are looked at (not the whole assets tree), and
    only under the repo lock, where no other build of this repo is writing.
    """
    folders = {config.index_path.parent}
    folders |= {config.assets_dir / t.track.spec.genre for t in plan.tracks}
    folders |= {(config.root / f["path"]).parent for r in plan.removals for f in r.entry.get("files", {}).values()}
    for folder in folders:
        sweep_temp_files(folder, recursive=False)
    sweep_temp_files(config.staging_dir, recursive=False)
    pending.replay(config.root, config.assets_dir, config.state_dir, plan.index)
    LocalCache(config.cache_dir).sweep_abandoned()


def make_plan(config: ProjectConfig, options: BuildOptions, state: State,
              parsed: ParsedSpecs | None = None) -> Plan:
    """Load every spec and plan it against the index, the cache and the state."""
    loaded, failures = load_tracks(config, state, options.model_override, options.override_base, parsed)
    index = load_index(config.index_path)
    prefetch_output_digests(config, loaded, index, state)
    return plan_build(config, loaded, failures, index, LocalCache(config.cache_dir), state)


def prefetch_output_digests(config: ProjectConfig, loaded: list[LoadedTrack], index: dict[str, Any],
                            state: State) -> None:
    """Hash ahead, in parallel where that pays (``State.digest_many``), the published files the
    plan will compare: those of index entries whose render is still the track's.

    Small files (by the sizes the index recorded) are left to the plan, without even the
    extra stat pass: threads only slow their hashing down.
    """
    renders = {track.spec.name: track.keys.render for track in loaded}
    files = [info for name, entry in index["tracks"].items()
             if renders.get(name) is not None and entry.get("keys", {}).get("render") == renders[name]
             for info in entry.get("files", {}).values() if isinstance(info.get("path"), str)]
    recorded = sum(info["bytes"] for info in files if isinstance(info.get("bytes"), int))
    if len(files) < 2 or recorded < PARALLEL_MIN_BYTES * len(files):
        return
    state.digest_many([config.root / info["path"] for info in files], workers=min(2, os.cpu_count() or 1))


def _check_results(config: ProjectConfig, plan: Plan) -> list[TrackResult]:
    results = [TrackResult(None, rel(config, f.path), "failed", ok=False, error=f.message)
               for f in plan.failures]
    results += [TrackResult(r.name, r.entry.get("spec", ""), "remove", [r.reason]) for r in plan.removals]
    results += [TrackResult(t.name, rel(config, t.track.spec.path), t.action, t.reasons) for t in plan.tracks]
    return results


class Executor:
    """Carries out one plan under the lock.

    Renders (resample, encode, verify) run on a pool of ``config.encode_workers`` threads;
    everything else, publication, index, state and reporter, stays on the calling thread
    and happens in plan order, so the results do not depend on the number of workers.
    """

    def __init__(self, config: ProjectConfig, plan: Plan, state: State, reporter: Reporter,
                 index_flush_seconds: float | None = 0.5, remote: Any = None):
        self.config = config
        #: The team cache (``remote.session.RemoteSession``), consulted on local misses only.
        self.remote = remote
        self.plan = plan
        self.state = state
        self.reporter = reporter
        self.cache = LocalCache(config.cache_dir)
        self.index = plan.index
        self.results: list[TrackResult] = []
        self.flush_seconds = index_flush_seconds
        self._index_dirty = needs_rewrite(self.index)  # malformed entries were dropped: write it back
        self._last_flush = float("-inf")
        #: Paths the index on disk lists now: those files change only after it stops listing them.
        self._listed_on_disk = _listed_paths(self.index)
        self._unreported = False

    def run(self) -> BuildReport:
        to_generate = self.run_quick()
        if to_generate:
            self._generate_all(to_generate)
        if self.remote is not None:
            self.flush_index()  # the engine sees the build's result before any upload
            self.push_remote()
        return self.finish()

    def run_quick(self) -> list[TrackPlan]:
        """Everything but generation; return the tracks that need it."""
        for failure in self.plan.failures:
            self._finish(TrackResult(None, rel(self.config, failure.path), "failed", ok=False,
                                     error=failure.message))
        by_action: dict[str, list[TrackPlan]] = {}
        for tp in self.plan.tracks:
            by_action.setdefault(tp.action, []).append(tp)
        for tp in by_action.get("fresh", []):
            self._finish(self._result(tp, time.monotonic()))
        for tp in by_action.get("index", []):
            self._run_one(tp, self._update_index_only)
        pending_generation = list(by_action.get("generate", []))
        from_remote = self._fetch_remote(pending_generation)
        fetched_ids = {id(tp) for tp in from_remote}
        pending_generation = [tp for tp in pending_generation if id(tp) not in fetched_ids]
        cached = by_action.get("restore", []) + by_action.get("encode", []) + from_remote
        pending_generation += self._restore_or_encode_all(cached)
        # After restores, so a renamed track could still restore from its old name's files.
        for removal in self.plan.removals:
            self._remove(removal.name, removal.entry, removal.reason)
        self.flush_index()
        pending.clear(self.config.state_dir)  # what this phase unlisted is deleted or listed again
        return pending_generation

    def _fetch_remote(self, plans: list[TrackPlan]) -> list[TrackPlan]:
        """Local misses looked up in the team cache: renders first, then raw audio for the rest.

        Found entries are verified into the local cache; returns the tracks that now
        restore (or re-encode) instead of generating.
        """
        if self.remote is None or not plans:
            return []
        renders = self.remote.fetch_many(("render", tp.track.keys.render) for tp in plans)
        rest = [tp for tp in plans if ("render", tp.track.keys.render) not in renders]
        raws = self.remote.fetch_many(("raw", tp.track.keys.generation) for tp in rest)
        found = []
        for tp in plans:
            if ("render", tp.track.keys.render) in renders:
                tp.action = "restore"
            elif ("raw", tp.track.keys.generation) in raws:
                tp.action = "encode"
            else:
                continue
            tp.reasons.append("from the team cache")
            found.append(tp)
        if found:
            self.reporter.note(f"team cache: {len(renders) + len(raws)} entries fetched from {self.remote.url}")
        return found

    def push_remote(self) -> None:
        """After the build, upload what it generated or encoded (``push = true`` only).

        Raw audio and render of each such track that built go up; restored entries came
        from a cache that is already shared, or not (``cache push --all`` uploads the rest).
        """
        if self.remote is None or not self.remote.settings.push:
            return
        by_name = {tp.name: tp for tp in self.plan.tracks}
        items: list[tuple[str, str]] = []
        for result in self.results:
            tp = by_name.get(result.name or "")
            if tp is None or not result.ok or result.action not in ("generate", "encode"):
                continue  # (raw audio fetched from the store costs one HEAD request to skip)
            items += [("raw", tp.track.keys.generation), ("render", tp.track.keys.render)]
        items += list(self.remote.corrupt)  # repaired even when the track restored from elsewhere
        pushed = self.remote.push_many(items)
        if pushed:
            self.reporter.note(f"team cache: {pushed} entries pushed to {self.remote.url}")

    def finish(self) -> BuildReport:
        self.flush_index()
        pending.clear(self.config.state_dir)  # every unlisted file was deleted or is listed again
        return BuildReport(self.results, self.config.index_path)

    # ------------------------------------------------------------------ steps
    def _run_one(self, tp: TrackPlan, step) -> bool:
        """Run ``step(tp)``; ``False`` means "needs generation after all" (cache entry lost)."""
        self.reporter.started(tp)
        return self._attempt(tp, time.monotonic(), lambda: step(tp))

    def _attempt(self, tp: TrackPlan, start: float, work) -> bool:
        """Run ``work()`` and record the track's result; one broken track never stops the others."""
        try:
            if work() is False:
                return False
        except TrackspecError as exc:
            self._finish(self._result(tp, start, error=str(exc)))
            return True
        except Exception as exc:
            log.debug("track %s failed", tp.name, exc_info=True)
            self._finish(self._result(tp, start, error=f"internal error: {type(exc).__name__}: {exc}"))
            return True
        self._finish(self._result(tp, start))
        return True

    def _update_index_only(self, tp: TrackPlan) -> None:
        entry = self.index["tracks"][tp.name]
        self.index["tracks"][tp.name] = index_entry(self.config, tp.track, entry["files"], entry)
        self._index_changed()

    def _restore_or_encode_all(self, plans: list[TrackPlan], follow: bool = False) -> list[TrackPlan]:
        """Restore or re-encode ``plans``: renders run on the pool, results come in plan order.

        Returns the tracks whose cache entry was lost meanwhile (they need generation after
        all); with ``follow`` (tracks whose audio a leader just generated) a loss is a failure.
        """
        lost: list[TrackPlan] = []
        renders: dict[str, RenderJob] = {}  # render key -> the job making it, for tracks sharing one
        with self._render_pool() as pool:
            queue = InOrder()
            for tp in plans:
                self.reporter.started(tp)
                start = time.monotonic()
                job, own, step = self._find_or_render(tp, pool, renders)
                if follow:
                    step = _as_follower(step)
                busy = time.monotonic() - start

                def publish(tp=tp, job=job, own=own, step=step, busy=busy) -> None:
                    # A track's time is its own work: lookups, its render, its publication.
                    rendering = job.seconds if job is not None and own else 0.0
                    if not self._attempt(tp, time.monotonic() - busy - rendering, step):
                        lost.append(tp)

                queue.add(job, publish)
                queue.run_ready()  # restores publish as they are found, as one at a time would
            queue.run_all()
        return lost

    def _find_or_render(self, tp: TrackPlan, pool: RenderPool, renders: dict[str, RenderJob]
                        ) -> tuple[RenderJob | None, bool, Callable[[], Any]]:
        """The track's render from the cache (or a donor), or one started on the pool.

        Returns (the job to wait for, whether that job is this track's own, the step that
        publishes). An error here becomes the step's, so it is reported in plan order.
        """
        track = tp.track
        try:
            rendered = self.cache.get("render", track.keys.render)
            if rendered is None and tp.donor is not None:
                rendered = self._adopt_published(track, tp.donor)
            if rendered is not None:
                tp.action = "restore"
                return None, False, lambda: self._publish(track, rendered)
            shared = renders.get(track.keys.render)
            if shared is not None:  # an earlier track renders exactly these files
                return shared, False, lambda: self._publish_shared(tp, shared)
            raw = self.cache.get("raw", track.keys.generation)
            if raw is None:
                tp.action = "generate"
                tp.reasons.append("cache entry lost")
                return None, False, lambda: False
            tp.action = "encode"
            job = renders[track.keys.render] = self._submit_render(pool, track, raw)
        except Exception as exc:
            return None, False, _raiser(exc)
        return job, True, lambda: self._publish(track, job.result())

    def _publish_shared(self, tp: TrackPlan, job: RenderJob) -> None:
        """Publish the render an earlier track made: run one by one, this track would have
        found it in the cache (a restore), or rendered again after its failure."""
        tp.action = "encode" if job.failed() else "restore"
        self._publish(tp.track, job.result())

    def _generate_all(self, plans: list[TrackPlan]) -> None:
        leaders, followers = split_by_generation_key(plans)
        self._generate_leaders(leaders)
        for tp in followers:  # the same audio as a track generated above: restore or encode it
            tp.action = "generate"
        self._restore_or_encode_all(followers, follow=True)

    def _generate_leaders(self, plans: list[TrackPlan]) -> None:
        """Generate batch after batch; each batch renders on the pool while the next generates.

        Results are published in batch order as their renders finish, and all of them
        before this returns (the followers restore from those renders).
        """
        from .generate.base import load_backend

        with self._render_pool() as pool:
            queue = InOrder()
            for (source, revision), batches in generation_batches(plans, self.config.batch_size).items():
                start = time.monotonic()
                for tp in (tp for batch in batches for tp in batch):
                    self.reporter.started(tp)
                try:
                    backend = load_backend(source, revision, self.config.device, self.config.batch_size)
                except Exception as exc:  # a broken model fails its tracks, not the build
                    message = model_load_error(source, exc)
                    for tp in (tp for batch in batches for tp in batch):
                        error = f"{model_field(self.config, tp.track)}: {message}"
                        queue.add(None, lambda tp=tp, e=error: self._finish(self._result(tp, start, error=e)))
                    continue
                self.reporter.note(f"model loaded: {backend.description} ({time.monotonic() - start:.1f} s)")
                try:
                    for batch in batches:
                        batch_start = time.monotonic()
                        try:
                            audios = backend.generate([generation_request(tp) for tp in batch],
                                                      progress=self.reporter.progress)
                        except Exception as exc:  # the batch fails; each of its tracks says why
                            audios = [exc] * len(batch)
                        for tp, audio in zip(batch, audios):
                            tp.action = "generate"
                            job, step = self._store_and_render(tp, audio, backend, pool)
                            queue.add(job, lambda tp=tp, step=step, s=batch_start: self._attempt(tp, s, step))
                        queue.run_ready()  # publish what is done; the rest renders during the next batch
                finally:
                    backend.close()
            queue.run_all()

    def _store_and_render(self, tp: TrackPlan, audio: Any, backend: Any, pool: RenderPool
                          ) -> tuple[RenderJob | None, Callable[[], Any]]:
        """Put generated audio in the cache and start its render; return the job and the
        step that publishes it (or that raises the generation's or the store's error)."""
        try:
            if isinstance(audio, Exception):
                raise audio
            raw = store_raw(self.cache, tp.track, audio, backend)
            job = self._submit_render(pool, tp.track, raw)
        except Exception as exc:
            return None, _raiser(exc)
        return job, lambda: self._publish(tp.track, job.result())

    def _render_pool(self) -> RenderPool:
        return RenderPool(self.config.encode_workers)

    def _submit_render(self, pool: RenderPool, track: LoadedTrack, raw: CacheEntry) -> RenderJob:
        """Resample and encode cached raw audio into a render cache entry, on the pool."""
        from .render import render_raw, settings_for

        return pool.submit(render_raw, self.cache, raw, settings_for(track), track.keys.render,
                           track.keys.render_inputs)

    # ------------------------------------------------------------- mechanics
    def _adopt_published(self, track: LoadedTrack, donor: dict[str, Any]) -> CacheEntry | None:
        """Make a render cache entry from published files that are exactly this render."""
        staging = self.cache.staging_dir()
        try:
            files, digests = {}, {}
            for fmt, info in donor["files"].items():
                name = f"audio.{fmt}"
                shutil.copyfile(self.config.root / info["path"], staging / name)
                files[name], digests[name] = staging / name, info["sha256"]
            facts = {k: donor[k] for k in AUDIO_FACTS}
            entry = self.cache.put("render", track.keys.render, files,
                                   {**facts, "inputs": track.keys.render_inputs}, digests)
        except OSError as exc:  # includes a copy that no longer matches (put's verification)
            log.warning("could not reuse the published files of %s: %s", track.spec.name, exc)
            return None
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return entry  # put() verified the copies against the published digests

    def _publish(self, track: LoadedTrack, rendered: CacheEntry) -> None:
        targets = output_paths(self.config, track.spec)
        tags = tags_for(track, rendered.info.get("loop"))
        unlisted = self._unlist(track.spec.name)
        try:
            published = publish_entry(rendered, targets, self.config.staging_dir, tags, self.config.assets_dir)
        except BaseException:
            if unlisted is not None and _files_intact(self.config.root, unlisted):
                self.index["tracks"][track.spec.name] = unlisted  # the last good asset stays listed
                self._index_changed()
            raise
        files = {}
        for fmt, info in published.items():
            self.state.record(info["target"], info["sha256"])
            files[fmt] = {"path": rel(self.config, info["target"]), "sha256": info["sha256"],
                          "bytes": info["bytes"]}
        old = unlisted or self.index["tracks"].get(track.spec.name)
        if old:  # files the new render no longer has (format dropped, genre changed)
            keep = {f["path"] for f in files.values()}
            self._delete_owned({k: f for k, f in old.get("files", {}).items() if f["path"] not in keep})
        self.index["tracks"][track.spec.name] = index_entry(self.config, track, files, rendered.info)
        self._index_changed()
        self.state.remember_track(track.spec.name, {"generation_inputs": track.keys.generation_inputs,
                                                    "render_inputs": track.keys.render_inputs})

    def _remove(self, name: str, entry: dict[str, Any], reason: str) -> None:
        # The index first (with the files noted as pending removals), then the files: a crash
        # in between leaves files the next build deletes, never an entry naming a lost file.
        self._unlist(name)
        self._delete_owned(entry.get("files", {}))
        self.index["tracks"].pop(name, None)
        self._index_changed()
        self.state.forget_track(name)
        self._finish(TrackResult(name, entry.get("spec", ""), "remove", [reason]))

    def _delete_owned(self, files: dict[str, dict[str, Any]]) -> None:
        owned = [(self.config.root / f["path"], f.get("sha256", "")) for f in files.values()]
        remove_owned(owned, self.config.root, self.config.assets_dir, self.state.digest)
        for path, _ in owned:
            self.state.forget(path)

    def _unlist(self, name: str) -> dict[str, Any] | None:
        """Before ``name``'s published files are replaced or deleted: if the index on disk lists
        any of them, write it without the track now (its files noted in ``pending``).

        Returns the entry taken out (``None``: the index on disk did not list those files).
        """
        entry = self.index["tracks"].get(name)
        files = list(entry.get("files", {}).values()) if entry else []
        if not any(f.get("path") in self._listed_on_disk for f in files):
            return None
        pending.record(self.config.state_dir, files)
        del self.index["tracks"][name]
        write_index(self.config.index_path, self.index, self.config.staging_dir)
        self._listed_on_disk = _listed_paths(self.index)
        self._index_dirty = True  # the entry comes back (or goes for good) with the next flush,
        self._unreported = True  # which is reported as the write (the files are done by then)
        return entry

    def _index_changed(self) -> None:
        self._index_dirty = True
        if self.flush_seconds is not None and time.monotonic() - self._last_flush >= self.flush_seconds:
            self.flush_index()

    def flush_index(self) -> None:
        """Write the index if it changed since the last write."""
        if not self._index_dirty:
            return
        self._index_dirty = False
        self._last_flush = time.monotonic()
        written = write_index(self.config.index_path, self.index, self.config.staging_dir)
        self._listed_on_disk = _listed_paths(self.index)
        if written or self._unreported:
            self._unreported = False
            self.reporter.index_written(self.config.index_path, len(self.index["tracks"]))

    def _result(self, tp: TrackPlan, start: float, error: str | None = None) -> TrackResult:
        entry = self.index["tracks"].get(tp.name, {})
        files = {fmt: f["path"] for fmt, f in entry.get("files", {}).items()} if error is None else {}
        keys = {"generation": tp.track.keys.generation, "render": tp.track.keys.render}
        return TrackResult(tp.name, rel(self.config, tp.track.spec.path), tp.action, list(tp.reasons),
                           ok=error is None, error=error, files=files, seconds=time.monotonic() - start,
                           keys=keys)

    def _finish(self, result: TrackResult) -> None:
        self.results.append(result)
        self.reporter.finished(result)


# ---------------------------------------------------------------- generation helpers
# Shared by the build's executor and the watch daemon's generation worker.

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
        by_model.setdefault(key[:2], []).extend(group[i:i + batch_size] for i in range(0, len(group), batch_size))
    return by_model


def generation_request(tp: TrackPlan) -> GenerationRequest:
    spec = tp.track.spec
    return GenerationRequest(name=tp.name, prompt=spec.prompt, duration=spec.duration, seed=tp.track.keys.seed,
                             temperature=spec.temperature, top_k=spec.top_k, top_p=spec.top_p,
                             guidance_scale=spec.guidance_scale, window=spec.window,
                             window_stride=spec.window_stride)


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
        info = {"sample_rate": backend.sample_rate, "channels": int(samples.shape[0]),
                "samples": int(samples.shape[1]), "seed": track.keys.seed,
                "model": backend.description, "inputs": track.keys.generation_inputs}
        return cache.put("raw", track.keys.generation, {"audio.f32": path}, info)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


# ---------------------------------------------------------------- executor helpers

def _listed_paths(index: dict[str, Any]) -> set[str]:
    return {f["path"] for t in index["tracks"].values() for f in t.get("files", {}).values()
            if isinstance(f, dict) and isinstance(f.get("path"), str)}


def _files_intact(root: Path, entry: dict[str, Any]) -> bool:
    """Whether every file of an index entry still has the sha256 it records."""
    from .fsutil import sha256_file

    try:
        return all(sha256_file(root / f["path"]) == f["sha256"] for f in entry.get("files", {}).values())
    except (OSError, KeyError, TypeError):
        return False


def _raiser(exc: Exception) -> Callable[[], None]:
    """A step that fails as the work it stands for did (the same exception, the same text)."""
    def step() -> None:
        raise exc
    return step


def _as_follower(step: Callable[[], Any]) -> Callable[[], None]:
    """A follower's step: its leader's audio lost from the cache is the follower's failure."""
    def follow() -> None:
        if step() is False:
            raise GenerationError("its audio is identical to another track's, whose generation failed")
    return follow
