"""``trackspec new``: start a spec from a prompt, with every other setting documented."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .common import EXIT_CODES, EXIT_OK, EXIT_USAGE, add_parser, add_root, project_root

NEW_EPILOG = f"""example:
  trackspec new boss_fight --prompt "epic orchestral battle, 140 BPM" --duration 45 --genre combat
  -> track_specs/boss_fight.trackspec (then: trackspec build)

The file sets prompt and duration (and genre if given) and shows every other setting as a
comment, so the project's [defaults] keep applying until you uncomment one. It is checked
by the same parser `build` uses; an existing file is never overwritten.

{EXIT_CODES}"""


def register(sub: argparse._SubParsersAction) -> None:
    new = add_parser(
        sub,
        "new",
        "write a new commented .trackspec (refuses to overwrite)",
        "Write a new .trackspec in the first spec folder of trackspec.toml.",
        NEW_EPILOG,
    )
    new.add_argument("name", metavar="NAME", help="track name: a-z 0-9 _ - (it becomes the file name)")
    new.add_argument("--prompt", required=True, help="what MusicGen should make")
    new.add_argument("--duration", type=float, default=30.0, metavar="S", help="seconds (default 30)")
    new.add_argument("--genre", metavar="G", help="output subfolder (default: the project's)")
    new.add_argument("--dir", type=Path, metavar="FOLDER", help="where to write it (default: first spec folder)")
    add_root(new)
    new.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..config import load_config
    from ..errors import SpecError
    from ..fields import TOP_FIELDS, FieldProblem
    from ..scaffold import write_spec

    for field, value in (
        ("name", args.name),
        ("genre", args.genre),
        ("prompt", args.prompt),
        ("duration", args.duration),
    ):
        try:
            if value is not None:
                TOP_FIELDS[field].check(value)
        except FieldProblem as exc:
            print(f"trackspec: {field} {value!r}: {exc}", file=sys.stderr)
            return EXIT_USAGE
    config = load_config(project_root(args))
    folder = args.dir.resolve() if args.dir else None
    try:
        path = write_spec(config, args.name, args.prompt, args.duration, args.genre, folder)
    except SpecError as exc:
        print(f"trackspec: not written: {exc.field}: {exc.message}", file=sys.stderr)
        return EXIT_USAGE
    print(f"wrote {path.relative_to(config.root) if config.root in path.parents else path}")
    return EXIT_OK
