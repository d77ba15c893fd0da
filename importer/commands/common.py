"""What the subcommands share: exit codes, the repo-root option, help formatting.

``argparse`` and ``textwrap`` are imported where used: a no-op build that needs neither
(see ``build.quick_args``) should not pay for them.
"""

from __future__ import annotations

from pathlib import Path

from ..exit_codes import EXIT_FAILED, EXIT_LOCKED, EXIT_OK, EXIT_USAGE  # noqa: F401  (the commands' vocabulary)

TYPE_CHECKING = False  # not typing's: importing typing costs ~5 ms of a no-op build
if TYPE_CHECKING:
    import argparse
    from typing import Any

EXIT_CODES = """exit codes:
  0  ok: every track is built and up to date (or the command did what it says)
  1  a track or spec failed (the others were still built), --check found stale tracks,
     or doctor found something missing
  2  usage error (bad arguments, no or invalid trackspec.toml, unreadable index)
  3  the repository is locked by another trackspec process (--no-wait), or a second
     daemon was started on the same repo"""

ROOT_HELP = "game repo root (default: nearest folder with trackspec.toml)"


def add_parser(
    sub: argparse._SubParsersAction, name: str, help: str, description: str, epilog: str | None = None
) -> argparse.ArgumentParser:
    """A subcommand parser whose epilog keeps its line breaks (the description is wrapped)."""
    import argparse
    import textwrap

    if "\n" not in description:
        description = textwrap.fill(description, 88)
    return sub.add_parser(
        name, help=help, description=description, epilog=epilog, formatter_class=argparse.RawDescriptionHelpFormatter
    )


def add_root(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--root", type=Path, help=ROOT_HELP)


def project_root(args: argparse.Namespace) -> Path:
    """``--root`` if given, else the nearest folder at or above the cwd with trackspec.toml."""
    from ..config import find_root

    return args.root.resolve() if getattr(args, "root", None) else find_root(Path.cwd())


def model_override(args: argparse.Namespace) -> str | None:
    """``--model``, else ``TRACKSPEC_MODEL``, else none."""
    import os

    from ..layout import MODEL_ENV

    return getattr(args, "model", None) or os.environ.get(MODEL_ENV) or None


def inspect(args: argparse.Namespace):
    """(config, plan) for read-only commands: the plan `build` would execute, nothing written."""
    from ..build import BuildOptions, inspect_plan
    from ..config import load_config

    config = load_config(project_root(args))
    return config, inspect_plan(config, BuildOptions(model_override=model_override(args), override_base=Path.cwd()))


def print_rows_json(config, rows: list) -> None:
    """The shape `plan --json` and `status --json` share: root, index and one object per row."""
    import dataclasses
    import json

    print(
        json.dumps(
            {
                "root": str(config.root),
                "index": str(config.index_path),
                "tracks": [dataclasses.asdict(r) for r in rows],
            },
            indent=2,
            sort_keys=True,
        )
    )


def add_farm_arguments(parser: argparse.ArgumentParser, require: bool = True) -> None:
    """``--farm ADDRESS`` and (unless ``require`` is false) ``--require-farm``."""
    parser.add_argument(
        "--farm",
        metavar="ADDRESS",
        help="generate on a Ray farm: local (every GPU here), auto or ray://host:10001 "
        "(needs trackspec[farm]). Env: TRACKSPEC_FARM; trackspec.toml: [farm]",
    )
    if not require:
        return
    parser.add_argument(
        "--require-farm",
        action="store_true",
        help="an unreachable farm fails (exit 1) instead of one message and a local build",
    )


def with_farm(config: Any, args: argparse.Namespace) -> Any:
    """``config`` with ``--farm``/``--require-farm`` applied (nothing imported without them)."""
    if getattr(args, "farm", None) is None and not getattr(args, "require_farm", False):
        return config
    from ..farm_settings import with_overrides

    return with_overrides(config, args.farm, getattr(args, "require_farm", False))
