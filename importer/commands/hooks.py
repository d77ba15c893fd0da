"""``trackspec hooks``: install build-system hooks (git), and the staged-state check they run."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .common import EXIT_CODES, EXIT_OK, add_parser, add_root, model_override, project_root

HOOKS_EPILOG = f"""examples:
  trackspec hooks install git            block commits of unbuilt specs (checks the staged files)
  trackspec hooks install git --build    build the music before each commit instead
  trackspec hooks check-staged           what the git hook runs: build --check on the staged state

Other build systems (pre-commit, Make, CMake, Godot, Unity, CI): see build_hooks/README.md.

{EXIT_CODES}"""


def register(sub: argparse._SubParsersAction) -> None:
    hooks = add_parser(
        sub,
        "hooks",
        "install build-system hooks (a git pre-commit hook)",
        "Install hooks that run trackspec from other tools, and the checks those hooks run.",
        HOOKS_EPILOG,
    )
    hooks_sub = hooks.add_subparsers(dest="hooks_command", metavar="ACTION", required=True)

    install = add_parser(
        hooks_sub,
        "install",
        "install a hook (git: <hooks dir>/pre-commit)",
        "Write a git pre-commit hook into the repo's hooks folder (core.hooksPath is "
        "honoured). By default it runs `build --check` on the staged state and stops a commit "
        "whose staged .trackspec files are not built, printing why; with --build it runs "
        "`trackspec build` instead and stops the commit only if the build fails. The hook "
        "calls this Python's trackspec, or `trackspec` on PATH if that one is gone. "
        "Reinstalling is safe; a hook trackspec did not write is kept unless --force.",
    )
    install.add_argument("tool", choices=["git"], help="which hook to install")
    install.add_argument(
        "--build",
        action="store_true",
        help="build before each commit instead of checking (repos that commit assets get the built files staged)",
    )
    install.add_argument(
        "--force",
        action="store_true",
        help="replace a pre-commit hook that trackspec did not write (it is kept as pre-commit.trackspec-backup)",
    )
    add_root(install)
    install.set_defaults(run=run_install)

    check = add_parser(
        hooks_sub,
        "check-staged",
        "build --check on the staged state (what the git hook runs)",
        "Check the commit being made: the staged .trackspec files and trackspec.toml (and "
        "the staged assets, when the repo commits them) are laid out in a temp folder with "
        "the rest of the working tree, and `build --check` runs there with this repo's cache. "
        "Prints each stale track and why; exit 1 if any. Unstaged edits are ignored. Exits 0 "
        "at once when the commit touches no spec, trackspec.toml or asset.",
    )
    add_root(check)
    check.add_argument(
        "--build",
        action="store_true",
        help="build the working tree instead (trackspec build) and stage the built assets when the repo commits them",
    )
    check.add_argument(
        "--always", action="store_true", help="check even when the commit touches no spec, trackspec.toml or asset"
    )
    check.add_argument(
        "--model", metavar="ID_OR_DIR", help="use this model for every spec (as build --model). Env: TRACKSPEC_MODEL"
    )
    check.set_defaults(run=run_check_staged)


def run_install(args: argparse.Namespace) -> int:
    from ..hooks import install_git_hook

    root = project_root(args)
    path, done = install_git_hook(root, build=args.build, force=args.force)  # HookError: its own exit code
    what = (
        "runs `trackspec build` before each commit"
        if args.build
        else "stops commits of unbuilt .trackspec files (checks the staged state)"
    )
    print(f"{done}: {path}\n  {what}; skip it once with git commit --no-verify")
    return EXIT_OK


def run_check_staged(args: argparse.Namespace) -> int:
    from ..hooks import build_working_tree, check_staged, staged_changes, toplevel

    root = project_root(args)
    if args.build:  # a HookError ends the command with its own exit code (``cli``)
        if not args.always and not _touches_music(root, staged_changes(toplevel(root))):
            return EXIT_OK
        return build_working_tree(root, model_override(args))
    result = check_staged(root, model_override(args), Path.cwd(), force=args.always)
    for line in result.lines:
        print(line)
    for note in result.notes:
        print(note, file=sys.stderr)
    return result.code


def _touches_music(root: Path, changed: list[str]) -> bool:
    """Whether a commit changes a spec or trackspec.toml (what makes the --build hook build)."""
    return any(p.endswith(".trackspec") or p.rsplit("/", 1)[-1] == "trackspec.toml" for p in changed)
