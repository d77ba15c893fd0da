"""The ``trackspec`` command line: the top-level parser and the exit-code policy.

Each subcommand lives in ``importer/commands/<name>.py``; this module only assembles them
and turns the errors every command may meet into exit codes. A no-op ``build`` should
cost little more than the interpreter's start-up, so only the subcommand asked for is
registered, and ``logging`` and the error classes (which pull in ``dataclasses``) are
imported only when a command runs in full. A command may first try ``run_if_noop``, and
read a plain command line itself with ``quick_args`` (argparse costs ~15 ms).
"""

from __future__ import annotations

import importlib
import sys

from . import __version__
from .commands.common import EXIT_CODES, EXIT_USAGE

TYPE_CHECKING = False  # not typing's: importing typing costs ~5 ms of a no-op build
if TYPE_CHECKING:
    import argparse
    from collections.abc import Callable, Sequence
    from typing import Any

#: Subcommands in the order --help lists them.
COMMANDS = [
    "build",
    "watch",
    "plan",
    "status",
    "audition",
    "pin",
    "report",
    "new",
    "init",
    "doctor",
    "cache",
    "model",
    "hooks",
]

MAIN_EPILOG = f"""examples:
  trackspec init                           make this folder a game repo (writes trackspec.toml)
  trackspec build                          build every stale track (the pre-build hook)
  trackspec build --check                  CI gate: list stale tracks, write nothing
  trackspec watch                          rebuild tracks as their specs are saved
  trackspec model tiny models/tiny         a tiny offline test model (noise, not music)
  trackspec build --model models/tiny      build with that model instead of each spec's

{EXIT_CODES}"""


def _parser(only: str | None = None) -> argparse.ArgumentParser:
    """The parser with every subcommand, or with ``only`` that one (the rest would not be used)."""
    import argparse

    parser = argparse.ArgumentParser(
        prog="trackspec",
        description="Build engine-ready music assets (OGG/MP3 + a JSON index) from .trackspec files "
        "with MusicGen. Specs are the source; audio and index are derived and cached.",
        epilog=MAIN_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"trackspec {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS if only is None else [only]:
        importlib.import_module(f".commands.{name}", __package__).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    command = argv[0] if argv and argv[0] in COMMANDS else None
    tried_noop = False
    if command is not None:  # a plain command line may skip argparse (see commands/build.py)
        module = importlib.import_module(f".commands.{command}", __package__)
        quick = getattr(module, "quick_args", lambda argv: None)(argv)
        if quick is not None:
            tried_noop = True
            code = _call(module.run_if_noop, quick, full=False)
            if code is not None:
                return code
    args = _parser(command).parse_args(argv)
    if not hasattr(args, "run"):
        _parser().print_help()
        return EXIT_USAGE
    fast = getattr(args, "run_if_noop", None)
    if fast is not None and not tried_noop:
        code = _call(fast, args, full=False)
        if code is not None:
            return code
    code = _call(args.run, args, full=True)
    return 0 if code is None else code


def _call(run: Callable[[Any], int | None], args: Any, full: bool) -> int | None:
    """``run(args)`` with the error-to-exit-code policy; logging is set up for a full run (or -v)."""
    verbose = getattr(args, "verbose", False)
    if full or verbose:
        _configure_logging(verbose)
    try:
        return run(args)
    except KeyboardInterrupt:
        print("trackspec: interrupted; published files and the index are intact", file=sys.stderr)
        return 130
    except Exception as exc:
        code = _exit_code(exc)
        if code is None:
            raise
        from .grammar import redact

        print(f"trackspec: {redact(str(exc))}", file=sys.stderr)
        return code


def _configure_logging(verbose: bool) -> None:
    import logging

    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.WARNING,
        format="trackspec: %(levelname)s: %(message)s",
        stream=sys.stderr,
    )
    for handler in logging.getLogger().handlers:
        handler.addFilter(_redact_record)
    for noisy in THIRD_PARTY_LOGGERS:  # their debug logs print request headers and signed URLs
        logging.getLogger(noisy).setLevel(logging.WARNING)


#: Client libraries whose debug output carries credentials (botocore logs the session token).
THIRD_PARTY_LOGGERS = (
    "botocore",
    "boto3",
    "s3transfer",
    "urllib3",
    "obstore",
    "httpx",
    "httpcore",
    "huggingface_hub",
    "filelock",
)


def _redact_record(record: Any) -> bool:
    """A logging filter: the record's text with secrets taken out (``grammar.redact``)."""
    from .grammar import redact

    message = record.getMessage()
    clean = redact(message)
    if record.exc_info and not record.exc_text:
        import logging

        record.exc_text = logging.Formatter().formatException(record.exc_info)
    if record.exc_text:
        record.exc_text = redact(record.exc_text)
    if clean != message:
        record.msg, record.args = clean, None
    return True


def _exit_code(exc: Exception) -> int | None:
    """The exit code of an error every command may meet; ``None``: a bug, shown with its traceback."""
    from .errors import TrackspecError

    if isinstance(exc, TrackspecError):
        return exc.exit_code
    if isinstance(exc, FileExistsError):  # `new`/`init` never overwrite a file
        return EXIT_USAGE
    return None


if __name__ == "__main__":
    sys.exit(main())
