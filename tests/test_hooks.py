"""Build-system hooks, each run for real: git (the pre-commit hook on the staged state), the
pre-commit framework, Make, CMake; the Godot, Unity and CI files are syntax-checked.

Audio comes from a cache that the tiny model fills once per module (`warm_cache`), so the builds
these tests trigger restore from it; only that fixture generates.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[1]
HOOKS = PROJECT_ROOT / "build_hooks"
TRACKSPEC = [sys.executable, "-m", "importer"]

PROMPT_A = "calm synthwave, D minor, 90 BPM"
PROMPT_B = "calm synthwave, E minor, 92 BPM"


def spec_text(prompt: str, extra: str = "") -> str:
    return f'{extra}prompt = "{prompt}"\nduration = 1.0\nseed = 7\n\n[output]\nformats = ["ogg"]\n'


needs_git = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")


@pytest.fixture(scope="module")
def warm_cache(tiny_model, tmp_path_factory) -> Path:
    """A cache holding PROMPT_A's and PROMPT_B's audio (tiny model, 1 s, ogg), made by `trackspec build`."""
    base = tmp_path_factory.mktemp("warm")
    root, cache = base / "game", base / "cache"
    (root / "specs").mkdir(parents=True)
    (root / "trackspec.toml").write_text('specs = ["specs"]\n')
    (root / "specs/a.trackspec").write_text(spec_text(PROMPT_A))
    (root / "specs/b.trackspec").write_text(spec_text(PROMPT_B))
    env = {
        **os.environ,
        "PYTHONPATH": str(PROJECT_ROOT),
        "TRACKSPEC_CACHE_DIR": str(cache),
        "TRACKSPEC_MODEL": str(tiny_model),
    }
    proc = subprocess.run(
        [*TRACKSPEC, "build", "--root", str(root)], env=env, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "generate  a" in proc.stdout and "generate  b" in proc.stdout
    return cache


@dataclass
class Repo:
    """A game repo in a git work tree, with an environment that isolates git and trackspec."""

    top: Path
    root: Path
    env: dict

    def run(self, *args: str, cwd: Path | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
        return subprocess.run(
            list(args), cwd=cwd or self.top, env=self.env, capture_output=True, text=True, timeout=timeout
        )

    def git(self, *args: str) -> subprocess.CompletedProcess:
        return self.run("git", *args)

    def trackspec(self, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
        return self.run(*TRACKSPEC, *args, cwd=cwd or self.root)

    def commit(self, message: str) -> subprocess.CompletedProcess:
        return self.git("commit", "-m", message)

    def write_spec(self, name: str, text: str) -> Path:
        path = self.root / "track_specs" / f"{name}.trackspec"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return path

    def head(self) -> str | None:
        proc = self.git("rev-parse", "--verify", "-q", "HEAD")
        return proc.stdout.strip() or None


def output(proc: subprocess.CompletedProcess) -> str:
    return proc.stdout + proc.stderr


@pytest.fixture
def repo(tmp_path, warm_cache, tiny_model) -> Repo:
    """A git repo whose top is the game root (trackspec.toml, track_specs/)."""
    return make_repo(tmp_path, warm_cache, tiny_model, subdir=None)


def git_env(tmp_path: Path, cache: Path, model: Path) -> dict:
    """The environment minus any GIT_* of the caller, with git's user config replaced by an empty one."""
    gitconfig = tmp_path / "gitconfig"
    gitconfig.write_text("")
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update(
        {
            "PYTHONPATH": str(PROJECT_ROOT),
            "TRACKSPEC_CACHE_DIR": str(cache),
            "TRACKSPEC_MODEL": str(model),
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_CONFIG_GLOBAL": str(gitconfig),
            "GIT_AUTHOR_NAME": "Test",
            "GIT_AUTHOR_EMAIL": "test@example.com",
            "GIT_COMMITTER_NAME": "Test",
            "GIT_COMMITTER_EMAIL": "test@example.com",
        }
    )
    return env


def make_repo(tmp_path: Path, cache: Path, model: Path, subdir: str | None) -> Repo:
    top = tmp_path / "work"
    root = top / subdir if subdir else top
    (root / "track_specs").mkdir(parents=True)
    (root / "trackspec.toml").write_text('specs = ["track_specs"]\n')
    repo = Repo(top, root, git_env(tmp_path, cache, model))
    assert repo.git("init", "-q", "-b", "main").returncode == 0
    return repo


# --------------------------------------------------------------------------- git hook


@needs_git
def test_git_hook_blocks_unbuilt_specs_and_checks_the_staged_state(repo):
    installed = repo.trackspec("hooks", "install", "git")
    assert installed.returncode == 0, output(installed)
    hook = repo.top / ".git/hooks/pre-commit"
    assert os.access(hook, os.X_OK) and "hooks check-staged" in hook.read_text()
    assert sys.executable in hook.read_text()

    # 1. a new spec, not built: the commit stops and says which track and why.
    repo.write_spec("calm", spec_text(PROMPT_A))
    repo.git("add", "-A")
    blocked = repo.commit("add calm")
    assert blocked.returncode != 0
    assert "stale     calm  (restore: new)" in output(blocked)
    assert "run trackspec build" in output(blocked)
    assert repo.head() is None

    # 2. built (restored from the cache the tiny model filled) and assets staged: it goes in.
    built = repo.trackspec("build")
    assert built.returncode == 0, output(built)
    repo.git("add", "-A")
    ok = repo.commit("add calm")
    assert ok.returncode == 0, output(ok)
    assert "assets/music/index.json" in repo.git("ls-files").stdout

    # 3. a fresh staged change (a comment) with unstaged edits that make the working tree stale
    #    (a new prompt, and an untracked spec never built): the commit goes in.
    spec = repo.root / "track_specs/calm.trackspec"
    spec.write_text(spec_text(PROMPT_A, extra="# the opening theme\n"))
    repo.git("add", "track_specs")
    spec.write_text(spec_text(PROMPT_B, extra="# the opening theme\n"))
    repo.write_spec("wip", spec_text("an idea, not committed"))
    worktree = repo.trackspec("build", "--check")
    assert worktree.returncode == 1 and "stale     calm" in worktree.stdout and "stale     wip" in worktree.stdout
    ok = repo.commit("comment")
    assert ok.returncode == 0, output(ok)
    assert repo.git("show", "HEAD:track_specs/calm.trackspec").stdout.count(PROMPT_A) == 1
    (repo.root / "track_specs/wip.trackspec").unlink()

    # 4. the prompt change staged: stopped, with the reason; `commit -a` (git's temp index) too.
    head = repo.head()
    blocked = repo.git("commit", "-a", "-m", "new prompt")
    assert blocked.returncode != 0 and "stale     calm  (restore: prompt changed)" in output(blocked)
    repo.git("add", "track_specs")
    blocked = repo.commit("new prompt")
    assert blocked.returncode != 0
    assert "stale     calm  (restore: prompt changed)" in output(blocked)
    assert repo.head() == head

    # 5. built, but the new assets not staged: the staged index still holds the old take.
    built = repo.trackspec("build")
    assert built.returncode == 0 and "restore   calm" in built.stdout, output(built)
    assert repo.trackspec("build", "--check").returncode == 0  # the working tree is fresh now
    blocked = repo.commit("new prompt")
    assert blocked.returncode != 0 and "stale     calm" in output(blocked)
    assert "git add" in output(blocked)

    # 6. assets staged too: it goes in, with them.
    repo.git("add", "assets")
    ok = repo.commit("new prompt")
    assert ok.returncode == 0, output(ok)
    changed = repo.git("show", "--name-only", "--format=", "HEAD").stdout.split()
    assert set(changed) == {"track_specs/calm.trackspec", "assets/music/index.json", "assets/music/synthwave/calm.ogg"}


@needs_git
def test_check_staged_imports_nothing_heavy_and_skips_unrelated_commits(game_repo, warm_cache, tiny_model, tmp_path):
    # a staged spec that is stale, checked directly (the conftest wrapper reports heavy imports)
    env = git_env(tmp_path, warm_cache, tiny_model)
    game_repo.env.update(env)
    top = game_repo.root
    assert subprocess.run(["git", "init", "-q", "-b", "main"], cwd=top, env=env).returncode == 0
    game_repo.write_spec("calm", spec_text(PROMPT_A))
    subprocess.run(["git", "add", "-A"], cwd=top, env=env, check=True)
    check = game_repo.run("hooks", "check-staged")
    assert check.returncode == 1 and "stale     calm  (restore: new)" in check.stdout
    assert check.imported == []  # no torch, transformers, numpy or soxr
    assert not (top / "assets").exists() and not (top / ".trackspec" / "state.json").exists()

    # a commit that touches no spec, config or asset is not checked (even with stale specs staged
    # earlier and committed with --no-verify)
    subprocess.run(["git", "commit", "-qm", "x", "--no-verify"], cwd=top, env=env, check=True)
    (top / "README").write_text("hello\n")
    subprocess.run(["git", "add", "README"], cwd=top, env=env, check=True)
    assert game_repo.run("hooks", "check-staged").returncode == 0
    forced = game_repo.run("hooks", "check-staged", "--always")
    assert forced.returncode == 1 and "stale     calm" in forced.stdout

    # a broken trackspec.toml staged (the working tree's is fine): stopped, naming the real file.
    config = top / "trackspec.toml"
    good = config.read_text()
    config.write_text("specs = 3\n")
    subprocess.run(["git", "add", "trackspec.toml"], cwd=top, env=env, check=True)
    config.write_text(good)
    broken = game_repo.run("hooks", "check-staged")
    assert broken.returncode == 2, broken.stdout + broken.stderr
    assert f"{config}:1:" in broken.stdout and "specs" in broken.stdout and "trackspec-staged-" not in broken.stdout


@needs_git
def test_git_hook_build_variant_builds_during_the_commit(repo):
    assert repo.trackspec("hooks", "install", "git", "--build").returncode == 0
    assert 'check-staged --root "$TRACKSPEC_ROOT" --build' in (repo.top / ".git/hooks/pre-commit").read_text()

    # 1. the repo does not commit assets: the hook builds them on disk and the commit goes in.
    repo.write_spec("calm", spec_text(PROMPT_A))
    repo.git("add", "-A")
    ok = repo.commit("add calm")
    assert ok.returncode == 0, output(ok)
    assert "restore   calm  (new)" in output(ok)
    assert (repo.root / "assets/music/synthwave/calm.ogg").is_file()
    assert "assets/" not in repo.git("ls-files").stdout

    # 2. now it commits them: a spec change is built and its new assets are staged into the commit.
    repo.git("add", "assets")
    assert repo.commit("commit the assets").returncode == 0
    repo.write_spec("calm", spec_text(PROMPT_B))
    repo.git("add", "track_specs")
    ok = repo.commit("new prompt")
    assert ok.returncode == 0, output(ok)
    assert "restore   calm  (prompt changed)" in output(ok)
    changed = repo.git("show", "--name-only", "--format=", "HEAD").stdout.split()
    assert "assets/music/synthwave/calm.ogg" in changed and "assets/music/index.json" in changed
    assert repo.git("status", "--porcelain").stdout == ""

    # 3. a spec that fails to build stops the commit.
    repo.write_spec("broken", spec_text(PROMPT_A).replace("duration = 1.0", "duration = -1"))
    repo.git("add", "track_specs")
    head = repo.head()
    failed = repo.commit("broken")
    assert failed.returncode != 0
    assert "FAILED    track_specs/broken.trackspec" in output(failed) and "the build failed" in output(failed)
    assert repo.head() == head


@needs_git
def test_git_hook_install_respects_foreign_hooks_hooks_path_and_subfolders(tmp_path, warm_cache, tiny_model):
    repo = make_repo(tmp_path, warm_cache, tiny_model, subdir="game")
    hook = repo.top / ".git/hooks/pre-commit"
    hook.parent.mkdir(parents=True, exist_ok=True)
    foreign = "#!/bin/sh\necho mine\n"
    hook.write_text(foreign)

    refused = repo.trackspec("hooks", "install", "git")
    assert refused.returncode == 1 and "--force" in refused.stderr
    assert hook.read_text() == foreign
    forced = repo.trackspec("hooks", "install", "git", "--force")
    assert forced.returncode == 0, output(forced)
    assert (hook.parent / "pre-commit.trackspec-backup").read_text() == foreign
    first = hook.read_text()
    again = repo.trackspec("hooks", "install", "git")
    assert again.returncode == 0 and "already installed" in again.stdout and hook.read_text() == first
    assert "TRACKSPEC_ROOT=game" in first

    # core.hooksPath is where git looks, so that is where the hook goes; the game is in game/.
    repo.git("config", "core.hooksPath", ".githooks")
    assert repo.trackspec("hooks", "install", "git").returncode == 0
    assert os.access(repo.top / ".githooks/pre-commit", os.X_OK)
    repo.write_spec("calm", spec_text(PROMPT_A))
    repo.git("add", "-A")
    blocked = repo.commit("calm")
    assert blocked.returncode != 0 and "stale     calm  (restore: new)" in output(blocked)

    # the embedded interpreter is gone: the hook falls back to `trackspec` on PATH ...
    installed = repo.top / ".githooks/pre-commit"
    lines = installed.read_text().splitlines(keepends=True)
    missing = tmp_path / "no-such-python"
    installed.write_text(
        "".join(f"TRACKSPEC_PYTHON={missing}\n" if line.startswith("TRACKSPEC_PYTHON=") else line for line in lines)
    )
    scripts = Path(sys.executable).parent
    if not (scripts / "trackspec").exists():
        pytest.skip(f"no trackspec console script next to {sys.executable}")
    repo.env["PATH"] = f"{scripts}{os.pathsep}{repo.env.get('PATH', '')}"
    blocked = repo.commit("calm")
    assert blocked.returncode != 0 and "stale     calm  (restore: new)" in output(blocked)
    # ... and with neither, it says so and stops the commit.
    repo.env["PATH"] = os.pathsep.join(d for d in ("/usr/bin", "/bin") if not (Path(d) / "trackspec").exists())
    gone = repo.commit("calm")
    assert gone.returncode != 0 and "no trackspec on PATH" in output(gone)

    # outside a git work tree, install says so (usage error).
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "trackspec.toml").write_text("")
    env = {**repo.env, "GIT_CEILING_DIRECTORIES": str(tmp_path)}
    proc = subprocess.run([*TRACKSPEC, "hooks", "install", "git"], cwd=plain, env=env, capture_output=True, text=True)
    assert proc.returncode == 2 and "not inside a git work tree" in proc.stderr


# --------------------------------------------------------------------------- pre-commit framework


def test_pre_commit_manifest_is_valid():
    pre_commit = shutil.which("pre-commit", path=str(Path(sys.executable).parent)) or shutil.which("pre-commit")
    if pre_commit is None:
        pytest.skip("the pre-commit package is not installed (pip install pre-commit)")
    proc = subprocess.run(
        [pre_commit, "validate-manifest", str(PROJECT_ROOT / ".pre-commit-hooks.yaml")], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    import yaml

    hooks = {h["id"]: h for h in yaml.safe_load((PROJECT_ROOT / ".pre-commit-hooks.yaml").read_text())}
    assert hooks["trackspec-check"]["entry"] == "trackspec build --check"
    assert hooks["trackspec-build"]["entry"] == "trackspec build"
    for hook in hooks.values():
        assert hook["language"] == "python" and hook["pass_filenames"] is False


@needs_git
@pytest.mark.timeout(600)
def test_pre_commit_try_repo_runs_both_hooks(repo, tmp_path):
    """The real framework: installs this project into its own venv and runs the hooks (slow:
    each try-repo builds a fresh environment, about 20-40 s)."""
    pre_commit = shutil.which("pre-commit", path=str(Path(sys.executable).parent)) or shutil.which("pre-commit")
    if pre_commit is None:
        pytest.skip("the pre-commit package is not installed (pip install pre-commit)")
    # A clean clone of this project (what `repo: <url>` + `rev:` gives pre-commit), so files not
    # yet committed here are part of it.
    project = tmp_path / "trackspec-src"
    project.mkdir()
    for name in ("pyproject.toml", "README.md", ".pre-commit-hooks.yaml"):
        shutil.copy2(PROJECT_ROOT / name, project / name)
    shutil.copytree(
        PROJECT_ROOT / "importer", project / "importer", ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
    )
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-qm", "trackspec"]):
        proc = repo.run("git", *args, cwd=project)
        assert proc.returncode == 0, output(proc)

    env = {k: v for k, v in repo.env.items() if k != "PYTHONPATH"}  # the hook must use its own install
    env["PRE_COMMIT_HOME"] = str(tmp_path / "pre-commit-home")
    repo.env = env
    repo.write_spec("calm", spec_text(PROMPT_A))
    repo.git("add", "-A")

    # stale: the check fails with the reason. (try-repo installs the hook environment each time.)
    first = repo.run(pre_commit, "try-repo", str(project), "trackspec-check", "--all-files", timeout=600)
    text = output(first)
    offline = (
        "No matching distribution",
        "Could not find a version",
        "Failed to establish a new connection",
        "Temporary failure in name resolution",
        "Network is unreachable",
    )
    if first.returncode != 0 and "trackspec build --check..." not in text and any(o in text for o in offline):
        pytest.skip(f"pip cannot reach a package index from pre-commit's environment here:\n{text[-3000:]}")
    assert first.returncode == 1, text
    assert "trackspec build --check" in text and "Failed" in text
    assert "stale     calm  (restore: new)" in text
    assert not (repo.root / "assets").exists()

    # both hooks (try-repo runs them in id order: build, then check): the build (core install,
    # no torch) restores the track from the cache, then the check passes.
    second = repo.run(pre_commit, "try-repo", str(project), "--all-files", timeout=600)
    text = output(second)
    assert text.index("trackspec build....") < text.index("trackspec build --check...."), text
    assert second.returncode == 0, text
    assert text.count("Passed") == 2
    assert (repo.root / "assets/music/synthwave/calm.ogg").is_file()


# --------------------------------------------------------------------------- Make


def game_dir(tmp_path: Path, cache: Path, model: Path) -> tuple[Path, dict]:
    root = tmp_path / "game"
    (root / "track_specs").mkdir(parents=True)
    (root / "trackspec.toml").write_text('specs = ["track_specs"]\n')
    (root / "track_specs/calm.trackspec").write_text(spec_text(PROMPT_A))
    env = {
        **os.environ,
        "PYTHONPATH": str(PROJECT_ROOT),
        "TRACKSPEC_CACHE_DIR": str(cache),
        "TRACKSPEC_MODEL": str(model),
    }
    return root, env


def run(cmd: list[str], cwd: Path, env: dict) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"{cmd}: rc={proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc


def edited_after(spec: Path, stamp: Path) -> None:
    """Make ``spec`` newer than ``stamp`` by moving the stamp 2 s back (as if the edit came later;
    no sleeping, and no mtime in the future to confuse the next build)."""
    ns = spec.stat().st_mtime_ns - 2_000_000_000
    os.utime(stamp, ns=(ns, ns))


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_include_builds_only_when_specs_change(tmp_path, warm_cache, tiny_model):
    root, env = game_dir(tmp_path, warm_cache, tiny_model)
    (root / "Makefile").write_text(
        textwrap.dedent(f"""\
        TRACKSPEC = {" ".join(TRACKSPEC)}
        include {HOOKS / "trackspec.mk"}
        game: music
        \t@echo game built
    """)
    )
    stamp = root / ".trackspec/make.stamp"

    first = run(["make"], root, env)  # the game is still the default goal
    assert "restore   calm  (new)" in first.stdout and "game built" in first.stdout
    assert stamp.is_file() and (root / "assets/music/synthwave/calm.ogg").is_file()
    before = stamp.stat().st_mtime_ns

    second = run(["make"], root, env)
    assert "build --root" not in second.stdout and "game built" in second.stdout
    assert stamp.stat().st_mtime_ns == before

    spec = root / "track_specs/calm.trackspec"
    spec.write_text(spec_text(PROMPT_B))
    edited_after(spec, stamp)
    third = run(["make", "music"], root, env)
    assert "restore   calm  (prompt changed)" in third.stdout
    assert stamp.stat().st_mtime_ns != before

    # a new spec and a deleted one both rebuild (the spec list changes); then nothing again.
    (root / "track_specs/drone.trackspec").write_text(spec_text(PROMPT_A))
    assert "restore   drone  (new)" in run(["make", "music"], root, env).stdout
    (root / "track_specs/drone.trackspec").unlink()
    assert "remove    drone  (spec deleted)" in run(["make", "music"], root, env).stdout
    assert "build --root" not in run(["make", "music"], root, env).stdout

    # the index deleted (say, a clean checkout): rebuilt.
    (root / "assets/music/index.json").unlink()
    assert "restore   calm" in run(["make", "music"], root, env).stdout
    assert run(["make", "music-check"], root, env).returncode == 0

    # a failing build fails make and leaves the stamp stale, so the next make tries again.
    spec.write_text(spec_text(PROMPT_B).replace("duration = 1.0", "duration = -1"))
    edited_after(spec, stamp)
    stamp_before = stamp.stat().st_mtime_ns
    failed = subprocess.run(["make", "music"], cwd=root, env=env, capture_output=True, text=True, timeout=300)
    assert failed.returncode != 0 and "FAILED    " in output(failed)
    assert stamp.stat().st_mtime_ns == stamp_before
    spec.write_text(spec_text(PROMPT_B))
    edited_after(spec, stamp)
    assert "fresh     calm" in run(["make", "music"], root, env).stdout


# --------------------------------------------------------------------------- CMake


@pytest.mark.skipif(
    shutil.which("cmake") is None
    or shutil.which("make") is None
    or (shutil.which("cc") or shutil.which("gcc")) is None,
    reason="cmake, make and a C compiler are needed",
)
def test_cmake_module_builds_music_before_the_game(tmp_path, warm_cache, tiny_model):
    root, env = game_dir(tmp_path, warm_cache, tiny_model)
    (root / "main.c").write_text('#include <stdio.h>\nint main(void) { puts("hello"); return 0; }\n')
    (root / "CMakeLists.txt").write_text(
        textwrap.dedent(f"""\
        cmake_minimum_required(VERSION 3.13)
        project(hello C)
        include("{HOOKS / "Trackspec.cmake"}")
        trackspec_add_music(TARGET music TRACKSPEC ${{TS_COMMAND}})
        add_executable(hello main.c)
        add_dependencies(hello music)
    """)
    )
    build = root / "build"
    run(
        ["cmake", "-S", str(root), "-B", str(build), "-G", "Unix Makefiles", f"-DTS_COMMAND={';'.join(TRACKSPEC)}"],
        root,
        env,
    )
    stamp = build / "trackspec-music/build.stamp"

    first = run(["cmake", "--build", str(build)], root, env)
    assert "restore   calm  (new)" in first.stdout
    assert run([str(build / "hello")], root, env).stdout == "hello\n"
    assert (root / "assets/music/synthwave/calm.ogg").is_file() and stamp.is_file()
    before = stamp.stat().st_mtime_ns

    second = run(["cmake", "--build", str(build)], root, env)
    assert "trackspec: building" not in second.stdout and "calm" not in second.stdout
    assert stamp.stat().st_mtime_ns == before

    spec = root / "track_specs/calm.trackspec"
    spec.write_text(spec_text(PROMPT_B))
    edited_after(spec, stamp)
    third = run(["cmake", "--build", str(build)], root, env)
    assert "restore   calm  (prompt changed)" in third.stdout

    # a spec added after configuring is found (CONFIGURE_DEPENDS) and built.
    (root / "track_specs/drone.trackspec").write_text(spec_text(PROMPT_A))
    fourth = run(["cmake", "--build", str(build)], root, env)
    assert "restore   drone  (new)" in fourth.stdout
    assert "trackspec: building" not in run(["cmake", "--build", str(build)], root, env).stdout


# --------------------------------------------------------------------------- Godot, Unity, CI


GODOT = HOOKS / "godot/addons/trackspec"


def test_godot_plugin_parses_and_runs_the_build():
    plugin_cfg = (GODOT / "plugin.cfg").read_text()
    assert 'script="plugin.gd"' in plugin_cfg
    plugin = (GODOT / "plugin.gd").read_text()
    assert "func _build() -> bool:" in plugin and "return false" in plugin and "push_error" in plugin
    runner = (GODOT / "runner.gd").read_text()
    assert "OS.execute" in runner and '"build"' in runner
    assert "_export_begin" in (GODOT / "export_plugin.gd").read_text()
    assert "load_from_file" in (GODOT / "trackspec_index.gd").read_text()
    scripts = sorted(GODOT.glob("*.gd"))
    gdparse = shutil.which("gdparse", path=str(Path(sys.executable).parent)) or shutil.which("gdparse")
    if gdparse is None:
        pytest.skip("gdtoolkit (gdparse, a GDScript 4 parser) is not installed: pip install gdtoolkit")
    for script in scripts:
        proc = subprocess.run([gdparse, str(script)], capture_output=True, text=True)
        assert proc.returncode == 0, f"{script.name}: {proc.stderr}"
    gdlint = shutil.which("gdlint", path=str(Path(gdparse).parent))
    assert gdlint is not None, "gdtoolkit installs gdlint next to gdparse"
    proc = subprocess.run([gdlint, *map(str, scripts)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_unity_prebuild_parses_and_fails_the_build_on_errors():
    source = (HOOKS / "unity/Editor/TrackspecPreBuild.cs").read_text()
    assert "IPreprocessBuildWithReport" in source and "throw new BuildFailedException" in source
    assert '"build --root' in source
    try:
        import tree_sitter
        import tree_sitter_c_sharp
    except ImportError:
        pytest.skip("tree-sitter-c-sharp (a C# parser) is not installed: pip install tree-sitter tree-sitter-c-sharp")
    parser = tree_sitter.Parser(tree_sitter.Language(tree_sitter_c_sharp.language()))
    assert parser.parse(b"class A { void F() { int x = ; } }").root_node.has_error  # the parser catches errors
    tree = parser.parse(source.encode())
    assert not tree.root_node.has_error


def test_github_actions_example_runs_the_check():
    yaml = pytest.importorskip("yaml", reason="PyYAML is not installed (it comes with pre-commit)")
    workflow = yaml.safe_load((HOOKS / "ci/github-actions.yml").read_text())
    triggers = workflow.get("on", workflow.get(True))  # YAML 1.1 reads a bare `on` as true
    assert "push" in triggers and "pull_request" in triggers
    steps = workflow["jobs"]["trackspec-check"]["steps"]
    commands = [s["run"] for s in steps if "run" in s]
    assert commands == ["pip install trackspec", "trackspec build --check"]
    assert any(s.get("uses", "").startswith("actions/checkout@") for s in steps)
