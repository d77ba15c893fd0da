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
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from . import engines, generation
from .cache import CacheEntry, LocalCache
from .config import ProjectConfig, rel
from .errors import GenerationError, TrackspecError
from .fsutil import sweep_temp_files
from .generation import Generated, LoadPerRun, split_by_generation_key
from .index import AUDIO_FACTS, EntryTexts, IndexTransaction, index_entry, load_index, output_paths, pending
from .locks import repo_lock as take_repo_lock
from .plan import Plan, TrackPlan, plan_build
from .publish import publish_entry
from .render_pool import InOrder, RenderJob, RenderPool
from .state import PARALLEL_MIN_BYTES, State
from .tracks import LoadedTrack, ParsedSpecs, load_tracks, tags_for

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
    """The one-per-repo lock (``locks``), waiting with a message if held."""
    return take_repo_lock(
        config.state_dir, wait, lambda: reporter.note("waiting for another trackspec process to finish ...")
    )


def run_build(
    config: ProjectConfig, options: BuildOptions, reporter: Reporter, backends: generation.Backends | None = None
) -> BuildReport:
    """Plan and (unless ``options.check``) execute the build of every track.

    ``backends`` gives the models to generate with (default: ``generation.LoadPerRun``).
    """
    if options.check:
        plan = inspect_plan(config, options)
        return BuildReport(_check_results(config, plan), config.index_path, checked_only=True)
    lock = repo_lock(config, reporter, options.wait_for_lock)
    try:
        state = State.in_folder(config.state_dir)
        try:
            plan = make_plan(config, options, state)
            noop = is_noop(plan)
            sweep_leftovers(config, plan)
            listed_before = engines.snapshot(config, plan.index)
            farm = farm_generator(config, reporter)
            try:
                report = Executor(
                    config,
                    plan,
                    state,
                    reporter,
                    options.index_flush_seconds,
                    remote_session(config, options.require_remote),
                    backends,
                    farm=farm,
                ).run()
            finally:
                if farm is not None:
                    farm.close()
            engines.sync(config, plan.index, listed_before)  # Godot .import sidecars from the final index
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
        why_not = write_record(config, plan, options.started_ns, options.model_override, options.override_base)
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


def farm_generator(config: ProjectConfig, reporter: Reporter):
    """Generation on the farm (``[farm]``, ``--farm``); ``None``: here. Connects only when used."""
    if config.farm is None:
        return None
    from .farm.client import FarmGenerator

    return FarmGenerator(config.farm, reporter.note)


def inspect_plan(config: ProjectConfig, options: BuildOptions) -> Plan:
    """The plan a build would execute, made without the lock and without writing anything.

    Only the stat cache is refreshed, and only where it already exists (as `git status`
    refreshes its index): `--check`, `plan` and `status` create no file in a repo.
    """
    state = State.in_folder(config.state_dir)
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


def make_plan(config: ProjectConfig, options: BuildOptions, state: State, parsed: ParsedSpecs | None = None) -> Plan:
    """Load every spec and plan it against the index, the cache and the state."""
    loaded, failures = load_tracks(config, state, options.model_override, options.override_base, parsed)
    index = load_index(config.index_path)
    prefetch_output_digests(config, loaded, index, state)
    return plan_build(config, loaded, failures, index, LocalCache(config.cache_dir), state)


def prefetch_output_digests(
    config: ProjectConfig, loaded: list[LoadedTrack], index: dict[str, Any], state: State
) -> None:
    """Hash ahead, in parallel where that pays (``State.digest_many``), the published files the
    plan will compare: those of index entries whose render is still the track's.

    Small files (by the sizes the index recorded) are left to the plan, without even the
    extra stat pass: threads only slow their hashing down.
    """
    renders = {track.spec.name: track.keys.render for track in loaded}
    files = [
        info
        for name, entry in index["tracks"].items()
        if renders.get(name) is not None and entry.get("keys", {}).get("render") == renders[name]
        for info in entry.get("files", {}).values()
        if isinstance(info.get("path"), str)
    ]
    recorded = sum(info["bytes"] for info in files if isinstance(info.get("bytes"), int))
    if len(files) < 2 or recorded < PARALLEL_MIN_BYTES * len(files):
        return
    state.digest_many([config.root / info["path"] for info in files], workers=min(2, os.cpu_count() or 1))


def _check_results(config: ProjectConfig, plan: Plan) -> list[TrackResult]:
    results = [TrackResult(None, rel(config, f.path), "failed", ok=False, error=f.message) for f in plan.failures]
    results += [TrackResult(r.name, r.entry.get("spec", ""), "remove", [r.reason]) for r in plan.removals]
    results += [TrackResult(t.name, rel(config, t.track.spec.path), t.action, t.reasons) for t in plan.tracks]
    return results


class Executor:
    """Carries out one plan under the lock.

    Renders (resample, encode, verify) run on a pool of ``config.encode_workers`` threads;
    everything else, publication, index, state and reporter, stays on the calling thread
    and happens in plan order, so the results do not depend on the number of workers.
    The index is changed through an ``IndexTransaction``: each batch of republished tracks
    is unlisted in one write.
    """

    def __init__(
        self,
        config: ProjectConfig,
        plan: Plan,
        state: State,
        reporter: Reporter,
        index_flush_seconds: float | None = 0.5,
        remote: Any = None,
        backends: generation.Backends | None = None,
        farm: Any = None,
        index_texts: EntryTexts | None = None,
    ):
        self.config = config
        #: The team cache (``remote.session.RemoteSession``), consulted on local misses only.
        self.remote = remote
        self.plan = plan
        self.state = state
        self.reporter = reporter
        self.cache = LocalCache(config.cache_dir)
        self.index = IndexTransaction(
            config, plan.index, state, reporter.index_written, index_flush_seconds, index_texts
        )
        #: Where models come from (default: loaded here for this build, closed after).
        self.backends = backends or LoadPerRun(config, reporter.note)
        #: Generation on the farm (``farm.client.FarmGenerator``): batches come back rendered.
        self.farm = farm
        self.results: list[TrackResult] = []

    def run(self) -> BuildReport:
        to_generate = self.run_quick()
        if to_generate:
            self._generate_all(to_generate)
        if self.remote is not None:
            self.index.flush()  # the engine sees the build's result before any upload
            self.push_remote()
        return self.finish()

    def run_quick(self) -> list[TrackPlan]:
        """Everything but generation; return the tracks that need it."""
        for failure in self.plan.failures:
            self._finish(TrackResult(None, rel(self.config, failure.path), "failed", ok=False, error=failure.message))
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
        self._unlist_batch(r.name for r in self.plan.removals)
        for removal in self.plan.removals:
            self.index.remove(removal.name)
            self._finish(TrackResult(removal.name, removal.entry.get("spec", ""), "remove", [removal.reason]))
        self.index.settle()  # what this phase unlisted is deleted or listed again
        return pending_generation

    def _fetch_remote(self, plans: list[TrackPlan]) -> list[TrackPlan]:
        """Local misses looked up in the team cache: renders first, then raw audio for the rest.

        Found entries are verified into the local cache; returns the tracks that now
        restore (or re-encode) instead of generating.
        """
        if self.remote is None or not plans:
            return []
        renders = self.remote.fetch_many(("render", tp.track.keys.render) for tp in plans if not tp.raw_wanted)
        rest = [tp for tp in plans if tp.raw_wanted or ("render", tp.track.keys.render) not in renders]
        raws = self.remote.fetch_many(("raw", tp.track.keys.generation) for tp in rest)
        found = []
        for tp in plans:
            if not tp.raw_wanted and ("render", tp.track.keys.render) in renders:
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
        self.index.settle()  # every unlisted file was deleted or is listed again
        log.debug("index written %d time(s) by this build", self.index.writes)
        return BuildReport(self.results, self.config.index_path)

    # ------------------------------------------------------------------ steps
    def _run_one(self, tp: TrackPlan, step: Callable[[TrackPlan], Any]) -> bool:
        """Run ``step(tp)``; ``False`` means "needs generation after all" (cache entry lost)."""
        self.reporter.started(tp)
        return self._attempt(tp, time.monotonic(), lambda: step(tp))

    def _attempt(self, tp: TrackPlan, start: float, work: Callable[[], Any]) -> bool:
        """Run ``work()`` and record the track's result; one broken track never stops the others."""
        try:
            if work() is False:
                return False
        except Exception as exc:
            if not isinstance(exc, TrackspecError):
                log.debug("track %s failed", tp.name, exc_info=True)
            self._finish(self._result(tp, start, error=generation.error_text(exc)))
            return True
        self._finish(self._result(tp, start))
        return True

    def _update_index_only(self, tp: TrackPlan) -> None:
        entry = self.index.tracks[tp.name]
        self.index.put(tp.name, index_entry(self.config, tp.track, entry["files"], entry))

    def _restore_or_encode_all(self, plans: list[TrackPlan], follow: bool = False) -> list[TrackPlan]:
        """Restore or re-encode ``plans``: renders run on the pool, results come in plan order.

        Returns the tracks whose cache entry was lost meanwhile (they need generation after
        all); with ``follow`` (tracks whose audio a leader just generated) a loss is a failure.
        """
        lost: list[TrackPlan] = []
        renders: dict[str, RenderJob] = {}  # render key -> the job making it, for tracks sharing one
        self._unlist_batch(tp.name for tp in plans)
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

    def _find_or_render(
        self, tp: TrackPlan, pool: RenderPool, renders: dict[str, RenderJob]
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
        """Generate batch after batch (``generation``); each batch renders on the pool while
        the next generates. Results are published in batch order as their renders finish,
        and all of them before this returns (the followers restore from those renders)."""
        with self._render_pool() as pool:
            queue = InOrder()
            listener = generation.Listener(
                self.reporter.started, self.reporter.progress, lambda results: self._generated(results, pool, queue)
            )
            generate = self.farm.generate if self.farm is not None else generation.generate
            generate(self.config, plans, self.cache, self.backends, listener)
            queue.run_all()

    def _generated(self, results: list[Generated], pool: RenderPool, queue: InOrder) -> None:
        """A batch is in the cache (or failed): start its renders, publish what is done."""
        self._unlist_batch(g.plan.name for g in results if g.raw is not None)
        start = time.monotonic() - max((g.seconds for g in results), default=0.0)
        for g in results:
            g.plan.action = "generate"
            queue.add(*self._publication(g, pool, start))
        queue.run_ready()  # publish what is done; the rest renders during the next batch

    def _publication(
        self, g: Generated, pool: RenderPool, start: float
    ) -> tuple[RenderJob | None, Callable[[], object]]:
        """The render job of a generated track (if any) and the step that publishes it or
        reports its failure."""
        tp = g.plan
        if g.error is not None or g.raw is None:
            error = g.error or "no audio"
            return None, lambda: self._finish(self._result(tp, start, error=error))
        rendered = self.cache.get("render", tp.track.keys.render) if self.farm is not None else None
        if rendered is not None:  # a farm worker rendered it (verified into the cache)
            return None, lambda: self._attempt(tp, start, lambda: self._publish(tp.track, rendered))
        try:
            job = self._submit_render(pool, tp.track, g.raw)
        except Exception as exc:
            failed = _raiser(exc)
            return None, lambda: self._attempt(tp, start, failed)
        return job, lambda: self._attempt(tp, start, lambda: self._publish(tp.track, job.result()))

    def _unlist_batch(self, names: Iterable[str]) -> None:
        """Unlist a batch of tracks about to be republished in one index write. If that write
        fails (a full disk), each track unlists itself as it publishes and fails alone."""
        try:
            self.index.unlist(names)
        except (OSError, TrackspecError) as exc:
            log.debug("could not unlist the batch at once (%s); track by track instead", exc)

    def _render_pool(self) -> RenderPool:
        return RenderPool(self.config.encode_workers)

    def _submit_render(self, pool: RenderPool, track: LoadedTrack, raw: CacheEntry) -> RenderJob:
        """Resample and encode cached raw audio into a render cache entry, on the pool."""
        from .render import render_raw, settings_for

        return pool.submit(
            render_raw, self.cache, raw, settings_for(track), track.keys.render, track.keys.render_inputs
        )

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
            entry = self.cache.put(
                "render", track.keys.render, files, {**facts, "inputs": track.keys.render_inputs}, digests
            )
        except OSError as exc:  # includes a copy that no longer matches (put's verification)
            log.warning("could not reuse the published files of %s: %s", track.spec.name, exc)
            return None
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return entry  # put() verified the copies against the published digests

    def _publish(self, track: LoadedTrack, rendered: CacheEntry) -> None:
        name = track.spec.name
        targets = output_paths(self.config, track.spec)
        tags = tags_for(track, rendered.info.get("loop"))
        self.index.unlist([name])  # (already done for the whole batch, unless the track is alone)
        try:
            published = publish_entry(rendered, targets, self.config.staging_dir, tags, self.config.assets_dir)
        except BaseException:
            self.index.relist_if_intact(name)  # the last good asset stays listed
            raise
        files = {}
        for fmt, info in published.items():
            self.state.record(info["target"], info["sha256"])
            files[fmt] = {"path": rel(self.config, info["target"]), "sha256": info["sha256"], "bytes": info["bytes"]}
        old = self.index.previous(name)
        if old:  # files the new render no longer has (format dropped, genre changed)
            keep = {f["path"] for f in files.values()}
            self.index.delete_files({k: f for k, f in old.get("files", {}).items() if f["path"] not in keep})
        self.index.put(name, index_entry(self.config, track, files, rendered.info))
        self.state.remember_track(
            name, {"generation_inputs": track.keys.generation_inputs, "render_inputs": track.keys.render_inputs}
        )

    def _result(self, tp: TrackPlan, start: float, error: str | None = None) -> TrackResult:
        entry = self.index.tracks.get(tp.name, {})
        files = {fmt: f["path"] for fmt, f in entry.get("files", {}).items()} if error is None else {}
        keys = {"generation": tp.track.keys.generation, "render": tp.track.keys.render}
        return TrackResult(
            tp.name,
            rel(self.config, tp.track.spec.path),
            tp.action,
            list(tp.reasons),
            ok=error is None,
            error=error,
            files=files,
            seconds=time.monotonic() - start,
            keys=keys,
        )

    def _finish(self, result: TrackResult) -> None:
        self.results.append(result)
        self.reporter.finished(result)


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
