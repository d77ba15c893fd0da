"""Run the trackspec CLI and SIGKILL it at an exact point: the N-th call of a file system
primitive (``os.replace``, ``os.rename``, ``os.fsync``, ``os.unlink``), just before or just after it.

A timer lands anywhere, mostly in the long phases (model load, generation); these points
are the short moments in between (a cache entry renamed into place, an asset published,
the index replaced, an old file deleted), where an ordering mistake would show. The
process dies by a real SIGKILL: no cleanup, no ``finally``, no flush.

Usage: ``python killpoint.py PRIMITIVE N before|after [--match TEXT] -- CLI ARGS...``; with
``--match`` only calls whose last path argument contains TEXT count (say, ``/assets/``).
"""

from __future__ import annotations

import atexit
import os
import signal
import sys
import threading


def arm(primitive: str, n: int, when: str, match: str | None = None) -> None:
    real = getattr(os, primitive)
    calls = [0]
    lock = threading.Lock()

    def wrapper(*args, **kwargs):
        if match is not None and match not in str(args[-1] if args else ""):
            return real(*args, **kwargs)
        with lock:
            calls[0] += 1
            hit = calls[0] == n
        if hit and when == "before":
            os.kill(os.getpid(), signal.SIGKILL)
        result = real(*args, **kwargs)
        if hit:
            os.kill(os.getpid(), signal.SIGKILL)
        return result

    setattr(os, primitive, wrapper)
    # Not hit: say how many calls there were, so the caller can aim within them next time.
    atexit.register(lambda: print(f"killpoint-calls={calls[0]}", file=sys.stderr))


if __name__ == "__main__":
    primitive, n, when, *rest = sys.argv[1:]
    match = None
    if rest[0] == "--match":
        match, rest = rest[1], rest[2:]
    sep, *cli = rest
    assert sep == "--" and when in ("before", "after")
    arm(primitive, int(n), when, match)
    from importer.cli import main

    sys.exit(main(cli))
