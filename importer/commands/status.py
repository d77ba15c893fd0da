"""``trackspec status``: a table of every track and the state of its assets."""

from __future__ import annotations

import argparse

from .common import EXIT_CODES, EXIT_FAILED, EXIT_OK, add_parser, add_root, inspect, print_rows_json

STATUS_EPILOG = f"""columns:
  STATE     fresh, stale (the reason follows), failed (the spec's error follows) or removed
  DURATION  seconds; MODEL the model of the published files (else the spec's)
  FORMATS   the files; SIZE their total; BUILT when the newest was written (UTC)
  LOUDNESS  integrated loudness measured on the published files (the quietest format);
            "loop" when the track loops seamlessly
  TEMPO     the tempo measured on the published files, and meta.bpm with the difference
            ("over 3 %" warns that MusicGen did not keep the tempo asked for)
  LICENSE   the licence of the model's weights (commercial = true refuses non-commercial ones)

status writes nothing (and takes no lock). Exit 0, or 1 when a spec has an error.
--json prints {{"root", "index", "tracks": [...]}}; its JSON Schema is
importer/schemas/status.schema.json.

{EXIT_CODES}"""


def register(sub: argparse._SubParsersAction) -> None:
    status = add_parser(
        sub,
        "status",
        "a table of tracks: state, duration, model, formats, sizes, loudness, licence, last built",
        "List every track with the state of its assets: fresh or stale (and why), "
        "duration, model, formats, sizes and when it was last built.",
        STATUS_EPILOG,
    )
    add_root(status)
    status.add_argument("--model", metavar="ID_OR_DIR", help="judge staleness as `build --model` would")
    status.add_argument("--json", action="store_true", help="print the table as JSON")
    status.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..console import human_bytes
    from ..overview import status_rows, tempo_text

    config, plan = inspect(args)
    rows = status_rows(config, plan)
    if args.json:
        print_rows_json(config, rows)
        return EXIT_FAILED if any(r.state == "failed" for r in rows) else EXIT_OK
    table = [("TRACK", "STATE", "DURATION", "MODEL", "FORMATS", "SIZE", "LOUDNESS", "TEMPO", "LICENSE", "BUILT")]
    notes = []
    for row in rows:
        label = row.name or row.spec
        table.append(
            (
                label,
                row.state,
                f"{row.duration:g} s" if row.duration is not None else "-",
                row.model or "-",
                ",".join(row.formats) or "-",
                human_bytes(sum(row.bytes.values())) if row.bytes else "-",
                _loudness(row),
                tempo_text(row.tempo),
                row.license or "-",
                row.built or "-",
            )
        )
        if row.error:
            notes.append(f"  {label}: {row.error}")
        elif row.reasons and row.state != "fresh":
            notes.append(f"  {label}: {'; '.join(row.reasons)}")
        if row.tempo is not None and row.tempo["warning"]:
            notes.append(f"  {label}: warning: measured tempo {tempo_text(row.tempo)}")
        if row.continues and not row.error:
            notes.append(f"  {label}: continues {row.continues}")
    widths = [max(len(r[i]) for r in table) for i in range(len(table[0]))]
    for line in table:
        print("  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip())
    if notes:
        print("\n" + "\n".join(notes))
    return EXIT_FAILED if any(r.state == "failed" for r in rows) else EXIT_OK


def _loudness(row) -> str:
    text = f"{row.lufs:.1f} LUFS" if row.lufs is not None else "-"
    return f"{text} loop" if row.loop else text
