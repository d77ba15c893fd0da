"""``trackspec doctor``: check that this machine and repo can build, and say what to fix."""

from __future__ import annotations

import argparse

from .common import EXIT_CODES, EXIT_FAILED, EXIT_OK, add_parser, add_root, model_override

DOCTOR_EPILOG = f"""what it checks (one line each: OK, WARN or FAIL, with what to do):
  project       trackspec.toml and its specs (repo checks are skipped without one)
  ffmpeg        the ffmpeg found has the libvorbis and libmp3lame encoders
  torch         torch (and transformers) importable: needed only to generate
  cuda          a CUDA device (name, memory); without one generation runs on the CPU
  model         each spec's model (or --model) loads offline: a local folder with
                config.json, or a hub id already in the Hugging Face cache (never downloads)
  cache, disk   the cache folder is writable; free space (WARN under 2 GiB)
  repo_lock     whether another trackspec process holds this repo's lock
  watch         whether a `trackspec watch` daemon runs on this repo
  remote        with [cache.remote]: the team cache answers with these credentials
  remote_write  with push = true: a probe object can be written (and is deleted)

--json prints {{schema_version, ok, root, cache_dir, counts, checks: [{{name, status,
message, hint, details}}]}} (importer/schemas/doctor.schema.json).

{EXIT_CODES}"""


def register(sub: argparse._SubParsersAction) -> None:
    doctor = add_parser(
        sub,
        "doctor",
        "check that this machine and repo can build (ffmpeg, torch, CUDA, models, cache, locks)",
        "Check everything a build needs and explain what is missing: ffmpeg encoders, torch and "
        "CUDA, each spec's model (offline), the cache folder and the repo's locks. Exits 1 when "
        "something needed is missing. Works outside a game repo too (repo checks are skipped).",
        DOCTOR_EPILOG,
    )
    add_root(doctor)
    doctor.add_argument(
        "--model",
        metavar="ID_OR_DIR",
        help="check this model instead of each spec's (as build --model). Env: TRACKSPEC_MODEL",
    )
    doctor.add_argument("--json", action="store_true", help="print the checks as JSON on stdout")
    doctor.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import json
    import sys

    from ..doctor import build_context, report_json, report_line, run_checks

    root = args.root.resolve() if args.root else None
    ctx = build_context(root, explicit_root=root is not None, model_override=model_override(args))
    checks = run_checks(ctx)
    doc = report_json(ctx, checks)
    if args.json:
        print(json.dumps(doc, indent=2, sort_keys=True))
    else:
        for check in checks:
            print(report_line(check))
        counts = doc["counts"]
        verdict = "ready to build" if doc["ok"] else "not ready: fix the FAIL lines above"
        print(
            f"doctor: {verdict} ({counts['ok']} ok, {counts['warn']} warnings, {counts['fail']} failed)",
            file=sys.stderr,
        )
    return EXIT_OK if doc["ok"] else EXIT_FAILED
