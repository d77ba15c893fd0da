"""``trackspec audition``: several takes of one track, to hear before choosing one."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .common import EXIT_CODES, EXIT_FAILED, EXIT_OK, add_parser, add_root, model_override, project_root

AUDITION_EPILOG = f"""how it works:
  Take n has a fixed seed, so `audition NAME` again finds its takes in the cache and
  costs nothing, and take numbers keep meaning what you heard. Takes are generated
  together, batch_size at a time, then encoded as the build would (loudness, loop, tags).
  Nothing in the assets or the index changes; the takes live in the cache and in
  .trackspec/auditions/NAME.json.

  Listen with `trackspec report` (a page with a player per take), then keep one:
    trackspec pin NAME TAKE      writes the take's seed into the spec
    trackspec build              publishes exactly that take, from the cache

  --seconds makes short previews (quicker to generate); pinning a preview means the
  build generates the full length with that seed.

  With `trackspec watch` running on the repo, the daemon generates the takes on the
  model it keeps loaded (no second model load); --here generates in this process.

examples:
  trackspec audition phase1_calm_improved --takes 4
  trackspec audition boss_theme --takes 8 --seconds 10 --model models/tiny

{EXIT_CODES}"""


def register(sub: argparse._SubParsersAction) -> None:
    parser = add_parser(
        sub,
        "audition",
        "generate several takes of a track (different seeds) to choose from",
        "Generate N takes of one track, each with its own seed, encode them as a build "
        "would and keep them in the cache. Assets and index are not touched.",
        AUDITION_EPILOG,
    )
    add_root(parser)
    parser.add_argument("name", metavar="NAME", help="the track's name (as `trackspec status` lists it)")
    parser.add_argument("--takes", type=int, default=3, metavar="N", help="how many takes (default 3, at most 32)")
    parser.add_argument(
        "--seconds", type=float, metavar="S", help="preview length in seconds (default: the spec's duration)"
    )
    parser.add_argument(
        "--model",
        metavar="ID_OR_DIR",
        help="use this model instead of the spec's "
        "(as `build --model`; a pinned take then builds with the same --model)",
    )
    parser.add_argument(
        "--here",
        action="store_true",
        help="generate in this process even when a `trackspec watch` runs on the repo "
        "(by default the daemon generates, with the model it keeps loaded)",
    )
    parser.add_argument(
        "--json", action="store_true", help="print the takes as JSON on stdout (importer/schemas/audition.schema.json)"
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import dataclasses
    import json

    from ..audition import audition, find_track
    from ..config import load_config
    from ..errors import TrackspecError
    from ..progress import ProgressDisplay

    if args.seconds is not None and not 0 < args.seconds <= 600:
        raise TrackspecError(f"--seconds must be between 0 and 600, got {args.seconds:g}")
    config = load_config(project_root(args))
    track = find_track(config, args.name, model_override(args), Path.cwd())
    display = ProgressDisplay(enabled=not args.json)
    note = lambda message: print(message, file=sys.stderr)  # noqa: E731
    generator = None
    if not args.here:
        from ..watch.requests import daemon_running

        if daemon_running(config):
            generator = _via_daemon(config, args, display.update, note)
    takes = audition(config, track, args.takes, args.seconds, progress=display.update, note=note, generator=generator)
    code = EXIT_FAILED if any(t.error for t in takes) else EXIT_OK
    if args.json:
        print(
            json.dumps(
                {"name": track.spec.name, "takes": [dataclasses.asdict(t) for t in takes]}, indent=2, sort_keys=True
            )
        )
        return code
    for take in takes:
        if take.error:
            print(f"take {take.take}: seed {take.seed}, FAILED: {take.error}")
            continue
        lufs = _lufs(take.loudness)
        preview = f", {take.seconds:g} s preview" if take.preview else ""
        print(f"take {take.take}: seed {take.seed}, {take.action}{preview}{lufs}")
    print(f"listen: trackspec report --open; keep one: trackspec pin {track.spec.name} TAKE", file=sys.stderr)
    return code


def _via_daemon(config, args: argparse.Namespace, progress, note):
    """A take generator that asks the running daemon (``watch.requests``); if the daemon
    stops before answering, the takes are generated here after all."""
    from ..audition import generate_takes, take_of_seed
    from ..errors import TrackspecError
    from ..watch.requests import daemon_running, send, wait_for_result

    def generate(plans: list) -> dict[int, str]:
        numbers = [take_of_seed(tp.track.keys.seed) for tp in plans]
        request_id = send(
            config,
            {
                "name": args.name,
                "takes": numbers,
                "seconds": args.seconds,
                "model": model_override(args),
                "cwd": str(Path.cwd()),
            },
        )
        note(
            f"the running `trackspec watch` generates {len(numbers)} takes with its loaded model "
            "(its output shows the progress) ..."
        )
        result = wait_for_result(config, request_id, lambda: daemon_running(config))
        if result is None:
            note("the daemon stopped before answering: generating here")
            return generate_takes(config, plans, progress, note)
        if "error" in result:
            raise TrackspecError(result["error"])
        return {int(take): error for take, error in result["errors"].items()}

    return generate


def _lufs(loudness: dict | None) -> str:
    files = (loudness or {}).get("files") or {}
    readings = [f["integrated"] for f in files.values() if isinstance(f.get("integrated"), (int, float))]
    return f", {min(readings):.1f} LUFS" if readings else ""
