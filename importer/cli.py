"""The ``trackspec`` command line: the top-level parser and the exit-code policy.

Each subcommand lives in ``importer/commands/<name>.py``; this module only assembles them
and turns the errors every command may meet into exit codes.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from typing import Sequence

from . import __version__
from .commands.common import EXIT_CODES, EXIT_FAILED, EXIT_LOCKED, EXIT_USAGE
from .errors import ConfigError, IndexCorrupt, LockBusy, ProjectNotFound, TrackspecError

#: Subcommands in the order --help lists them.
COMMANDS = ["build", "watch", "plan", "status", "new", "init", "doctor", "cache", "model", "hooks"]

MAIN_EPILOG = f"""examples:
  trackspec init                           make this folder a game repo (writes trackspec.toml)
  trackspec build                          build every stale track (the pre-build hook)
  trackspec build --check                  CI gate: list stale tracks, write nothing
  trackspec watch                          rebuild tracks as their specs are saved
  trackspec model tiny models/tiny         a tiny offline test model (noise, not music)
  trackspec build --model models/tiny      build with that model instead of each spec's

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
    for name in COMMANDS:
        importlib.import_module(f".commands.{name}", __package__).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if getattr(args, "verbose", False) else logging.WARNING,
                        format="trackspec: %(levelname)s: %(message)s", stream=sys.stderr)
    if not hasattr(args, "run"):
        parser.print_help()
        return EXIT_USAGE
    try:
        return args.run(args)
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
