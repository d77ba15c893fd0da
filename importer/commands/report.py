"""``trackspec report``: a static HTML page with every track's waveform, facts and players."""

from __future__ import annotations

import argparse
from pathlib import Path

from .common import EXIT_CODES, EXIT_FAILED, EXIT_OK, add_parser, add_root, inspect

REPORT_EPILOG = f"""the page (<assets>/.report/index.html, ignored by git) shows per track:
  state (fresh, stale and why, failed and the error), duration, measured loudness and true
  peak, loop points (drawn on the waveform), model, seed, licence, [meta] tags, a waveform
  and a spectrogram, a player, and a "loop seam" player (the last 2 s into the first 2 s).
  Auditioned takes stand side by side, each with its player and its `trackspec pin` command.

It needs no server and fetches nothing: open it from disk. Only images and clips of
audio that changed are drawn again. `trackspec watch --report` keeps it current.

Exit 0, or 1 when a spec has an error (the page is still written and shows it).

{EXIT_CODES}"""


def register(sub: argparse._SubParsersAction) -> None:
    parser = add_parser(
        sub,
        "report",
        "write an HTML page to look at and listen to every track and take",
        "Write a static HTML report of every track (waveform, spectrogram, loudness, loop "
        "points, players) and of auditioned takes.",
        REPORT_EPILOG,
    )
    add_root(parser)
    parser.add_argument("--model", metavar="ID_OR_DIR", help="judge staleness as `build --model` would")
    parser.add_argument("--open", action="store_true", help="open the page in the default browser")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..report import write_report

    config, plan = inspect(args)
    page = write_report(config, plan)
    print(page)
    if args.open:
        open_in_browser(page)
    return EXIT_FAILED if plan.failures else EXIT_OK


def open_in_browser(page: Path) -> None:
    import sys
    import webbrowser

    if not webbrowser.open(page.as_uri()):
        print(f"trackspec: no browser found; open {page.as_uri()}", file=sys.stderr)
