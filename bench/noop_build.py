"""Benchmark: whole-process wall time of a no-op `trackspec build` and `trackspec build --check`.

Sets up a throwaway game repo with N specs (default 1000) that all share one take (same
prompt, seed and 1 s duration, different file names), builds it once (one generation, the
rest restored from the cache; ~15 s for 1000 specs with the tiny model), then times fresh
subprocesses of `python -m importer build -q` and `build --check`:

* warm: the per-machine state in `.trackspec/` is present (the everyday case): the stat
  cache `state.json` and the no-op record `noop.marshal`, so the runs take the no-op fast
  path (`importer/fastpath.py`; checked once with `-v` before the timed runs);
* cold: both files are deleted before each run (a fresh clone or CI checkout; a no-op
  build writes them back, so they are deleted again every time): the full plan.

Every run must exit 0, and one extra `--json` run per case must report every track
"fresh". Python start-up (`python -c pass`) and `import importer.cli` are timed too, for
reference. Prints median, min and max wall time per case, next to the goals (warm <= 100 ms,
cold <= 1.5 s), and the median CPU time (user + system; steadier on a shared machine).

The subprocesses inherit the environment as it is: with PYTHONDONTWRITEBYTECODE=1 and no
`importer/__pycache__`, every run compiles trackspec's modules from source. `--pyc` gives
the runs a bytecode cache of their own (PYTHONPYCACHEPREFIX in the temp dir, written by a
first untimed run), as on a usual install.

    .venv/bin/python bench/noop_build.py [--specs 1000] [--runs 7] [--model models/tiny] [--pyc]

`--other-files 20000 --other-folders 2000` is the repo-wide case (issue 19): trackspec.toml
sets no `specs` (the whole repo is searched), the repo also holds that many other files
spread over that many folders (two levels deep, as game source and art trees are), and an
ignored `Library/` tree (`.gitignore`) of the same size that discovery must never walk.
`--ab` then also builds a plain copy (the same specs in `track_specs/`, `specs =
["track_specs"]`, no other files) and times warm runs of both alternately, so the difference is
measured at one machine pace.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from game_repo import CLI, make_game_repo

SPEC = 'prompt = "one shared take"\nduration = 1.0\nseed = 7\n'
GOALS = {"warm": 0.100, "cold": 1.5}
FAST = "no-op, decided by stat alone"
#: Files written this recently are not trusted by the no-op record (its racy window, 1 s).
RACY_WAIT = 1.1


def timed(
    cmd: list[str], cwd: Path, env: dict[str, str], before: Callable[[], None] | None = None
) -> tuple[float, float]:
    """(wall, CPU) seconds of one subprocess run, which must exit 0.

    CPU time (user + system) is the steadier figure on a shared machine: other work delays
    a run's wall time but adds little to its CPU time.
    """
    if before is not None:
        before()
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    elapsed = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[2:])} exited {proc.returncode}:\n{proc.stderr.decode()[-2000:]}")
    return elapsed, (after.ru_utime - usage.ru_utime) + (after.ru_stime - usage.ru_stime)


def assert_noop(cmd: list[str], cwd: Path, env: dict[str, str], specs: int) -> None:
    """One extra run with --json: every track must be "fresh" (nothing rebuilt)."""
    proc = subprocess.run([*cmd, "--json"], cwd=cwd, env=env, capture_output=True, text=True)
    doc = json.loads(proc.stdout)
    actions = {t["action"] for t in doc["tracks"]}
    if proc.returncode != 0 or actions != {"fresh"} or len(doc["tracks"]) != specs:
        raise SystemExit(
            f"{' '.join(cmd[2:])} was no no-op: exit {proc.returncode}, actions {actions}, {len(doc['tracks'])} tracks"
        )


def assert_path(cmd: list[str], cwd: Path, env: dict[str, str], fast: bool) -> None:
    """One extra run with -v: it must (or must not) take the no-op fast path."""
    proc = subprocess.run([*cmd, "-v"], cwd=cwd, env=env, capture_output=True, text=True)
    if proc.returncode != 0 or (FAST in proc.stderr) != fast:
        raise SystemExit(
            f"{' '.join(cmd[2:])} -v: expected the {'fast' if fast else 'full'} path, got:\n{proc.stderr[-2000:]}"
        )


def add_other_files(root: Path, files: int, folders: int) -> None:
    """The repo-wide case: no `specs` setting, ``files`` other files in ``folders`` folders, and an
    ignored ``Library/`` tree as big (Unity's import cache) that discovery must not walk."""
    (root / "trackspec.toml").write_text("# specs unset: the whole repo is searched\n")
    (root / ".gitignore").write_text("Library/\n*.tmp\n")
    per_group = max(1, int(folders**0.5))
    for top in ("src", "Library"):
        for i in range(files):
            folder = root / top / f"group{(i % folders) // per_group:03d}" / f"dir{i % folders:04d}"
            folder.mkdir(parents=True, exist_ok=True)
            (folder / f"file{i:05d}.txt").write_text("x")


def line(label: str, samples: list[tuple[float, float]], goal: float | None = None) -> str:
    ms = [wall * 1000 for wall, _ in samples]
    cpu = [c * 1000 for _, c in samples]
    text = (
        f"  {label:<28} median {statistics.median(ms):7.1f} ms   min {min(ms):7.1f}   "
        f"max {max(ms):7.1f}   cpu median {statistics.median(cpu):6.1f}   (n={len(ms)})"
    )
    if goal is not None:
        verdict = "ok" if statistics.median(ms) <= goal * 1000 else "MISSED"
        text += f"   goal <= {goal * 1000:.0f} ms: {verdict}"
    return text


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--specs", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=7, help="timed runs per case (at least 5)")
    parser.add_argument("--model", type=Path, help="a local model dir (default: a tiny one made here)")
    parser.add_argument("--pyc", action="store_true", help="let the timed runs use a bytecode cache")
    parser.add_argument(
        "--other-files",
        type=int,
        default=0,
        help="repo-wide case: this many non-spec files besides the specs (specs unset)",
    )
    parser.add_argument("--other-folders", type=int, default=2000, help="folders the other files are spread over")
    parser.add_argument(
        "--ab", action="store_true", help="with --other-files: also time warm runs of a plain copy, alternately"
    )
    args = parser.parse_args()
    runs = max(5, args.runs)

    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        root, env = make_game_repo(tmp, args.model)
        py = sys.executable
        cli = CLI
        if args.pyc:
            env.pop("PYTHONDONTWRITEBYTECODE", None)
            env["PYTHONPYCACHEPREFIX"] = str(tmp / "pycache")
        for i in range(args.specs):
            (root / "track_specs" / f"track{i:04d}.trackspec").write_text(SPEC)
        if args.other_files:
            add_other_files(root, args.other_files, args.other_folders)
        start = time.perf_counter()
        subprocess.run([*cli, "build", "-q"], cwd=root, env=env, check=True, capture_output=True)
        first = time.perf_counter() - start

        build = [*cli, "build", "-q"]
        check = [*cli, "build", "--check"]
        state = root / ".trackspec" / "state.json"
        record = root / ".trackspec" / "noop.marshal"

        def drop_state() -> None:
            state.unlink(missing_ok=True)
            record.unlink(missing_ok=True)

        results: dict[str, list[tuple[float, float]]] = {}
        if args.other_files and args.ab:
            plain = tmp / "plain"
            (plain / "track_specs").mkdir(parents=True)
            (plain / "trackspec.toml").write_text('specs = ["track_specs"]\n')
            for spec in (root / "track_specs").iterdir():
                (plain / "track_specs" / spec.name).write_text(spec.read_text())
            subprocess.run([*cli, "build", "-q"], cwd=plain, env=env, check=True, capture_output=True)
            time.sleep(RACY_WAIT)
            for cwd in (plain, root):
                timed(build, cwd, env)  # records written, caches warm
                assert_path(build, cwd, env, fast=True)
            for label, cmd in (("build", build), ("build --check", check)):
                pairs: dict[str, list[tuple[float, float]]] = {"plain": [], "repo-wide": []}
                for _ in range(runs):
                    pairs["plain"].append(timed(cmd, plain, env))
                    pairs["repo-wide"].append(timed(cmd, root, env))
                for kind, values in pairs.items():
                    results[f"{label}, warm, A/B {kind}"] = values
        for label, code in (("python -c pass", "pass"), ("import importer.cli", "import importer.cli")):
            timed([py, "-c", code], root, env)  # untimed first run (writes bytecode with --pyc)
            results[label] = [timed([py, "-c", code], root, env) for _ in range(runs)]
        for label, cmd in (("build", build), ("build --check", check)):
            time.sleep(RACY_WAIT)  # what the last build wrote is now outside the racy window
            timed(build, root, env)  # settle: state.json and the no-op record written, page cache warm
            assert_noop(cmd[:-1] if cmd[-1] == "-q" else cmd, root, env, args.specs)
            assert_path(cmd, root, env, fast=True)
            results[f"{label}, warm"] = [timed(cmd, root, env) for _ in range(runs)]
            drop_state()
            assert_noop(cmd[:-1] if cmd[-1] == "-q" else cmd, root, env, args.specs)
            drop_state()
            assert_path(cmd, root, env, fast=False)
            results[f"{label}, cold"] = [timed(cmd, root, env, drop_state) for _ in range(runs)]
            if not state.exists():
                raise SystemExit(f"{label} did not write {state} back")

    bytecode = (
        "own bytecode cache (--pyc)"
        if args.pyc
        else "PYTHONDONTWRITEBYTECODE=1: no bytecode cache for importer/"
        if os.environ.get("PYTHONDONTWRITEBYTECODE")
        else "environment's bytecode settings"
    )
    other = (
        f", repo-wide search with {args.other_files} other files in {args.other_folders} folders "
        f"(+ an ignored Library/ as big)"
        if args.other_files
        else ""
    )
    print(
        f"no-op build, {args.specs} specs (all fresh){other}, {runs} runs per case, whole process; {bytecode} "
        f"(first build: {first:.1f} s)"
    )
    for label, values in results.items():
        goal = GOALS["warm"] if label.endswith("warm") else GOALS["cold"] if label.endswith("cold") else None
        print(line(label, values, goal))
    return 0


if __name__ == "__main__":
    sys.exit(main())
