"""Progress for long generations: a bar per track on a terminal, milestones in a log.

On a terminal each generating track gets a tqdm bar (steps done / total, across all its
windows). In a CI log a bar would be one endless line, so milestones (every 10 %) are
printed as lines instead. Everything goes to stderr: stdout belongs to results/--json.
"""

from __future__ import annotations

import sys
from typing import TextIO


class ProgressDisplay:
    def __init__(self, stream: TextIO | None = None, enabled: bool = True):
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.interactive = bool(getattr(self.stream, "isatty", lambda: False)())
        self._bars: dict[str, object] = {}
        self._milestones: dict[str, int] = {}

    def update(self, name: str, done: int, total: int) -> None:
        if not self.enabled:
            return
        if self.interactive:
            self._update_bar(name, done, total)
            return
        tenth = (10 * done) // max(total, 1)
        if tenth > self._milestones.get(name, -1):
            self._milestones[name] = tenth
            print(f"  generating {name}: {10 * tenth:3d}% ({done}/{total} steps)", file=self.stream, flush=True)

    def _update_bar(self, name: str, done: int, total: int) -> None:
        from tqdm import tqdm

        bar = self._bars.get(name)
        if bar is None:
            bar = tqdm(
                total=total,
                desc=name,
                unit="step",
                position=len(self._bars),
                leave=False,
                file=self.stream,
                dynamic_ncols=True,
            )
            self._bars[name] = bar
        bar.n = done  # type: ignore[attr-defined]
        bar.refresh()  # type: ignore[attr-defined]

    def close(self, name: str) -> None:
        bar = self._bars.pop(name, None)
        if bar is not None:
            bar.close()  # type: ignore[attr-defined]
        self._milestones.pop(name, None)
