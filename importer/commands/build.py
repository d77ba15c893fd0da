"""``trackspec build``: the pre-build hook, and ``--check``, the CI gate."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

from .common import EXIT_CODES, EXIT_FAILED, EXIT_OK, add_parser, add_root, model_override, project_root

BUILD_EPILOG = f"""what build does, per track:
  fresh     outputs match the index and the spec: nothing to do (no file is read)
  index     only [meta] or the spec's path changed: the index entry is rewritten
  restore   the encoded files are in the cache: copied into the assets, verified
  encode    the raw audio is in the cache: resampled and encoded again
  generate  MusicGen makes the audio (the model is loaded once per build)
  remove    the spec is gone: its files and index entry are removed

The index (default assets/music/index.json) is rewritten atomically after each track.
Outputs land in <assets>/<genre>/<name>.<ext>.

{EXIT_CODES}"""



def register(sub: argparse._SubParsersAction) -> None:
    build = add_parser(sub, "build", "build every stale track and update the index",
                       "Find every .trackspec, decide what is stale and why, and bring assets and index "
                       "up to date.", BUILD_EPILOG)
    add_root(build)
    build.add_argument("--model", metavar="ID_OR_DIR",
                       help="use this model for every spec in this run (hub id or local directory; "
                            "part of the keys). Env: TRACKSPEC_MODEL")
    build.add_argument("--check", action="store_true",
                       help="decide only: print stale tracks and why, write nothing; exit 1 if any is stale")
    build.add_argument("--json", action="store_true", help="print the results as JSON on stdout")
    build.add_argument("--no-wait", action="store_true",
                       help="exit 3 instead of waiting when another trackspec process holds the lock")
    build.add_argument("-q", "--quiet", action="store_true", help="print only failures and the summary")
    build.add_argument("-v", "--verbose", action="store_true", help="log details (cache decisions, tracebacks)")
    build.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..build import BuildOptions, run_build
    from ..config import load_config
    from ..console import TextReporter, format_stale, summary

    config = load_config(project_root(args))
    reporter = TextReporter(quiet=args.quiet, json_mode=args.json)
    options = BuildOptions(model_override=model_override(args), override_base=Path.cwd(), check=args.check,
                           wait_for_lock=not args.no_wait)
    report = run_build(config, options, reporter)
    if args.json:
        doc = {
            "ok": report.ok,
            "check": args.check,
            "root": str(config.root),
            "index": str(config.index_path),
            "tracks": [dataclasses.asdict(r) for r in report.results],
        }
        print(json.dumps(doc, indent=2, sort_keys=True))
    elif args.check:
        stale = [r for r in report.results if r.action != "fresh"]
        for r in stale:
            if r.ok:
                print(format_stale(r))
        print("up to date" if not stale else f"{len(stale)} of {len(report.results)} tracks need a build",
              file=sys.stderr)
    else:
        print(summary(report, config.root), file=sys.stderr)
    return EXIT_OK if report.ok else EXIT_FAILED
