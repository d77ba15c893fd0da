"""What the CLI prints: a line per track, a build summary, sizes in binary units.

Shared by ``build`` and ``watch`` so a track's line reads the same in both.
"""

from __future__ import annotations

import sys
from pathlib import Path


class TextReporter:
    """Prints one line per track to stdout; notes and progress to stderr."""

    def __init__(self, quiet: bool = False, json_mode: bool = False):
        from .progress import ProgressDisplay

        self.quiet = quiet
        self.json_mode = json_mode
        self.display = ProgressDisplay(enabled=not quiet)

    def note(self, message: str) -> None:
        if not self.quiet:
            print(message, file=sys.stderr, flush=True)

    def started(self, plan) -> None:
        pass

    def progress(self, name: str, done: int, total: int) -> None:
        self.display.update(name, done, total)

    def index_written(self, path: Path, tracks: int) -> None:
        pass

    def finished(self, result) -> None:
        if result.name:
            self.display.close(result.name)
        if self.json_mode or (self.quiet and result.ok):
            return
        print(format_result(result), flush=True)


def format_result(result) -> str:
    if not result.ok:
        label = result.name or result.spec
        return f"FAILED    {label}\n          {result.error}"
    why = f"  ({'; '.join(result.reasons)})" if result.reasons else ""
    if result.action in ("fresh", "remove", "index") or not result.files:
        return f"{result.action:<9} {result.name}{why}"
    paths = sorted(result.files.values())
    stem = paths[0].rsplit(".", 1)[0]
    where = f"{stem}.{{{','.join(p.rsplit('.', 1)[1] for p in paths)}}}" if len(paths) > 1 else paths[0]
    return f"{result.action:<9} {result.name}{why}  {result.seconds:.1f}s -> {where}"


def format_stale(result) -> str:
    """A stale track in `build --check` (and the git hook): its action and why."""
    return f"stale     {result.name}  ({result.action}: {'; '.join(result.reasons)})"


def summary(report, root: Path) -> str:
    counts: dict[str, int] = {}
    for r in report.results:
        key = r.action if r.ok else "failed"
        counts[key] = counts.get(key, 0) + 1
    order = ["generate", "encode", "restore", "index", "remove", "fresh", "failed"]
    words = {
        "fresh": "up to date",
        "index": "index-only",
        "remove": "removed",
        "generate": "generated",
        "encode": "re-encoded",
        "restore": "restored",
        "failed": "failed",
    }
    parts = [f"{counts[k]} {words[k]}" for k in order if counts.get(k)]
    try:
        index = report.index_path.relative_to(root)
    except ValueError:
        index = report.index_path
    return f"{', '.join(parts) or 'no tracks'}; index: {index}"


def human_bytes(n: float) -> str:
    """1536 -> '1.5 KiB' (binary units, as ``du -h``)."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")
