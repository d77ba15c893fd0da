"""The ``trackspec`` command line: argument parsing and printing, no logic of its own."""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import sys
from pathlib import Path
from typing import Sequence

from . import __version__
from .console import TextReporter, summary
from .errors import ConfigError, IndexCorrupt, LockBusy, ProjectNotFound, TrackspecError

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_LOCKED = 0, 1, 2, 3

EXIT_CODES = """exit codes:
  0  every track is built and up to date
  1  a track or spec failed (the others were still built), or --check found stale tracks
  2  usage error (bad arguments, no or invalid trackspec.toml, unreadable index)
  3  the repository is locked by another trackspec process (--no-wait)"""

MAIN_EPILOG = f"""examples:
  trackspec init                           make this folder a game repo (writes trackspec.toml)
  trackspec build                          build every stale track (the pre-build hook)
  trackspec build --check                  CI gate: list stale tracks, write nothing
  trackspec model tiny models/tiny         a tiny offline test model (noise, not music)
  trackspec build --model models/tiny      build with that model instead of each spec's

{EXIT_CODES}"""

BUILD_EPILOG = f"""what build does, per track:
  fresh     outputs match the index and the spec: nothing to do (no file is read)
  index     only [meta] or the spec's path changed: the index entry is rewritten
  restore   the encoded files are in the cache: copied into the assets, verified
  encode    the raw audio is in the cache: resampled and encoded again
  generate  MusicGen makes the audio (the model is loaded once per build)
  remove    the spec is gone: its files and index entry are removed

The index (default assets/music/index.json) is rewritten atomically after each track.
Outputs land in <assets>/<genre>/<name>.<ext>.

{EXIT_CODES}"""


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


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="trackspec",
        description="Build engine-ready music assets (OGG/MP3 + a JSON index) from .trackspec files "
                    "with MusicGen. Specs are the source; audio and index are derived and cached.",
        epilog=MAIN_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"trackspec {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    build = sub.add_parser("build", help="build every stale track and update the index",
                           description="Find every .trackspec, decide what is stale and why, and bring "
                                       "assets and index up to date.",
                           epilog=BUILD_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    build.add_argument("--root", type=Path, help="game repo root (default: nearest folder with trackspec.toml)")
    build.add_argument("--model", metavar="ID_OR_DIR",
                       help="use this model for every spec in this run (hub id or local directory; "
                            "part of the keys). Env: TRACKSPEC_MODEL")
    build.add_argument("--check", action="store_true",
                       help="decide only: print stale tracks and why, write nothing; exit 1 if any is stale")
    build.add_argument("--json", action="store_true", help="print the results as JSON on stdout")
    build.add_argument("--no-wait", action="store_true",
                       help="exit 3 instead of waiting when another trackspec process holds the lock")
    build.add_argument("-q", "--quiet", action="store_true", help="print only failures and the summary")
    build.add_argument("-v", "--verbose", action="store_true", help="log details (cache decisions, tracebacks)")

    watch = sub.add_parser("watch", help="the development daemon: rebuild tracks as their specs are saved",
                           description="Build once, then watch the repo: each saved .trackspec (or "
                                       "trackspec.toml) is re-planned from its content and brought up to "
                                       "date. Cache hits, re-encodes and index-only changes are served at "
                                       "once; generations run one after another on a model that stays "
                                       "loaded. Ctrl-C or SIGTERM stops after the current step (exit 0); a "
                                       "second Ctrl-C stops at once. Nothing half-written is ever left in "
                                       "the assets folder.",
                           epilog=WATCH_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    watch.add_argument("--root", type=Path, help="game repo root (default: nearest folder with trackspec.toml)")
    watch.add_argument("--model", metavar="ID_OR_DIR",
                       help="use this model for every spec (hub id or local directory). Env: TRACKSPEC_MODEL")
    watch.add_argument("--debounce", type=float, default=100.0, metavar="MS",
                       help="quiet time after a save before building, in ms (default 100)")
    watch.add_argument("--unload-after", type=float, default=300.0, metavar="SECONDS",
                       help="unload the model after this long without generating (default 300)")
    watch.add_argument("--poll", type=float, metavar="SECONDS",
                       help="poll for changes every SECONDS instead of using inotify (network shares)")
    watch.add_argument("--json", action="store_true", help="print events as JSON Lines on stdout")
    watch.add_argument("-q", "--quiet", action="store_true", help="print only finished jobs' failures")
    watch.add_argument("-v", "--verbose", action="store_true", help="log details (cache decisions, tracebacks)")

    init = sub.add_parser("init", help="write a commented trackspec.toml (refuses to overwrite)",
                          description="Make a folder a trackspec game repo by writing a commented "
                                      "trackspec.toml there.")
    init.add_argument("--root", type=Path, default=Path("."), help="folder to initialise (default: .)")

    model = sub.add_parser("model", help="model utilities", description="Model utilities.")
    model_sub = model.add_subparsers(dest="model_command", metavar="ACTION", required=True)
    tiny = model_sub.add_parser(
        "tiny", help="save a tiny random MusicGen for tests and offline demos",
        description="Build a tiny MusicGen with RANDOM weights and save it to DIR. It makes noise, not "
                    "music: it exists so tests and offline demos run the real loading and generation code "
                    "without downloading a model or having a GPU.")
    tiny.add_argument("directory", type=Path, metavar="DIR")
    tiny.add_argument("--seed", type=int, default=0, help="weight initialisation seed (default 0)")
    tiny.add_argument("--stereo", action="store_true", help="a stereo model (8 interleaved codebooks)")
    return parser


def _cmd_build(args: argparse.Namespace) -> int:
    from .build import BuildOptions, run_build
    from .config import MODEL_ENV, find_root, load_config

    root = args.root.resolve() if args.root else find_root(Path.cwd())
    config = load_config(root)
    model_override = args.model or os.environ.get(MODEL_ENV) or None
    reporter = TextReporter(quiet=args.quiet, json_mode=args.json)
    options = BuildOptions(model_override=model_override, override_base=Path.cwd(), check=args.check,
                           wait_for_lock=not args.no_wait)
    report = run_build(config, options, reporter)
    if args.json:
        doc = {
            "ok": report.ok,
            "check": args.check,
            "root": str(config.root),
            "index": str(config.index_path),
            "tracks": [dataclasses.asdict(r) for r in report.results],
        }
        print(json.dumps(doc, indent=2, sort_keys=True))
    elif args.check:
        stale = [r for r in report.results if r.action != "fresh"]
        for r in stale:
            if r.ok:
                print(f"stale     {r.name}  ({r.action}: {'; '.join(r.reasons)})")
        print("up to date" if not stale else f"{len(stale)} of {len(report.results)} tracks need a build",
              file=sys.stderr)
    else:
        print(summary(report, config.root), file=sys.stderr)
    return EXIT_OK if report.ok else EXIT_FAILED


def _cmd_watch(args: argparse.Namespace) -> int:
    from .config import MODEL_ENV, find_root
    from .watch.daemon import Daemon, WatchOptions
    from .watch.output import JsonWatchReporter, TextWatchReporter

    if args.debounce < 0 or args.unload_after < 0 or (args.poll is not None and args.poll <= 0):
        print("trackspec: --debounce and --unload-after must be >= 0, --poll > 0", file=sys.stderr)
        return EXIT_USAGE
    root = args.root.resolve() if args.root else find_root(Path.cwd())
    options = WatchOptions(model_override=args.model or os.environ.get(MODEL_ENV) or None,
                           override_base=Path.cwd(), debounce=args.debounce / 1000.0,
                           unload_after=args.unload_after, poll=args.poll)
    reporter = JsonWatchReporter() if args.json else TextWatchReporter(quiet=args.quiet)
    return Daemon(root, options, reporter).run()


def _cmd_init(args: argparse.Namespace) -> int:
    from .scaffold import write_project_config

    path = write_project_config(args.root.resolve())
    print(f"wrote {path}")
    return EXIT_OK


def _cmd_model_tiny(args: argparse.Namespace) -> int:
    from .generate.tiny import save_tiny_model

    directory = save_tiny_model(args.directory, seed=args.seed, audio_channels=2 if args.stereo else 1)
    print(f"saved a tiny random MusicGen (noise, not music) to {directory}")
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if getattr(args, "verbose", False) else logging.WARNING,
                        format="trackspec: %(levelname)s: %(message)s", stream=sys.stderr)
    commands = {"build": _cmd_build, "watch": _cmd_watch, "init": _cmd_init, "model": _cmd_model_tiny}
    if args.command not in commands:
        parser.print_help()
        return EXIT_USAGE
    try:
        return commands[args.command](args)
    except LockBusy as exc:
        print(f"trackspec: {exc}", file=sys.stderr)
        return EXIT_LOCKED
    except (ProjectNotFound, ConfigError, IndexCorrupt, FileExistsError) as exc:
        print(f"trackspec: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except TrackspecError as exc:
        print(f"trackspec: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print("trackspec: interrupted; published files and the index are intact", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
