"""``trackspec watch``: the development daemon."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .common import (
    EXIT_CODES,
    EXIT_USAGE,
    add_farm_arguments,
    add_parser,
    add_root,
    model_override,
    project_root,
    with_farm,
)

WATCH_EPILOG = f"""what it prints:
  one line per finished job (same words as build: restore, encode, generate, index,
  remove, FAILED), a line when the generation queue changes, progress while generating.
  An invalid spec prints its error once with file:line; its last good asset stays.

--json prints one object per line, each with "event" and "time":
  watching {{root, observer}}      queue {{generating, queued}}
  progress {{name, done, total}}   generated {{name, key, seconds, ok, error}}
  finished {{a track result, as build --json}}   index_written {{path, tracks}}
  note {{message}}   error {{message}}   stopped {{reason}}

locks: a `trackspec build` started while the daemon works waits for it (or exits 3
with --no-wait); a second daemon on the same repo exits 3.

{EXIT_CODES}"""


def register(sub: argparse._SubParsersAction) -> None:
    watch = add_parser(
        sub,
        "watch",
        "the development daemon: rebuild tracks as their specs are saved",
        "Build once, then watch the repo: each saved .trackspec (or trackspec.toml) is "
        "re-planned from its content and brought up to date. Cache hits, re-encodes and "
        "index-only changes are served at once; generations run one after another on a model "
        "that stays loaded. Ctrl-C or SIGTERM stops after the current step (exit 0); a second "
        "Ctrl-C stops at once. Nothing half-written is ever left in the assets folder.",
        WATCH_EPILOG,
    )
    add_root(watch)
    watch.add_argument(
        "--model",
        metavar="ID_OR_DIR",
        help="use this model for every spec (hub id or local directory). Env: TRACKSPEC_MODEL",
    )
    watch.add_argument(
        "--debounce",
        type=float,
        default=100.0,
        metavar="MS",
        help="quiet time after a save before building, in ms (default 100)",
    )
    watch.add_argument(
        "--unload-after",
        type=float,
        default=300.0,
        metavar="SECONDS",
        help="unload the model after this long without generating (default 300)",
    )
    watch.add_argument(
        "--poll",
        type=float,
        metavar="SECONDS",
        help="poll for changes every SECONDS instead of using inotify (network shares)",
    )
    watch.add_argument(
        "--report", action="store_true", help="keep the HTML report (`trackspec report`) current as tracks change"
    )
    watch.add_argument("--json", action="store_true", help="print events as JSON Lines on stdout")
    watch.add_argument("-q", "--quiet", action="store_true", help="print only finished jobs' failures")
    add_farm_arguments(watch, require=False)
    watch.add_argument("-v", "--verbose", action="store_true", help="log details (cache decisions, tracebacks)")
    watch.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..watch.daemon import Daemon, WatchOptions
    from ..watch.output import JsonWatchReporter, TextWatchReporter

    if args.debounce < 0 or args.unload_after < 0 or (args.poll is not None and args.poll <= 0):
        print("trackspec: --debounce and --unload-after must be >= 0, --poll > 0", file=sys.stderr)
        return EXIT_USAGE
    root = project_root(args)
    options = WatchOptions(
        model_override=model_override(args),
        override_base=Path.cwd(),
        debounce=args.debounce / 1000.0,
        unload_after=args.unload_after,
        poll=args.poll,
        report=args.report,
    )
    reporter = JsonWatchReporter() if args.json else TextWatchReporter(quiet=args.quiet)
    daemon = Daemon(root, options, reporter)
    farm = with_farm(daemon.config, args).farm  # fixed for the daemon's life (a config edit keeps it)
    if farm is None:
        return daemon.run()
    from ..farm.client import FarmGenerator

    daemon.worker.farm = FarmGenerator(farm, reporter.note)
    try:
        return daemon.run()
    finally:
        daemon.worker.farm.close()
