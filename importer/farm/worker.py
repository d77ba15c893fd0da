"""The farm's worker: a Ray actor that keeps its model and returns finished cache entries.

One actor per GPU (or per unit of a custom resource, or per ``cpus_per_worker`` CPUs).
``run`` takes one of the planner's batches (same model and length), generates it through
``generation.generate`` with a ``KeptModel`` (so a worker loads a model once, however
many batches of it it gets), renders every track with ``render.render_raw`` into a
worker-private cache folder, and returns the raw and render entries as bytes: each
entry's manifest and files. Nothing is kept on the worker once a batch is returned, and
nothing reaches the build's cache before the build has verified it (``client``).

The actor runs two threads (``max_concurrency=2``): ``progress`` and ``cancel`` answer
while ``run`` works. This module is imported only on a farm: it is the actor's code on
the workers, and the build machine needs it to create them.
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
import threading
from pathlib import Path
from typing import Any

from .. import __version__, generation
from ..cache import MANIFEST, CacheEntry, LocalCache
from ..config import ProjectConfig
from ..plan import TrackPlan


def pack(kind: str, entry: CacheEntry) -> dict[str, Any]:
    """An entry as it travels: its manifest's bytes and every file's bytes."""
    return {
        "kind": kind,
        "key": entry.key,
        "manifest": (entry.directory / MANIFEST).read_bytes(),
        "files": {name: path.read_bytes() for name, path in entry.files.items()},
    }


class FarmWorker:
    """The actor's class (``ray.remote`` is applied by ``cluster``, with the resources it needs)."""

    def __init__(self) -> None:
        self._notes: list[str] = []
        self._lock = threading.Lock()
        self._progress: dict[str, tuple[int, int]] = {}
        self._cancelled = False
        self._model = generation.KeptModel(self._note)
        self._dir = Path(tempfile.mkdtemp(prefix="trackspec-farm-"))

    def _note(self, message: str) -> None:
        with self._lock:
            self._notes.append(message)

    def hello(self) -> dict[str, Any]:
        """Who this worker is (printed by the build) and which trackspec it runs."""
        return {"pid": os.getpid(), "host": socket.gethostname(), "version": __version__}

    def progress(self) -> dict[str, tuple[int, int]]:
        """The steps done and total of each track of the batch in flight."""
        with self._lock:
            return dict(self._progress)

    def cancel(self) -> None:
        """Abandon the batch in flight at its next decoding step (Ctrl-C on the build)."""
        self._cancelled = True

    def _on_progress(self, name: str, done: int, total: int) -> None:
        if self._cancelled:
            raise generation.Cancelled()
        with self._lock:
            self._progress[name] = (done, total)

    def run(self, config: ProjectConfig, batch: list[TrackPlan], render: set[str]) -> dict[str, Any]:
        """Generate one batch and render the tracks named in ``render``; per track its entries
        or its error, plus the notes."""
        from ..render import render_raw, settings_for

        self._cancelled = False
        with self._lock:
            self._progress = {}
        cache = LocalCache(self._dir / "cache")
        self._model.config = config
        tracks: list[dict[str, Any]] = []
        try:
            generated = generation.generate(
                config, batch, cache, self._model, generation.Listener(progress=self._on_progress)
            )
            for g in generated:
                track = g.plan.track
                result: dict[str, Any] = {"name": g.plan.name, "seconds": g.seconds, "error": g.error}
                if g.raw is not None:
                    result["entries"] = [pack("raw", g.raw)]
                    if g.plan.name not in render:
                        tracks.append(result)
                        continue
                    try:
                        rendered = render_raw(
                            cache, g.raw, settings_for(track), track.keys.render, track.keys.render_inputs
                        )
                        result["entries"].append(pack("render", rendered))
                    except Exception as exc:  # fails alone, its raw audio kept, as in a local build
                        result["error"] = generation.error_text(exc)
                tracks.append(result)
        finally:
            shutil.rmtree(self._dir / "cache", ignore_errors=True)
        with self._lock:
            notes, self._notes = self._notes, []
            final = dict(self._progress)
        return {"tracks": tracks, "notes": notes, "progress": final}

    def close(self) -> None:
        self._model.close()
        shutil.rmtree(self._dir, ignore_errors=True)
