"""``trackspec plan``: what `build` would do for each track, and why."""

from __future__ import annotations

import argparse

from .common import EXIT_CODES, EXIT_FAILED, EXIT_OK, add_parser, add_root, inspect, print_rows_json

PLAN_EPILOG = f"""actions:
  fresh     up to date: nothing to do
  index     only [meta] or the spec's path changed: the index entry is rewritten
  restore   cache hit: the encoded files are copied from the cache
  encode    the raw audio is cached: resampled and encoded again, no generation
  generate  MusicGen must generate the audio
  remove    the spec is gone: its files and index entry go
  FAILED    the spec has an error (file:line:col: field: message); its last asset stays

reasons: new, prompt changed, seed changed, model changed, duration changed, <field> changed,
output missing (<fmt>), output modified (<fmt>) (edited by hand), output path changed,
spec deleted, spec renamed the track.

plan writes nothing (and takes no lock). Exit 0 when every spec could be planned, 1 when
a spec has an error. --json prints {{"root", "index", "tracks": [...]}}; its JSON Schema is
importer/schemas/plan.schema.json.

{EXIT_CODES}"""


def register(sub: argparse._SubParsersAction) -> None:
    plan = add_parser(
        sub,
        "plan",
        "show what build would do for each track, and why",
        "Show what `trackspec build` would do for each track and why, without doing it: "
        "the same decision as `build --check`, with every track listed.",
        PLAN_EPILOG,
    )
    add_root(plan)
    plan.add_argument("--model", metavar="ID_OR_DIR", help="plan as `build --model` would (part of the keys)")
    plan.add_argument("--json", action="store_true", help="print the plan as JSON")
    plan.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..overview import plan_rows

    config, plan = inspect(args)
    rows = plan_rows(config, plan)
    if args.json:
        print_rows_json(config, rows)
    else:
        for row in rows:
            if row.error:
                print(f"FAILED    {row.spec}\n          {row.error}")
                continue
            why = f"  ({'; '.join(row.reasons)})" if row.reasons else ""
            after = f"  [continues {row.continues}]" if row.continues else ""
            print(f"{row.action:<9} {row.name}{after}{why}")
        counts: dict[str, int] = {}
        for row in rows:
            counts[row.action] = counts.get(row.action, 0) + 1
        print(", ".join(f"{n} {a}" for a, n in sorted(counts.items())) or "no tracks")
    return EXIT_FAILED if any(r.error for r in rows) else EXIT_OK
