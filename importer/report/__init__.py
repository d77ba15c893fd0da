"""``trackspec report``: a static HTML page to look at and listen to every track.

One ``index.html`` plus ``img/`` and ``audio/`` folders under ``<assets>/.report/``,
openable from disk with no server and no network: players point at the published files
by relative path, auditioned takes (which live in the cache) are copied beside the page.
Images and clips are named by the sha256 of the audio they show, so a report written
again only draws what changed. Pipeline: ``collect`` (what to show) -> ``media``
(waveforms, spectrograms, seam clips) -> ``page`` (the HTML).
"""

from __future__ import annotations

from pathlib import Path

from ..config import ProjectConfig
from ..plan import Plan

REPORT_DIR = ".report"


def report_dir(config: ProjectConfig) -> Path:
    return config.assets_dir / REPORT_DIR


def write_report(config: ProjectConfig, plan: Plan) -> Path:
    """Write the report of ``plan`` (as `status` sees the repo); return the page's path."""
    from ..fsutil import atomic_write_bytes, make_dirs_inside, owned_path
    from .collect import collect
    from .page import render_page

    out = report_dir(config)
    make_dirs_inside(out, config.assets_dir)  # links leading out of the assets: refused
    for folder in (out, out / "img", out / "audio"):
        owned_path(folder / "x", config.assets_dir)
    ignore = out / ".gitignore"
    if not ignore.exists():  # generated: never committed
        atomic_write_bytes(ignore, b"# written by trackspec report\n*\n")
    tracks = collect(config, plan)
    media = None
    if any(t.audio is not None or t.takes for t in tracks):  # numpy, matplotlib: only with audio to draw
        from .media import Media

        media = Media(out)
        for track in tracks:
            media.prepare_track(track)
            for take in track.takes:
                media.prepare_take(track, take)
    page = out / "index.html"
    atomic_write_bytes(page, render_page(config, tracks).encode("utf-8"))
    for name in ("img", "audio"):  # what the page no longer shows
        for path in (out / name).iterdir() if (out / name).is_dir() else ():
            if (media is None or path not in media.used) and (path.is_symlink() or not path.is_dir()):
                owned_path(path, config.assets_dir).unlink(missing_ok=True)  # the check writing uses
    return page
