"""The no-op fast path (`importer/fastpath.py`): real CLI subprocesses, real files.

After a full build that found every track fresh, the next `build`/`build --check` must
answer from stat calls alone, and print exactly what the full no-op prints; any change
that the full plan would act on must send it back to the full plan. `-v` says which
path was taken ("no-op, decided by stat alone" / "full plan: <why>"), and a wrapper
records which modules the process imported (the fast path parses no TOML: no tomllib,
no planner).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from importer.locks import FileLock

SPEC_CALM = """\
name = "calm"
prompt = "calm synthwave, D minor, 90 BPM"
duration = 1.0
seed = 11

[output]
formats = ["ogg", "mp3"]

[meta]
bpm = 90
"""

SPEC_DRONE = """\
prompt = "tense ambient drone"
duration = 1.0
seed = 12
genre = "ambient"

[output]
formats = ["ogg"]
"""

FAST = "no-op, decided by stat alone"
#: Long enough that every file written before it is outside the racy window (1 s).
#: The one sleep in these tests, and not a wait for another process: the fast path refuses
#: files whose mtime *or ctime* is within 1 s of a build's start, and a ctime cannot be set
#: back (os.utime moves it to now), so only time passing takes files out of the window.
RACY_WAIT = 1.1

_MODULES_WRAPPER = textwrap.dedent("""
    import json, os, sys
    from importer.cli import main
    code = main(sys.argv[1:])
    with open(os.environ['TRACKSPEC_TEST_MODULES'], 'w') as fh:
        json.dump(sorted(sys.modules), fh)
    sys.exit(code)
""")


def full_reason(result) -> str:
    """Why the build took the full plan (from -v), or '' if it did not say."""
    match = re.search(r"full plan: (.*)", result.stderr)
    return match.group(1) if match else ""


def modules_of(repo, *args: str) -> tuple[subprocess.CompletedProcess, set[str]]:
    """Run the CLI and return (process, the modules it imported)."""
    out = repo.root.parent / "modules.json"
    env = {**repo.env, "TRACKSPEC_TEST_MODULES": str(out)}
    proc = subprocess.run(
        [sys.executable, "-c", _MODULES_WRAPPER, *args],
        cwd=repo.root,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    return proc, set(json.loads(out.read_text()))


def settle(repo) -> None:
    """Wait out the racy window, then a no-op build: the record is written (or already holds)."""
    time.sleep(RACY_WAIT)
    result = repo.run("build", "-v", check_rc=0)
    assert "no-op record written" in result.stderr or FAST in result.stderr, result.stderr


def record(repo) -> Path:
    return repo.root / ".trackspec" / "noop.marshal"


def without_seconds(doc: dict) -> dict:
    return {**doc, "tracks": [{**t, "seconds": 0.0} for t in doc["tracks"]]}


def actions(result) -> dict[str, tuple[str, list[str]]]:
    return {t["name"]: (t["action"], t["reasons"]) for t in result.json()["tracks"] if t["name"]}


@pytest.fixture(scope="module")
def shared_cache(tmp_path_factory) -> Path:
    """One cache for the module: only the first test generates, the others restore."""
    return tmp_path_factory.mktemp("cache")


@pytest.fixture
def noop_repo(game_repo, tiny_model, shared_cache):
    """Two tracks built, then a full no-op build that wrote the record."""
    game_repo.write_spec("calm", SPEC_CALM)
    game_repo.write_spec("drone", SPEC_DRONE)
    game_repo.env["TRACKSPEC_MODEL"] = str(tiny_model)
    game_repo.env["TRACKSPEC_CACHE_DIR"] = str(shared_cache)
    game_repo.cache = shared_cache
    game_repo.run("build", check_rc=0)
    settle(game_repo)
    return game_repo


# ------------------------------------------------------------------ (1) the fast path itself
def test_a_noop_build_after_a_noop_build_is_decided_by_stat_alone(noop_repo):
    repo = noop_repo
    watched = [repo.root / "assets/music/index.json", repo.root / ".trackspec/state.json", record(repo)]
    before = [(p.read_bytes(), p.stat().st_mtime_ns) for p in watched]

    verbose = repo.run("build", "-v", check_rc=0)
    assert FAST in verbose.stderr and "2 up to date" in verbose.stderr
    proc, modules = modules_of(repo, "build", "--json")
    assert proc.returncode == 0, proc.stderr
    assert not modules & {
        "tomllib",
        "importer.plan",
        "importer.spec",
        "importer.config",
        "importer.build",
        "argparse",
        "logging",
        "dataclasses",
        "torch",
        "numpy",
    }
    fast_doc = json.loads(proc.stdout)
    assert {t["name"]: t["action"] for t in fast_doc["tracks"]} == {"calm": "fresh", "drone": "fresh"}
    fast_text = repo.run("build", check_rc=0)
    fast_check = repo.run("build", "--check", check_rc=0)
    fast_check_json = repo.run("build", "--check", "--json", check_rc=0)
    assert [(p.read_bytes(), p.stat().st_mtime_ns) for p in watched] == before  # nothing rewritten

    # The full no-op path prints the same (the record set aside, then put back).
    saved = record(repo).read_bytes()
    record(repo).unlink()
    full = repo.run("build", "--json", "-v", check_rc=0)
    assert full_reason(full) == "no record of a no-op build yet"
    assert without_seconds(full.json()) == without_seconds(fast_doc)
    record(repo).write_bytes(saved)
    for args, fast in (
        (("build",), fast_text),
        (("build", "--check"), fast_check),
        (("build", "--check", "--json"), fast_check_json),
    ):
        record(repo).rename(record(repo).with_suffix(".aside"))
        slow = repo.run(*args, check_rc=0)
        record(repo).with_suffix(".aside").rename(record(repo))
        assert (slow.stdout, slow.stderr) == (fast.stdout, fast.stderr), args
    assert fast_text.stdout == "fresh     calm\nfresh     drone\n"
    assert fast_check.stderr == "up to date\n"


def test_the_plain_command_line_reader_agrees_with_argparse():
    from importer.cli import _parser
    from importer.commands.build import quick_args

    for argv in (
        ["build"],
        ["build", "-q"],
        ["build", "--check", "--json"],
        ["build", "--quiet", "--verbose"],
        ["build", "--root", "some/dir", "--model=models/tiny", "--no-wait", "-v"],
        ["build", "--model", "a=b", "--root=x", "--root", "y"],
    ):
        quick = quick_args(argv)
        assert quick is not None, argv
        parsed = _parser().parse_args(argv)
        assert vars(quick) == {k: v for k, v in vars(parsed).items() if k in vars(quick)}, argv
        assert set(vars(parsed)) - set(vars(quick)) == {"run", "run_if_noop"}
    for argv in (
        ["build", "-qv"],
        ["build", "--chec"],
        ["build", "--help"],
        ["build", "--model", "-x"],
        ["build", "--model"],
        ["build", "--root="],
        ["build", "x"],
        ["build", "--", "-q"],
        ["plan"],
    ):
        assert quick_args(argv) is None, argv
    assert isinstance(_parser().parse_args(["build", "-qv"]), argparse.Namespace)


# ------------------------------------------------------------------ (2) changes leave it
def _edit_spec_same_size(repo, keep_mtime: bool = False):
    spec = repo.root / "track_specs/calm.trackspec"
    st = spec.stat()
    spec.write_text(spec.read_text().replace("bpm = 90", "bpm = 91"))
    os.utime(spec, ns=(st.st_atime_ns, st.st_mtime_ns if keep_mtime else st.st_mtime_ns + 1_000_000))
    assert spec.stat().st_size == st.st_size and spec.stat().st_ino == st.st_ino
    return {"calm": ("index", ["index entry changed (meta, spec path or model name)"]), "drone": ("fresh", [])}


def _edit_spec_same_size_and_mtime(repo):
    return _edit_spec_same_size(repo, keep_mtime=True)  # only ctime tells


def _add_spec(repo):
    repo.write_spec("calm_twin", SPEC_CALM.replace('name = "calm"\n', ""))
    return {"calm": ("fresh", []), "drone": ("fresh", []), "calm_twin": ("restore", ["new"])}


def _delete_spec(repo):
    (repo.root / "track_specs/drone.trackspec").unlink()
    return {"calm": ("fresh", []), "drone": ("remove", ["spec deleted"])}


def _spec_in_new_folder(repo):
    (repo.root / "track_specs/more").mkdir()
    (repo.root / "track_specs/more/twin.trackspec").write_text(SPEC_CALM.replace('name = "calm"\n', ""))
    return {"calm": ("fresh", []), "drone": ("fresh", []), "twin": ("restore", ["new"])}


def _edit_project_config(repo):
    with open(repo.root / "trackspec.toml", "a") as fh:
        fh.write("\n[defaults.output]\nogg_quality = 3\n")
    return {"calm": ("encode", ["ogg_quality changed"]), "drone": ("encode", ["ogg_quality changed"])}


def _delete_output(repo):
    (repo.root / "assets/music/synthwave/calm.mp3").unlink()
    return {"calm": ("restore", ["output missing (mp3)"]), "drone": ("fresh", [])}


def _modify_output(repo):
    path = repo.root / "assets/music/ambient/drone.ogg"
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF  # same size
    path.write_bytes(bytes(data))
    return {"calm": ("fresh", []), "drone": ("restore", ["output modified (ogg)"])}


def _edit_index(repo):
    path = repo.root / "assets/music/index.json"
    index = json.loads(path.read_text())
    index["tracks"]["calm"]["meta"]["bpm"] = 120
    path.write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")
    return {"calm": ("index", ["index entry changed (meta, spec path or model name)"]), "drone": ("fresh", [])}


def _model_env_elsewhere(repo):
    copy = repo.root.parent / "tiny-copy"
    shutil.copytree(repo.env["TRACKSPEC_MODEL"], copy)
    repo.env["TRACKSPEC_MODEL"] = str(copy)  # same weights, so same keys; the index names the model path
    reason = ["index entry changed (meta, spec path or model name)"]
    return {"calm": ("index", reason), "drone": ("index", reason)}


CHANGES = {
    "spec edited, same size, mtime bumped": (_edit_spec_same_size, "track_specs/calm.trackspec changed"),
    "spec edited, same size and mtime": (_edit_spec_same_size_and_mtime, "track_specs/calm.trackspec changed"),
    "spec added": (_add_spec, "/track_specs changed"),
    "spec deleted": (_delete_spec, "/track_specs changed"),
    "spec in a new subfolder": (_spec_in_new_folder, "/track_specs changed"),
    "trackspec.toml edited": (_edit_project_config, "/trackspec.toml changed"),
    "output deleted": (_delete_output, "calm.mp3 is gone"),
    "output modified": (_modify_output, "drone.ogg changed"),
    "index edited": (_edit_index, "index.json changed"),
    "TRACKSPEC_MODEL changed": (_model_env_elsewhere, "changed since the record: model_override"),
}


@pytest.mark.parametrize("change", list(CHANGES))
def test_a_change_leaves_the_fast_path_and_is_built(noop_repo, change):
    repo = noop_repo
    make_change, reason = CHANGES[change]
    expected = make_change(repo)
    result = repo.run("build", "--json", "-v", check_rc=0)
    assert reason in full_reason(result), result.stderr
    assert actions(result) == expected
    # and once settled, the new state is a no-op by stat again
    settle(repo)
    again = repo.run("build", "--json", "-v", check_rc=0)
    assert FAST in again.stderr
    assert {a for a, _ in actions(again).values()} == {"fresh"}


def test_a_spec_added_to_an_existing_subfolder(noop_repo):
    repo = noop_repo
    (repo.root / "track_specs/more").mkdir()
    (repo.root / "track_specs/more/twin.trackspec").write_text(SPEC_CALM.replace('name = "calm"\n', ""))
    repo.run("build", check_rc=0)
    settle(repo)
    (repo.root / "track_specs/more/triplet.trackspec").write_text(SPEC_CALM.replace('name = "calm"\n', ""))
    result = repo.run("build", "--json", "-v", check_rc=0)
    assert "/track_specs/more changed" in full_reason(result)
    assert actions(result)["triplet"] == ("restore", ["new"])


def test_model_flag_and_edited_model_files_leave_the_fast_path(noop_repo, tmp_path):
    repo = noop_repo
    copy = tmp_path / "tiny-own"
    shutil.copytree(repo.env["TRACKSPEC_MODEL"], copy)
    repo.env["TRACKSPEC_MODEL"] = str(copy)
    repo.run("build", check_rc=0)
    settle(repo)
    by_flag = repo.run("build", "--model", f"{copy}/", "-v", check_rc=0)
    assert "changed since the record: model_override" in full_reason(by_flag)  # even naming the same folder
    settle(repo)
    config = copy / "config.json"
    config.write_text(config.read_text() + "\n")  # the model's identity (its files' digest) changes
    result = repo.run("build", "--check", "--json", "-v", check_rc=1)
    assert "tiny-own/config.json changed" in full_reason(result), result.stderr
    assert {a for a, _ in actions(result).values()} == {"generate"}


# ------------------------------------------------------------------ (3) racy files
def test_a_spec_touched_within_the_racy_window_is_parsed_again(noop_repo):
    repo = noop_repo
    spec = repo.root / "track_specs/calm.trackspec"
    old = spec.stat()
    os.utime(spec, ns=(old.st_atime_ns, old.st_mtime_ns))  # content and mtime as before; ctime is now
    first = repo.run("build", "-v", check_rc=0)
    assert "calm.trackspec changed" in full_reason(first)
    # a full no-op, but the spec changed within 1 s of its start: no record is written ...
    assert re.search(r"no-op record not written: .*calm\.trackspec changed within 1 s", first.stderr), first.stderr
    proc, modules = modules_of(repo, "build")
    assert proc.returncode == 0 and "tomllib" in modules  # ... so the next build parses the specs again
    # once the window has passed, a full build records again
    settle(repo)
    assert FAST in repo.run("build", "-v", check_rc=0).stderr


def test_an_old_mtime_does_not_hide_a_recent_write(noop_repo):
    """mtime can be set back (`touch -d`, a checkout); ctime cannot, so the record is not written."""
    repo = noop_repo
    record(repo).unlink()
    spec = repo.root / "track_specs/drone.trackspec"
    spec.write_text(SPEC_DRONE)  # same content, written now
    os.utime(spec, ns=(0, 1_000_000_000))  # but dated 1970
    result = repo.run("build", "-v", check_rc=0)
    assert "drone.trackspec changed within 1 s" in result.stderr
    assert not record(repo).exists()


# ------------------------------------------------------------------ (4) --check, failures, the lock
def test_check_on_the_fast_path_and_when_stale(noop_repo):
    repo = noop_repo
    ok = repo.run("build", "--check", "-v", check_rc=0)
    assert FAST in ok.stderr and ok.stderr.endswith("up to date\n") and ok.stdout == ""
    recorded = record(repo).read_bytes()
    (repo.root / "assets/music/synthwave/calm.ogg").write_bytes(b"edited by hand")
    stale = repo.run("build", "--check", "-v", check_rc=1)
    assert "calm.ogg changed" in full_reason(stale)
    assert stale.stdout == "stale     calm  (restore: output modified (ogg))\n"
    assert stale.stderr.endswith("1 of 2 tracks need a build\n")
    assert record(repo).read_bytes() == recorded


def test_check_never_writes_a_record(noop_repo):
    repo = noop_repo
    record(repo).unlink()
    time.sleep(RACY_WAIT)
    result = repo.run("build", "--check", "-v", check_rc=0)
    assert full_reason(result) == "no record of a no-op build yet"
    assert not record(repo).exists()


def test_a_build_with_a_failing_spec_writes_no_record(noop_repo):
    repo = noop_repo
    record(repo).unlink()
    repo.write_spec("broken", 'prompt = "x"\nduration = "long"\n')
    time.sleep(RACY_WAIT)
    result = repo.run("build", "-v")
    assert result.returncode == 1
    assert not record(repo).exists()
    again = repo.run("build", "--check", "-v")
    assert again.returncode == 1 and FAST not in again.stderr


def test_a_held_lock_sends_build_to_the_full_path_but_not_check(noop_repo):
    repo = noop_repo
    with FileLock(repo.root / ".trackspec/lock") as lock:
        assert lock.try_acquire()  # as a build in progress holds it
        busy = repo.run("build", "--no-wait", "-v")
        check = repo.run("build", "--check", "-v", check_rc=0)
    assert busy.returncode == 3 and "the repo lock is held" in full_reason(busy)
    assert FAST in check.stderr


# ------------------------------------------------------------------ cold state: parallel hashing
def test_parallel_prefetch_hashes_big_files_as_digest_does(tmp_path, monkeypatch):
    import hashlib

    import importer.state as state_module
    from importer.state import PARALLEL_MIN_BYTES, State

    big = [tmp_path / f"big{i}.ogg" for i in range(3)]
    for i, path in enumerate(big):
        path.write_bytes(bytes([i]) * (PARALLEL_MIN_BYTES + 1000))
    small = [tmp_path / f"small{i}.ogg" for i in range(3)]
    for i, path in enumerate(small):
        path.write_bytes(bytes([i]) * 1000)

    state = State(tmp_path / "state.json")
    state.digest_many(big + [tmp_path / "missing.ogg"])
    monkeypatch.setattr(state_module, "sha256_file", lambda path: pytest.fail(f"{path} hashed again"))
    assert [state.digest(p) for p in big] == [hashlib.sha256(p.read_bytes()).hexdigest() for p in big]
    assert state.digest(tmp_path / "missing.ogg") is None

    state.digest_many(small)  # small files: left to digest(), which hashes them one by one
    assert not any(str(p) in state.files for p in small)
