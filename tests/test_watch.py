"""`trackspec watch` end to end: a real daemon process, a real watchdog observer on a real
directory, the tiny model and real ffmpeg. The daemon runs with --json; the tests read its
event lines (see `trackspec watch --help`) and check files, index and exit codes."""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from helpers import assert_index_matches_disk, sha256, theme
from watchproc import BARRIER, WatchProcess

SPEC = """\
prompt = "calm synth pad"
duration = 1.0
seed = 5

[meta]
bpm = 90
"""


@pytest.fixture(scope="session")
def warm_cache(tmp_path_factory, tiny_model) -> Path:
    """A cache holding the render of SPEC (named anything): daemons start without generating."""
    root = tmp_path_factory.mktemp("warm") / "game"
    (root / "track_specs").mkdir(parents=True)
    (root / "trackspec.toml").write_text('specs = ["track_specs"]\n')
    (root / "track_specs" / "seed.trackspec").write_text(SPEC)
    cache = root.parent / "cache"
    env = {
        **os.environ,
        "TRACKSPEC_CACHE_DIR": str(cache),
        "PYTHONPATH": str(Path(__file__).parents[1]),
        "TRACKSPEC_MODEL": str(tiny_model),
    }
    subprocess.run([sys.executable, "-m", "importer", "build", "-q"], cwd=root, env=env, check=True, timeout=600)
    return cache


@pytest.fixture
def repo(game_repo, tiny_model):
    game_repo.env["TRACKSPEC_MODEL"] = str(tiny_model)
    return game_repo


@pytest.fixture
def warm_repo(repo, warm_cache):
    shutil.copytree(warm_cache, repo.cache)
    return repo


@pytest.fixture
def daemons():
    started: list[WatchProcess] = []

    def start(repo, *args: str, **kwargs) -> WatchProcess:
        started.append(WatchProcess(repo, *args, **kwargs))
        return started[-1]

    yield start
    for daemon in started:
        daemon.kill()


def spec_path(repo, name: str) -> Path:
    return repo.root / "track_specs" / f"{name}.trackspec"


def assert_no_partial_files(repo) -> None:
    leftovers = [p for p in (repo.root / "assets").rglob("*") if p.is_file() and "trackspec-tmp" in p.name]
    assert leftovers == []


# ----------------------------------------------------------------------------- editors' saves
def save_in_place(path: Path, text: str) -> None:
    with open(path, "w") as fh:  # truncate, then two writes with a pause between them
        fh.write(text[:10])
        fh.flush()
        time.sleep(0.01)  # the editor's pause, part of the save imitated (not a wait for the daemon)
        fh.write(text[10:])


def save_temp_then_rename(path: Path, text: str) -> None:  # VS Code, gedit
    tmp = path.with_name(f".goutputstream-{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


def save_like_vim(path: Path, text: str) -> None:  # backup by rename, write anew, drop backup
    probe = path.with_name("4913")
    probe.write_text("")
    probe.unlink()
    backup = path.with_name(path.name + "~")
    os.rename(path, backup)
    path.write_text(text)
    backup.unlink()


def save_like_jetbrains(path: Path, text: str) -> None:  # "safe write"
    tmp = path.with_name(path.name + "___jb_tmp___")
    old = path.with_name(path.name + "___jb_old___")
    tmp.write_text(text)
    os.rename(path, old)
    os.rename(tmp, path)
    old.unlink()


def save_repeatedly(path: Path, text: str) -> None:  # duplicate events: same content three times
    for _ in range(3):
        path.write_text(text)
        time.sleep(0.02)  # the editor's pause, part of the save imitated (not a wait for the daemon)
    os.utime(path)


@pytest.mark.parametrize(
    "save",
    [save_in_place, save_temp_then_rename, save_like_vim, save_like_jetbrains, save_repeatedly],
    ids=lambda f: f.__name__,
)
def test_each_save_pattern_builds_the_new_content_once(warm_repo, daemons, save):
    path = warm_repo.write_spec("a", SPEC)
    daemon = daemons(warm_repo)
    daemon.finished("a", action="restore")
    for bpm in (91, 92):
        mark = daemon.mark()
        save(path, SPEC.replace("bpm = 90", f"bpm = {bpm}"))
        daemon.finished("a", after=mark)
        daemon.barrier(SPEC)  # every cycle the save caused is over: a second job would be listed
        jobs = daemon.since(mark, "finished", "a")
        assert [(j["action"], j["ok"]) for j in jobs] == [("index", True)], daemon.log()
        assert warm_repo.index()["tracks"]["a"]["meta"] == {"bpm": bpm}
    assert daemon.stop() == 0
    assert_index_matches_disk(warm_repo)


def test_a_content_change_is_generated_once_with_the_model_kept_loaded(warm_repo, daemons):
    path = warm_repo.write_spec("a", SPEC)
    daemon = daemons(warm_repo)
    daemon.finished("a", action="restore")
    loads = []
    for prompt in ("warm synth pad", "bright synth pad"):
        mark = daemon.mark()
        save_repeatedly(path, SPEC.replace("calm synth pad", prompt))
        job = daemon.finished("a", after=mark)
        daemon.barrier(SPEC)  # the publishing cycle wrote the index; a second job would be listed
        assert [(j["action"], j["reasons"]) for j in daemon.since(mark, "finished", "a")] == [
            ("generate", ["prompt changed"])
        ], daemon.log()
        assert len(daemon.since(mark, "generated", "a")) == 1
        assert daemon.queue_now() == ([], []), daemon.log()  # and none is queued or running
        assert warm_repo.index()["tracks"]["a"]["keys"] == job["keys"]
        loads += [e for e in daemon.since(mark, "note") if e["message"].startswith("model loaded")]
    assert len(loads) == 1  # loaded for the first generation, kept for the second
    assert daemon.stop() == 0
    assert_index_matches_disk(warm_repo)
    assert warm_repo.run("build", "--check").returncode == 0


def test_a_burst_of_cache_hits_is_published_with_few_index_writes(warm_repo, daemons):
    warm_repo.write_spec("a", SPEC)
    daemon = daemons(warm_repo)
    daemon.finished("a", action="restore")
    daemon.wait_for(lambda e: e["event"] == "index_written" and e["tracks"] == 1)  # the first cycle's last word
    mark = daemon.mark()
    names = [f"burst{i:03d}" for i in range(200)]
    for name in names:  # same settings, other names: each one a cache hit
        warm_repo.write_spec(name, SPEC)
    daemon.wait_for(lambda e: e["event"] == "index_written" and e["tracks"] == 201, after=mark, timeout=300)
    daemon.barrier(SPEC)  # whatever the burst caused has been reported
    restored = [
        e["name"]
        for e in daemon.since(mark, "finished")
        if e["action"] == "restore" and e["ok"] and e["name"] != BARRIER
    ]
    assert sorted(restored) == names  # each once
    writes = [w for w in daemon.since(mark, "index_written") if w["tracks"] <= 201]  # not the barrier's
    assert 1 <= len(writes) <= 5, [w["tracks"] for w in writes]  # one per settle window, not 200
    assert daemon.since(mark, "generated") == []
    assert daemon.stop() == 0
    index = assert_index_matches_disk(warm_repo)
    assert sorted(index["tracks"]) == sorted(["a", BARRIER, *names])


def test_an_edit_during_generation_never_publishes_the_stale_take(repo, daemons):
    path = repo.write_spec("long", SPEC.replace("duration = 1.0", "duration = 12.0"))
    daemon = daemons(repo)
    first = daemon.wait_for(lambda e: e["event"] == "progress" and e["name"] == "long", timeout=300)
    edited = SPEC.replace("duration = 1.0", "duration = 12.0").replace("calm", "tense")
    path.write_text(edited)
    stale = daemon.wait_for(lambda e: e["event"] == "generated", timeout=300)
    assert stale["ok"]
    final = daemon.wait_for(lambda e: e["event"] == "generated" and e["key"] != stale["key"], timeout=300)
    job = daemon.finished("long")
    daemon.barrier(edited)  # the edited audio is cached: the barrier restores it
    published = daemon.since(0, "finished", "long")
    assert [p["keys"]["generation"] for p in published] == [final["key"]], daemon.log()
    assert job["action"] == "generate" and first["done"] < first["total"]
    # the stale take is still in the cache under its own key
    assert (repo.cache / "v1" / "raw" / stale["key"][:2] / stale["key"] / "manifest.json").is_file()
    assert repo.index()["tracks"]["long"]["keys"]["generation"] == final["key"]
    assert daemon.stop() == 0
    assert_index_matches_disk(repo)
    assert repo.run("build", "--check").returncode == 0  # the asset is the last save's


def test_sigterm_during_generation_exits_0_and_leaves_only_complete_files(repo, daemons):
    repo.write_spec("a_short", SPEC)
    repo.write_spec("b_long", SPEC.replace("duration = 1.0", "duration = 30.0"))
    daemon = daemons(repo)
    daemon.finished("a_short", action="generate")
    daemon.wait_for(lambda e: e["event"] == "progress" and e["name"] == "b_long" and e["done"] > 1)
    start = time.monotonic()
    assert daemon.stop(signal.SIGTERM) == 0
    assert time.monotonic() - start < 20
    assert daemon.since(0, "stopped") and not daemon.since(0, "finished", "b_long")
    assert_no_partial_files(repo)
    index = assert_index_matches_disk(repo)
    assert sorted(index["tracks"]) == ["a_short"]
    assert not list((repo.root / ".trackspec" / "tmp").iterdir())


# The daemon's process with two instruments, over pipes the test passed it: the model load
# lasts until the test lets it go (a long load is the step a first Ctrl-C cannot cut short:
# a generation stops at its next step), and each time the daemon's own SIGINT handler has
# run, a line says so.
_SLOW_LOAD_LAUNCHER = textwrap.dedent("""
    import os, signal, sys

    import importer.generation as generation

    report, gate = (int(fd) for fd in os.environ["TRACKSPEC_TEST_FDS"].split(","))

    def load_backend(*args, **kwargs):
        os.write(report, b"model load started\\n")
        os.read(gate, 1)  # until the test writes or closes its end
        raise OSError("the test ended the model load")

    generation.load_backend = load_backend
    install = signal.signal

    def install_and_report(signum, handler):
        if signum == signal.SIGINT and callable(handler):
            daemons_handler = handler

            def handler(sig, frame):
                daemons_handler(sig, frame)
                os.write(report, b"SIGINT handled\\n")
        return install(signum, handler)

    signal.signal = install_and_report
    from importer.cli import main
    sys.exit(main(sys.argv[1:]))
""")


def read_line(fd: int, timeout: float) -> str:
    """One line from the pipe ``fd``, waiting at most ``timeout`` seconds for it."""
    line = b""
    deadline = time.monotonic() + timeout
    while not line.endswith(b"\n"):
        ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
        assert ready, f"nothing said within {timeout} s (so far {line!r})"
        chunk = os.read(fd, 1)
        assert chunk, f"the pipe closed (so far {line!r})"
        line += chunk
    return line.decode().strip()


def test_a_second_sigint_stops_at_once_without_partial_files(repo, daemons):
    repo.write_spec("long", SPEC)
    report_r, report_w = os.pipe()
    gate_r, gate_w = os.pipe()
    repo.env["TRACKSPEC_TEST_FDS"] = f"{report_w},{gate_r}"
    try:
        daemon = daemons(repo, launcher=_SLOW_LOAD_LAUNCHER, pass_fds=(report_w, gate_r))
        os.close(report_w)
        os.close(gate_r)
        assert read_line(report_r, 120) == "model load started"  # the worker is busy, holding the repo lock
        daemon.proc.send_signal(signal.SIGINT)
        assert read_line(report_r, 30) == "SIGINT handled"  # heard: finishing the current step
        assert daemon.proc.poll() is None  # and that step (the load) goes on
        daemon.proc.send_signal(signal.SIGINT)
        # Out at once: without the second Ctrl-C the daemon would wait 30 s for the load, then exit 0.
        try:
            rc = daemon.wait_exit(timeout=15)
        except subprocess.TimeoutExpired:
            pytest.fail("the second SIGINT did not end the daemon within 15 s\n" + daemon.log())
        assert rc == 130, daemon.log()
    finally:
        os.close(gate_w)  # ends the load if the daemon is still in it
        os.close(report_r)
    assert "trackspec: stopped at once" in "".join(daemon.stderr)
    assert daemon.since(0, "stopped") == []  # it did not take the orderly way out
    assert_no_partial_files(repo)
    staging = repo.root / ".trackspec" / "tmp"
    assert not staging.exists() or not list(staging.iterdir())
    assert not (repo.root / "assets" / "music" / "index.json").exists()


def test_build_during_a_daemon_generation_waits_and_nothing_is_generated_twice(repo, daemons):
    repo.write_spec("long", SPEC.replace("duration = 1.0", "duration = 30.0"))
    daemon = daemons(repo)
    daemon.wait_for(lambda e: e["event"] == "progress" and e["name"] == "long", timeout=300)
    busy = repo.run("build", "--no-wait")
    assert busy.returncode == 3 and "another trackspec process" in busy.stderr
    build = repo.run("build", "--json", check_rc=0)
    assert "waiting for another trackspec process" in build.stderr
    assert [t["action"] for t in build.json()["tracks"]] in (["encode"], ["fresh"])
    assert "torch" not in build.imported  # it never generated
    daemon.finished("long", action="generate")
    daemon.barrier(SPEC.replace("duration = 1.0", "duration = 30.0"))  # cached by now: restored
    assert len(daemon.since(0, "generated", "long")) == 1
    assert daemon.queue_now() == ([], []), daemon.log()
    index_after_build = repo.index()
    assert daemon.stop() == 0
    assert repo.index() == index_after_build
    assert_index_matches_disk(repo)


def test_a_second_daemon_on_the_same_repo_is_refused(warm_repo, daemons):
    warm_repo.write_spec("a", SPEC)
    daemon = daemons(warm_repo)
    daemon.finished("a", action="restore")
    second = warm_repo.run("watch", timeout=60)
    assert second.returncode == 3 and "already watching" in second.stderr
    assert daemon.stop() == 0


def test_an_invalid_save_keeps_the_last_good_asset_and_the_next_good_save_builds(warm_repo, daemons):
    path = warm_repo.write_spec("a", SPEC)
    daemon = daemons(warm_repo)
    daemon.finished("a", action="restore")
    daemon.wait_for(lambda e: e["event"] == "index_written")
    good = warm_repo.index()["tracks"]["a"]
    ogg = warm_repo.root / good["files"]["ogg"]["path"]

    mark = daemon.mark()
    path.write_text(SPEC.replace('prompt = "calm synth pad"', 'prompt = "calm synth pad'))
    failed = daemon.wait_for(lambda e: e["event"] == "finished" and not e["ok"], after=mark)
    assert "track_specs/a.trackspec:1:" in failed["error"], failed
    mark = daemon.mark()
    path.write_text(SPEC.replace("duration = 1.0", "duration = -4.0"))
    failed = daemon.wait_for(lambda e: e["event"] == "finished" and not e["ok"], after=mark)
    assert "a.trackspec:2:" in failed["error"] and "duration" in failed["error"], failed
    daemon.barrier(SPEC)  # no later cycle touched the index either
    assert warm_repo.index()["tracks"]["a"] == good and sha256(ogg) == good["files"]["ogg"]["sha256"]
    assert daemon.proc.poll() is None  # still running

    mark = daemon.mark()
    path.write_text(SPEC.replace("bpm = 90", "bpm = 100"))
    daemon.finished("a", after=mark, action="index", ok=True)
    daemon.wait_for(lambda e: e["event"] == "index_written", after=mark)
    assert warm_repo.index()["tracks"]["a"]["meta"] == {"bpm": 100}
    assert daemon.stop() == 0


def test_delete_rename_and_config_changes_are_replanned(warm_repo, daemons):
    warm_repo.write_spec("a", SPEC)
    warm_repo.write_spec("b", SPEC)
    daemon = daemons(warm_repo)
    daemon.finished("b", action="restore")
    daemon.wait_for(lambda e: e["event"] == "index_written" and e["tracks"] == 2)
    music = warm_repo.root / "assets" / "music"

    mark = daemon.mark()
    spec_path(warm_repo, "a").unlink()
    daemon.finished("a", after=mark, action="remove")
    daemon.wait_for(lambda e: e["event"] == "index_written", after=mark)
    assert not (music / "synthwave" / "a.ogg").exists() and "a" not in warm_repo.index()["tracks"]

    mark = daemon.mark()
    (warm_repo.root / "track_specs" / "moved").mkdir()
    os.rename(spec_path(warm_repo, "b"), warm_repo.root / "track_specs" / "moved" / "c.trackspec")
    daemon.finished("c", after=mark, action="restore")
    daemon.finished("b", after=mark, action="remove")
    daemon.wait_for(lambda e: e["event"] == "index_written", after=mark)
    assert sorted(warm_repo.index()["tracks"]) == ["c"]

    mark = daemon.mark()
    config = warm_repo.root / "trackspec.toml"
    config.write_text(config.read_text() + '\n[defaults]\ngenre = "ambient"\n')
    daemon.finished("c", after=mark, action="restore")
    daemon.wait_for(lambda e: e["event"] == "index_written", after=mark)
    assert warm_repo.index()["tracks"]["c"]["files"]["ogg"]["path"] == "assets/music/ambient/c.ogg"
    assert not (music / "synthwave").exists()

    mark = daemon.mark()
    good_config = config.read_text()
    config.write_text("specs = [")  # a broken config: said once, nothing touched
    error = daemon.wait_for(lambda e: e["event"] == "error", after=mark)
    assert "trackspec.toml:1:" in error["message"]
    config.write_text(good_config)  # mended: every track is fresh again, nothing to say
    daemon.barrier(SPEC)
    assert [e["name"] for e in daemon.since(mark, "finished")] == [BARRIER, BARRIER], daemon.log()
    assert len(daemon.since(mark, "error")) == 1 and daemon.proc.poll() is None
    assert warm_repo.index()["tracks"]["c"]["files"]["ogg"]["path"] == "assets/music/ambient/c.ogg"
    assert daemon.stop() == 0
    assert daemon.since(0, "generated") == []
    assert_index_matches_disk(warm_repo)


def test_polling_observer_sees_saves_too(warm_repo, daemons):
    path = warm_repo.write_spec("a", SPEC)
    daemon = daemons(warm_repo, "--poll", "0.2")
    watching = daemon.wait_for(lambda e: e["event"] == "watching")
    assert watching["observer"].startswith("polling")
    daemon.finished("a", action="restore")
    mark = daemon.mark()
    path.write_text(SPEC.replace("bpm = 90", "bpm = 93"))
    daemon.finished("a", after=mark, action="index")
    assert daemon.stop() == 0


def test_the_model_is_unloaded_after_the_idle_time_and_loaded_again_when_needed(warm_repo, daemons):
    path = warm_repo.write_spec("a", SPEC)
    daemon = daemons(warm_repo, "--unload-after", "1")
    daemon.finished("a", action="restore")
    for prompt in ("warm synth pad", "bright synth pad"):
        mark = daemon.mark()
        path.write_text(SPEC.replace("calm synth pad", prompt))
        daemon.finished("a", after=mark, action="generate")
        daemon.wait_for(lambda e: e["event"] == "note" and e["message"].startswith("model unloaded"), after=mark)
    notes = [e["message"] for e in daemon.since(0, "note")]
    assert [n.split(":")[0] for n in notes if n.startswith("model")] == [
        "model loaded",
        "model unloaded after 1 s idle",
    ] * 2
    assert daemon.stop() == 0


def test_a_spec_in_a_new_folder_anywhere_is_built_and_ignored_trees_are_not(warm_repo, daemons):
    # specs unset: the whole repo is searched (issue 19); Library/ is ignored, as in a Unity repo.
    (warm_repo.root / "trackspec.toml").write_text("# specs unset: the whole repo\n")
    (warm_repo.root / ".gitignore").write_text("Library/\n")
    (warm_repo.root / "Library" / "cache").mkdir(parents=True)
    warm_repo.write_spec("a", SPEC)
    daemon = daemons(warm_repo)
    daemon.finished("a", action="restore")
    mark = daemon.mark()
    ignored = warm_repo.root / "Library" / "cache" / "hidden.trackspec"
    ignored.write_text(SPEC)  # in a tree watch does not watch, and discovery never reads
    boss = warm_repo.root / "levels" / "forest" / "boss.trackspec"
    boss.parent.mkdir(parents=True)  # a new folder, two levels deep, where no spec was
    boss.write_text(SPEC)
    daemon.finished("boss", after=mark, action="restore")
    mark = daemon.mark()
    boss.write_text(SPEC.replace("bpm = 90", "bpm = 95"))  # the new folder is watched now
    daemon.finished("boss", after=mark, action="index")
    assert daemon.stop() == 0
    assert not [e for e in daemon.events if e.get("name") == "hidden"]
    index = assert_index_matches_disk(warm_repo)
    assert sorted(index["tracks"]) == ["a", "boss"]
    assert index["tracks"]["boss"]["spec"] == "levels/forest/boss.trackspec"
    assert index["tracks"]["boss"]["meta"] == {"bpm": 95}


def test_a_track_continuing_another_is_generated_after_it_and_again_when_it_changes(warm_repo, daemons):
    """``continue_from = "track:main"``: the daemon re-plans boss when main changes (its key
    holds main's) and generates it only after main's new audio is in the cache."""
    main = warm_repo.write_spec("main", SPEC)  # its audio is in the warm cache
    warm_repo.write_spec(
        "boss",
        'prompt = "boss fight"\nduration = 1.0\nseed = 6\n\n[generation]\nwindow = 1.0\ncontinue_from = "track:main"\n',
    )
    daemon = daemons(warm_repo)
    daemon.finished("main", action="restore")
    daemon.finished("boss", action="generate")
    mark = daemon.mark()
    save_in_place(main, SPEC.replace("calm synth pad", "dark synth pad"))
    boss = daemon.finished("boss", after=mark)
    daemon.barrier(SPEC)  # every cycle the edit caused is over: a third generation would be listed
    assert boss["reasons"] == ["continues main, which changed"], daemon.log()
    assert [e["name"] for e in daemon.since(mark, "generated")] == ["main", "boss"]
    index = warm_repo.index()["tracks"]
    key = index["boss"]["keys"]["generation"]
    manifest = json.loads((warm_repo.cache / "v1" / "raw" / key[:2] / key / "manifest.json").read_text())
    assert manifest["info"]["inputs"]["continue"]["generation"] == index["main"]["keys"]["generation"]
    daemon.drop_barrier()
    assert daemon.stop() == 0
    assert warm_repo.run("build", "--check").returncode == 0


def test_new_bytes_in_an_audio_file_a_spec_continues_regenerate_it(repo, daemons):
    """``continue_from = "audio/theme.ogg"``, a folder no spec lives in: the daemon watches
    that file too, and new bytes there (a new take exported over it) make the track again."""
    theme_file = theme(repo.root / "audio" / "theme.ogg")
    repo.write_spec(
        "phase2",
        'prompt = "phase two"\nduration = 1.0\nseed = 3\n\n[generation]\nwindow = 1.0\n'
        'continue_from = "audio/theme.ogg"\ncontinue_seconds = 0.5\n',
    )
    daemon = daemons(repo)
    first = daemon.finished("phase2", action="generate", ok=True)
    mark = daemon.mark()
    # An audio editor's export: a temp file renamed over the old take.
    os.replace(theme(theme_file.with_name(".export.ogg"), seconds=1.0, frequency=220), theme_file)
    again = daemon.finished("phase2", after=mark, ok=True, timeout=120)
    assert again["action"] == "generate" and again["reasons"] == ["continue_from audio changed"], daemon.log()
    assert again["keys"]["generation"] != first["keys"]["generation"]
    daemon.barrier(SPEC)
    assert repo.index()["tracks"]["phase2"]["keys"]["generation"] == again["keys"]["generation"]
    assert len(daemon.since(mark, "generated", "phase2")) == 1
    assert daemon.stop() == 0
    assert repo.run("build", "--check").returncode == 0


def test_a_published_file_deleted_or_edited_by_hand_comes_back(warm_repo, daemons):
    """The daemon watches the files it published: one deleted, or written over in place, is
    restored from the cache in the next cycle (no spec was saved, nothing else is re-planned)."""
    warm_repo.write_spec("a", SPEC)
    warm_repo.write_spec("b", SPEC.replace("seed = 5", "seed = 6"))
    daemon = daemons(warm_repo)
    daemon.finished("a", action="restore")
    daemon.finished("b", ok=True)
    daemon.barrier(SPEC)
    files = warm_repo.index()["tracks"]["a"]["files"]
    fmt = sorted(files)[0]
    published = warm_repo.root / files[fmt]["path"]
    for damage, reason in ((Path.unlink, f"output missing ({fmt})"), (truncate, f"output modified ({fmt})")):
        mark = daemon.mark()
        damage(published)
        job = daemon.finished("a", after=mark, timeout=60)
        assert (job["action"], job["reasons"], job["ok"]) == ("restore", [reason], True), daemon.log()
        daemon.barrier(SPEC)
        assert [e["name"] for e in daemon.since(mark, "finished")].count("b") == 0  # only a was re-planned
        assert sha256(published) == files[fmt]["sha256"]
    assert daemon.stop() == 0
    assert_index_matches_disk(warm_repo)


def truncate(path: Path) -> None:  # an edit in place: same file, other bytes
    with open(path, "r+b") as fh:
        fh.truncate(100)
