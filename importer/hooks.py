"""Build-system hooks: the git pre-commit hook and the check of the *staged* state it runs.

``trackspec hooks install git`` writes ``<hooks dir>/pre-commit`` (``git rev-parse --git-path
hooks``, so ``core.hooksPath`` is honoured). The hook calls ``trackspec hooks check-staged``:

* it exits 0 at once when the commit touches no ``*.trackspec``, no ``trackspec.toml`` and
  nothing in the assets folder or the index;
* else it lays the commit's view of the game repo out in a temp folder: the staged versions of
  every ``*.trackspec`` and ``trackspec.toml`` (and, when the repo commits its asset index, of
  the tracked asset files) come from the git index (``git checkout-index``); everything else is
  a symlink to the working tree (model folders, and the assets when they are not committed);
  untracked specs are left out, since they are not part of the commit;
* it runs ``build --check`` on that folder with the repo's own cache and stat cache, prints the
  stale tracks with their reasons and exits 1 if any, so the commit stops.

With ``--build`` the hook builds the working tree instead (``trackspec build``) and stops the
commit only when the build fails; when the repo commits its assets, the built files and the
index are staged (``git add``) so the commit carries them.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

from .errors import TrackspecError
from .layout import CONFIG_NAME, SPEC_SUFFIX, STATE_DIR_NAME, STATE_FILE

#: Marks a hook file as ours: reinstalling replaces it; any other file needs --force.
HOOK_MARKER = "# trackspec-managed-hook"

HOOK_TEMPLATE = """\
#!/bin/sh
{marker} (written by `trackspec hooks install git{flags}`; reinstall to update, delete to remove)
# {purpose}
# Skip it once with: git commit --no-verify
TRACKSPEC_ROOT={root}
TRACKSPEC_PYTHON={python}
if [ -x "$TRACKSPEC_PYTHON" ]; then
    set -- "$TRACKSPEC_PYTHON" -P -m importer
elif command -v trackspec >/dev/null 2>&1; then
    set -- trackspec
else
    echo "trackspec pre-commit hook: $TRACKSPEC_PYTHON is gone and there is no trackspec on PATH;" >&2
    echo "  pip install trackspec (or run trackspec hooks install git again), or skip once: git commit --no-verify" >&2
    exit 1
fi
cd "$(git rev-parse --show-toplevel)" || exit 1
exec "$@" hooks check-staged --root "$TRACKSPEC_ROOT"{flags}
"""


class HookError(TrackspecError):
    """A hook problem with the exit code it means (1 refused or failed, 2 usage)."""

    def __init__(self, message: str, code: int = 2):
        super().__init__(message)
        self.code = self.exit_code = code


def git(args: list[str], cwd: Path, *, input: bytes | None = None) -> bytes:
    """Run git and return its stdout; a failure becomes a ``HookError`` with git's message."""
    try:
        proc = subprocess.run(["git", *args], cwd=cwd, input=input, capture_output=True)
    except FileNotFoundError:
        raise HookError("git is not installed (or not on PATH)") from None
    if proc.returncode != 0:
        message = proc.stderr.decode(errors="replace").strip() or f"git {' '.join(args)} failed"
        raise HookError(f"git {args[0]}: {message}")
    return proc.stdout


def _z(output: bytes) -> list[str]:
    return [p for p in output.decode(errors="surrogateescape").split("\0") if p]


def toplevel(path: Path) -> Path:
    """The top of the git work tree that holds ``path``."""
    try:
        out = git(["rev-parse", "--show-toplevel"], path)
    except HookError:
        raise HookError(f"{path} is not inside a git work tree (run `git init` first)") from None
    return Path(out.decode().strip()).resolve()


def hooks_dir(path: Path) -> Path:
    """Where git looks for hooks (``core.hooksPath`` if set, else ``.git/hooks``)."""
    hooks = Path(git(["rev-parse", "--git-path", "hooks"], path).decode().strip())
    return (hooks if hooks.is_absolute() else path / hooks).resolve()


# --------------------------------------------------------------------------- install


def hook_script(root_rel: str, build: bool, python: str | None = None) -> str:
    purpose = (
        "Builds the music (trackspec build) before each commit; a failed build stops the commit."
        if build
        else "Stops a commit whose staged .trackspec files are not built (trackspec build --check)."
    )
    return HOOK_TEMPLATE.format(
        marker=HOOK_MARKER,
        flags=" --build" if build else "",
        purpose=purpose,
        root=shlex.quote(root_rel),
        python=shlex.quote(python or sys.executable),
    )


def install_git_hook(root: Path, build: bool = False, force: bool = False) -> tuple[Path, str]:
    """Write the pre-commit hook for the game repo at ``root``; returns its path and what was done."""
    root = root.resolve()
    top = toplevel(root)
    root_rel = root.relative_to(top).as_posix() or "."
    path = hooks_dir(root) / "pre-commit"
    text = hook_script(root_rel, build)
    done = "installed"
    if path.exists() or path.is_symlink():
        try:
            old = path.read_text("utf-8", errors="replace")
        except OSError:
            old = ""
        if HOOK_MARKER not in old:
            if not force:
                raise HookError(
                    f"{path} exists and was not written by trackspec; not overwriting it. "
                    "Add `trackspec hooks check-staged` to it yourself, or pass --force "
                    "(your hook is then kept as pre-commit.trackspec-backup)",
                    code=1,
                )
            backup = path.with_name("pre-commit.trackspec-backup")
            n = 1
            while backup.exists() or backup.is_symlink():
                backup = path.with_name(f"pre-commit.trackspec-backup.{n}")
                n += 1
            os.replace(path, backup)
            done = f"installed (the previous hook was moved to {backup.name})"
        elif old == text and os.access(path, os.X_OK):
            return path, "already installed"
        else:
            done = "updated"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".pre-commit.trackspec-tmp-{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    tmp.chmod(0o755)
    os.replace(tmp, path)
    return path, done


# --------------------------------------------------------------------------- check-staged


def _under(path: str, folder: str) -> bool:
    """``path`` is ``folder`` or inside it (both relative to the work tree top, posix)."""
    return folder in ("", ".") or path == folder or path.startswith(folder + "/")


def _ancestors(path: str) -> set[str]:
    """``path`` and every folder above it ("" is the top), relative posix paths."""
    out = {""}
    parts = [p for p in path.split("/") if p and p != "."]
    for i in range(1, len(parts) + 1):
        out.add("/".join(parts[:i]))
    return out


def _rel(path: Path, top: Path) -> str:
    rel = path.relative_to(top).as_posix()
    return "" if rel == "." else rel


@dataclass
class StagedResult:
    code: int
    lines: list[str]
    notes: list[str]


def staged_changes(top: Path) -> list[str]:
    """Paths the commit changes (added, modified, deleted), relative to the top."""
    return _z(git(["diff", "--cached", "--name-only", "--no-renames", "-z"], top))


def check_staged(
    root: Path, model_override: str | None = None, override_base: Path | None = None, force: bool = False
) -> StagedResult:
    """``build --check`` on the staged state of the game repo at ``root`` (see the module doc)."""
    from .build import BuildOptions, run_build
    from .config import load_config
    from .console import TextReporter, format_result, format_stale
    from .errors import TrackspecError

    root = root.resolve()
    top = toplevel(root)
    prefix = _rel(root, top)
    try:
        real_config = load_config(root)
    except TrackspecError:
        real_config = None  # the working tree's trackspec.toml may be broken or gone; the staged one decides

    watched = list(_watched(real_config, top)) if real_config is not None else []
    changed = staged_changes(top)
    toml_rel = f"{prefix}/{CONFIG_NAME}" if prefix else CONFIG_NAME
    relevant = [
        p
        for p in changed
        if _under(p, prefix) and (p.endswith(SPEC_SUFFIX) or p == toml_rel or any(_under(p, w) for w in watched))
    ]
    if not relevant and not force:
        return StagedResult(0, [], [])

    tracked = set(_z(git(["ls-files", "-z"], top)))
    with tempfile.TemporaryDirectory(prefix="trackspec-staged-") as tmp:
        temp_top = Path(tmp).resolve()
        temp_root = temp_top / prefix if prefix else temp_top
        exported = [p for p in tracked if _under(p, prefix) and (p.endswith(SPEC_SUFFIX) or p == toml_rel)]
        _checkout_index(top, temp_top, exported)
        temp_root.mkdir(parents=True, exist_ok=True)
        toml_tracked = toml_rel in tracked
        if not toml_tracked and (root / CONFIG_NAME).is_file():
            os.symlink(root / CONFIG_NAME, temp_root / CONFIG_NAME)

        def fix(text: str) -> str:  # messages name the real files, not the temp copies
            return text.replace(str(temp_top), str(top))

        try:
            staged_config = load_config(temp_root)
        except TrackspecError as exc:
            return StagedResult(2, [f"trackspec: the staged {CONFIG_NAME}: {fix(str(exc))}"], [])
        committed = _lay_out(top, temp_top, staged_config, tracked, toml_rel if toml_tracked else None)
        cache_dir = real_config.cache_dir if real_config is not None else staged_config.cache_dir
        config = replace(staged_config, cache_dir=cache_dir)
        if real_config is not None:
            _seed_state(real_config.state_dir / STATE_FILE, config.state_dir / STATE_FILE, top, temp_top)
        options = BuildOptions(model_override=model_override, override_base=override_base or Path.cwd(), check=True)
        report = run_build(config, options, TextReporter(quiet=True))

    lines: list[str] = []
    notes: list[str] = []
    stale = 0
    for r in report.results:
        if r.action == "fresh":
            continue
        if r.action == "remove" and not committed:
            notes.append(f"note: {r.name} has no staged spec; its local assets stay until `trackspec build`")
            continue
        stale += 1
        if r.ok:
            lines.append(format_stale(r))
        else:
            lines.append(fix(format_result(r)))
    if stale:
        fixes = (
            "run trackspec build, then git add the specs, the assets and the index, and commit again"
            if committed
            else "run trackspec build, then commit again"
        )
        notes.append(
            f"trackspec: {stale} of {len(report.results)} tracks in the staged state need a build: "
            f"{fixes} (skip this check once: git commit --no-verify)"
        )
    return StagedResult(1 if stale else 0, lines, notes)


def _lay_out(top: Path, temp_top: Path, staged_config, tracked: set[str], staged_toml: str | None) -> bool:
    """Complete the temp tree (the staged specs are there already); whether assets are committed.

    When the repo commits its asset index, the assets folder holds the staged asset files (a
    symlink where the working-tree file is the staged one, a copy from the git index where it
    differs) and the ignored files, which are never committed; nothing else: an asset built but
    not staged is missing from the commit. Otherwise the assets are what is on disk.
    """
    prefix = _rel(staged_config.root, temp_top)
    assets_rel, index_rel = _watched(staged_config, temp_top)
    spec_dirs = [_rel(d, temp_top) for d in staged_config.spec_dirs]
    committed = index_rel in tracked
    # the assets folder is kept apart unless the specs (or the root) live inside it
    separable = committed and not any(_under(d, assets_rel) for d in [prefix, *spec_dirs])
    if separable:
        staged = [p for p in tracked if (_under(p, assets_rel) or p == index_rel) and not p.endswith(SPEC_SUFFIX)]
        pathspecs = [p or "." for p in (assets_rel, index_rel)]
        differ = set(_z(git(["diff", "--name-only", "--no-renames", "-z", "--", *pathspecs], top)))
        copies = [p for p in staged if p in differ or not (top / p).is_file()]
        _checkout_index(top, temp_top, copies)
        links = [p for p in staged if p not in set(copies)]
        if (top / assets_rel).is_dir():  # ignored files are never committed: they count as on disk
            links += _z(git(["ls-files", "-z", "--others", "--ignored", "--exclude-standard", "--", pathspecs[0]], top))
        for rel in links:
            target = temp_top / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            if not os.path.lexists(target):
                os.symlink(top / rel, target)

    protected = {prefix, _rel(staged_config.index_path.parent, temp_top), assets_rel, *spec_dirs}
    real_dirs: set[str] = set()
    for folder in protected:
        real_dirs |= _ancestors(folder)
    for spec_dir in spec_dirs:  # folders holding working-tree specs are laid out (specs left out)
        real_dirs |= _spec_folders(top / spec_dir, top)
    state_rel = f"{prefix}/{STATE_DIR_NAME}" if prefix else STATE_DIR_NAME
    _overlay(
        top,
        temp_top,
        "",
        real_dirs,
        skip={state_rel},
        toml=staged_toml,
        assets=assets_rel if separable else None,
        index=index_rel if separable else None,
    )
    return committed


def _watched(config, top: Path) -> tuple[str, str]:
    """The assets folder and the index of ``config``, relative to the work tree ``top``."""
    return _rel(config.assets_dir, top), _rel(config.index_path, top)


def _checkout_index(top: Path, dest: Path, paths: list[str]) -> None:
    """Write the staged versions of ``paths`` under ``dest`` (``git checkout-index``)."""
    if paths:
        git(
            ["checkout-index", f"--prefix={dest}/", "-z", "--stdin"],
            top,
            input=b"\0".join(p.encode(errors="surrogateescape") for p in paths) + b"\0",
        )


def _spec_folders(spec_dir: Path, top: Path) -> set[str]:
    """Folders (and their parents) that hold a ``*.trackspec`` in the working tree."""
    out: set[str] = set()
    if not spec_dir.is_dir():
        return out
    for dirpath, dirnames, filenames in os.walk(spec_dir):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        if any(f.endswith(SPEC_SUFFIX) for f in filenames):
            out |= _ancestors(_rel(Path(dirpath), top))
    return out


def _overlay(
    real: Path,
    dest: Path,
    rel: str,
    real_dirs: set[str],
    skip: set[str],
    toml: str | None,
    assets: str | None,
    index: str | None,
) -> None:
    """Fill ``dest`` with symlinks to what ``real`` holds that the git index did not provide.

    Folders in ``real_dirs`` (and folders ``checkout-index`` made) become real folders, filled
    the same way; everything else is one symlink. Specs are never linked (only staged ones
    count); nor are the staged ``trackspec.toml`` and, when assets are committed, the assets.
    """
    try:
        entries = list(os.scandir(real))
    except OSError:
        return
    for entry in entries:
        r = f"{rel}/{entry.name}" if rel else entry.name
        if (not rel and entry.name == ".git") or r in skip or r == toml or r == index:
            continue
        if assets is not None and _under(r, assets):
            continue
        is_dir = entry.is_dir(follow_symlinks=False)
        if not is_dir and entry.name.endswith(SPEC_SUFFIX):
            continue
        target = dest / entry.name
        if is_dir and (r in real_dirs or (target.is_dir() and not target.is_symlink())):
            target.mkdir(exist_ok=True)
            _overlay(Path(entry.path), target, r, real_dirs, skip, toml, assets, index)
        elif not os.path.lexists(target):
            os.symlink(entry.path, target)


def _seed_state(real_state: Path, temp_state: Path, top: Path, temp_top: Path) -> None:
    """Copy the stat cache, its paths also mapped into the temp folder (symlinked files hit it).

    Each entry holds the file's (size, mtime, ctime, inode): a staged copy has another inode,
    so it is hashed again; a symlinked file stats as the real one and is not read.
    """
    try:
        data = json.loads(real_state.read_text("utf-8"))
    except (OSError, ValueError):
        return
    files = data.get("files")
    if not isinstance(files, dict):
        return
    base = str(top) + os.sep
    mapped = {str(temp_top) + os.sep + k[len(base) :]: v for k, v in files.items() if k.startswith(base)}
    data["files"] = {**files, **mapped}
    temp_state.parent.mkdir(parents=True, exist_ok=True)
    temp_state.write_text(json.dumps(data), encoding="utf-8")


def build_working_tree(root: Path, model: str | None = None) -> int:
    """``trackspec build`` of the working tree (the ``--build`` hook); then stage committed assets."""
    root = root.resolve()
    cmd = [sys.executable, "-P", "-m", "importer", "build", "--root", str(root)]
    if model:
        cmd += ["--model", model]
    code = subprocess.run(cmd).returncode
    if code != 0:
        print(
            "trackspec: the build failed, so the commit stops; fix the spec and commit again "
            "(skip this hook once: git commit --no-verify)",
            file=sys.stderr,
        )
        return code
    from .config import load_config

    top = toplevel(root)
    config = load_config(root)
    index_rel = _rel(config.index_path, top)
    assets_rel = _rel(config.assets_dir, top)
    tracked = set(_z(git(["ls-files", "-z", "--", index_rel], top)))
    if index_rel in tracked:  # the repo commits its assets: the commit carries what was just built
        paths = [p for p in (assets_rel, index_rel) if (top / p).exists() or _z(git(["ls-files", "-z", "--", p], top))]
        if paths:
            git(["add", "--all", "--", *paths], top)
            print(f"trackspec: staged the built assets ({', '.join(paths)})", file=sys.stderr)
    return 0
