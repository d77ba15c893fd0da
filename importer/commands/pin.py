"""``trackspec pin``: keep an auditioned take by writing its seed into the spec."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .common import EXIT_CODES, EXIT_OK, add_parser, add_root, model_override, project_root

PIN_EPILOG = f"""Only the spec's `seed` changes: comments and layout stay byte for byte. The next
`trackspec build` (or a running `trackspec watch`) then publishes exactly the auditioned
take, restored from the cache with no generation.

example:
  trackspec audition phase1_calm_improved --takes 4
  trackspec pin phase1_calm_improved 3

{EXIT_CODES}"""


def register(sub: argparse._SubParsersAction) -> None:
    parser = add_parser(
        sub,
        "pin",
        "keep an auditioned take: write its seed into the spec",
        "Write the seed of take TAKE from the last `trackspec audition NAME` into the "
        "track's spec, keeping every comment and the file's formatting.",
        PIN_EPILOG,
    )
    add_root(parser)
    parser.add_argument("name", metavar="NAME", help="the track's name")
    parser.add_argument("take", type=int, metavar="TAKE", help="the take number that `audition` printed")
    parser.add_argument(
        "--model",
        metavar="ID_OR_DIR",
        help="the --model the audition used, if any (to tell whether the next build restores the take from the cache)",
    )
    parser.add_argument("--json", action="store_true", help="print what was pinned as JSON on stdout")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import json

    from ..config import load_config
    from ..pin import pin_take

    config = load_config(project_root(args))
    pinned = pin_take(config, args.name, args.take, model_override(args), Path.cwd())
    if args.json:
        print(
            json.dumps(
                {
                    "name": pinned.name,
                    "take": pinned.take,
                    "seed": pinned.seed,
                    "spec": str(pinned.spec),
                    "previous_seed": pinned.previous_seed,
                    "preview": pinned.preview,
                    "cached": pinned.cached,
                },
                indent=2,
                sort_keys=True,
            )
        )
        return EXIT_OK
    was = f" (was {pinned.previous_seed})" if pinned.previous_seed is not None else ""
    print(f"{pinned.spec}: seed = {pinned.seed}{was}")
    if pinned.cached:
        print(f"the next build publishes take {pinned.take} from the cache (no generation)", file=sys.stderr)
    elif pinned.preview:
        print(
            f"take {pinned.take} was a preview: the next build generates the full length with its seed", file=sys.stderr
        )
    else:
        print("the spec changed since the audition: the next build generates with this seed", file=sys.stderr)
    return EXIT_OK
