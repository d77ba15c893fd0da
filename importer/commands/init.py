"""``trackspec init``: make a folder a game repo."""

from __future__ import annotations

import argparse
from pathlib import Path

from .common import EXIT_OK, add_parser


def register(sub: argparse._SubParsersAction) -> None:
    init = add_parser(
        sub,
        "init",
        "write a commented trackspec.toml (refuses to overwrite)",
        "Make a folder a trackspec game repo by writing a commented trackspec.toml there.",
    )
    init.add_argument("--root", type=Path, default=Path("."), help="folder to initialise (default: .)")
    init.add_argument(
        "--engine",
        choices=("godot", "unity", "unreal"),
        help="preset the assets folder and formats for this engine (see build_hooks/README.md)",
    )
    init.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..fsutil import ensure_state_dir
    from ..layout import STATE_DIR_NAME
    from ..scaffold import write_project_config

    path = write_project_config(args.root.resolve(), args.engine)
    ensure_state_dir(path.parent / STATE_DIR_NAME)  # ignored by git from the start (.gitignore: *)
    print(f"wrote {path}")
    return EXIT_OK
