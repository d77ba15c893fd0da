"""``trackspec build``: the pre-build hook, and ``--check``, the CI gate.

A no-op build (every track fresh) is the everyday case of a pre-build hook, so it has a
fast path: ``quick_args`` reads a plain ``build`` command line without argparse, and
``run_if_noop`` answers from the no-op record (``importer.fastpath``) by stat calls
alone. Only when that does not hold does ``run`` load the config and plan in full.
Module level imports stay light (no argparse, json or typing) for the same reason.
"""

from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace

from .common import (
    EXIT_CODES,
    EXIT_FAILED,
    EXIT_OK,
    add_farm_arguments,
    add_parser,
    add_root,
    model_override,
    project_root,
    with_farm,
)

TYPE_CHECKING = False  # not typing's: importing typing costs ~5 ms of a no-op build
if TYPE_CHECKING:
    import argparse
    from collections.abc import Callable
    from typing import Any

    from ..fastpath import NoopRecord

BUILD_EPILOG = f"""what build does, per track:
  fresh     outputs match the index and the spec: nothing to do (no file is read)
  index     only [meta] or the spec's path changed: the index entry is rewritten
  restore   the encoded files are in the cache: copied into the assets, verified
  encode    the raw audio is in the cache: resampled and encoded again
  generate  MusicGen makes the audio (the model is loaded once per build)
  remove    the spec is gone: its files and index entry are removed

The index (default assets/music/index.json) is rewritten atomically after each track.
Outputs land in <assets>/<genre>/<name>.<ext>.

With a team cache ([cache.remote] in trackspec.toml), a track the local cache lacks is
looked up there first (verified, then restored); with push = true, what the build
generated goes up afterwards. A team cache failure is one warning and a local build,
or exit 1 with --require-remote.

With a farm (--farm, TRACKSPEC_FARM or [farm] in trackspec.toml; needs
pip install "trackspec[farm]"), generation runs on Ray workers: `--farm local` uses every
GPU of this machine, `--farm ray://host:10001` joins a cluster. An unreachable farm is one
message and a local build, or exit 1 with --require-farm.

{EXIT_CODES}"""

#: build's options without a value, and with one, spelled out as ``build --help`` shows them.
_FLAGS = {
    "--check": "check",
    "--json": "json",
    "--no-wait": "no_wait",
    "-q": "quiet",
    "--quiet": "quiet",
    "-v": "verbose",
    "--verbose": "verbose",
    "--require-remote": "require_remote",
    "--require-farm": "require_farm",
}
_VALUED = {"--root": "root", "--model": "model", "--farm": "farm"}


def register(sub: argparse._SubParsersAction) -> None:
    build = add_parser(
        sub,
        "build",
        "build every stale track and update the index",
        "Find every .trackspec, decide what is stale and why, and bring assets and index up to date.",
        BUILD_EPILOG,
    )
    add_root(build)
    build.add_argument(
        "--model",
        metavar="ID_OR_DIR",
        help="use this model for every spec in this run (hub id or local directory; "
        "part of the keys). Env: TRACKSPEC_MODEL",
    )
    build.add_argument(
        "--check",
        action="store_true",
        help="decide only: print stale tracks and why, write nothing; exit 1 if any is stale",
    )
    build.add_argument("--json", action="store_true", help="print the results as JSON on stdout")
    build.add_argument(
        "--no-wait", action="store_true", help="exit 3 instead of waiting when another trackspec process holds the lock"
    )
    build.add_argument(
        "--require-remote",
        action="store_true",
        help="team cache ([cache.remote]) failures fail the build (exit 1, naming the cause) "
        "instead of one warning and a local build: for CI",
    )
    add_farm_arguments(build)
    build.add_argument("-q", "--quiet", action="store_true", help="print only failures and the summary")
    build.add_argument("-v", "--verbose", action="store_true", help="log details (cache decisions, tracebacks)")
    build.set_defaults(run=run, run_if_noop=run_if_noop)


def quick_args(argv: list[str]) -> SimpleNamespace | None:
    """``build``'s arguments read without argparse (~15 ms of a no-op), or ``None``.

    Only a plain command line is read: ``build`` and its own options, each spelled out in
    full, values separate or after ``=``. Anything else (``-qv``, abbreviations, ``--help``,
    a value starting with ``-``, an empty one, an unknown word) is left to argparse.
    """
    if not argv or argv[0] != "build":
        return None
    values: dict[str, Any] = {
        "command": "build",
        "root": None,
        "model": None,
        "farm": None,
        **{name: False for name in _FLAGS.values()},
    }
    rest = iter(argv[1:])
    for arg in rest:
        name, eq, value = arg.partition("=")
        if arg in _FLAGS:
            values[_FLAGS[arg]] = True
            continue
        if name not in _VALUED:
            return None
        if not eq:
            value = next(rest, "")
        if not value or value.startswith("-"):
            return None
        values[_VALUED[name]] = value
    if values["root"] is not None:
        values["root"] = Path(values["root"])
    return SimpleNamespace(**values)


def run(args: argparse.Namespace) -> int:
    import dataclasses

    from ..build import BuildOptions, run_build
    from ..config import load_config
    from ..console import TextReporter

    options = BuildOptions(
        model_override=model_override(args),
        override_base=Path.cwd(),
        check=args.check,
        wait_for_lock=not args.no_wait,
        require_remote=args.require_remote,
    )
    config = with_farm(load_config(project_root(args)), args)
    reporter = TextReporter(quiet=args.quiet, json_mode=args.json)
    report = run_build(config, options, reporter)
    return _finish(args, report, config.root, dataclasses.asdict)


def run_if_noop(args: argparse.Namespace) -> int | None:
    """A full no-op's output from the no-op record and stat calls alone (``importer.fastpath``).

    ``None`` when the record does not hold (or there is none, or anything goes wrong
    here): then ``run`` plans in full, and reports real errors itself.
    """
    try:
        root, record, why = _matching_record(args)
        results = _fresh_results(args, record) if record is not None else []
    except Exception as exc:
        record, why = None, f"the fast path failed ({type(exc).__name__}: {exc})"
    if record is None:
        _debug(args, f"full plan: {why}")
        return None
    _debug(args, f"no-op, decided by stat alone: {record.summary()}")
    if not (args.json or args.check or args.quiet):
        from ..console import format_result

        for result in results:
            print(format_result(result))
        sys.stdout.flush()  # before the summary on stderr, as the full build's lines are
    report = SimpleNamespace(ok=True, results=results, index_path=Path(record.index_path))
    return _finish(args, report, Path(root), vars)


def _matching_record(args: argparse.Namespace) -> tuple[str, NoopRecord | None, str]:
    """(root, the no-op record if it still holds, why not)."""
    import os

    from ..fastpath import check
    from ..layout import find_root_dir
    from ..locks import repo_unlocked

    root = str(args.root.resolve()) if args.root else find_root_dir(os.getcwd())
    if root is None:
        return "", None, "no trackspec.toml here or above"
    override, cwd = model_override(args), os.getcwd()
    if args.check:  # reads only, like the full check: no lock
        return (root, *check(root, override, cwd))
    lock = repo_unlocked(root)  # not while another process builds: it may be publishing
    if lock is None:
        return root, None, "the repo lock is held"
    with lock:
        return (root, *check(root, override, cwd))


def _fresh_results(args: argparse.Namespace, record: NoopRecord) -> list[SimpleNamespace]:
    """What a full no-op reports per track: ``TrackResult``'s fields, files and keys as a build gives them."""
    entries: dict[str, Any] = {}
    if args.json and not args.check:  # the recorded index: its signature still matches
        import json

        with open(record.index_path, "rb") as fh:
            entries = json.loads(fh.read())["tracks"]
    results = []
    for name, spec in record.tracks:
        files: dict[str, str] = {}
        keys: dict[str, str] = {}
        if entries:
            entry = entries[name]
            files = {fmt: f["path"] for fmt, f in entry["files"].items()}
            keys = {"generation": entry["keys"]["generation"], "render": entry["keys"]["render"]}
        results.append(
            SimpleNamespace(
                name=name,
                spec=spec,
                action="fresh",
                reasons=[],
                ok=True,
                error=None,
                files=files,
                seconds=0.0,
                keys=keys,
            )
        )
    return results


def _debug(args: argparse.Namespace, message: str) -> None:
    if args.verbose:
        import logging

        logging.getLogger("importer.fastpath").debug(message)


def _finish(args: argparse.Namespace, report: Any, root: Path, as_dict: Callable[[Any], dict]) -> int:
    """Print the results (text, check lines or JSON) and return the exit code."""
    from ..console import format_result, format_stale, summary

    if args.json:
        import json

        doc = {
            "ok": report.ok,
            "check": args.check,
            "root": str(root),
            "index": str(report.index_path),
            "tracks": [as_dict(r) for r in report.results],
        }
        print(json.dumps(doc, indent=2, sort_keys=True))
    elif args.check:
        stale = [r for r in report.results if r.action != "fresh"]
        for r in stale:  # a spec that cannot build (bad field, refused licence) says why too
            print(format_stale(r) if r.ok else format_result(r))
        print(
            "up to date" if not stale else f"{len(stale)} of {len(report.results)} tracks need a build", file=sys.stderr
        )
    else:
        print(summary(report, root), file=sys.stderr)
    return EXIT_OK if report.ok else EXIT_FAILED
