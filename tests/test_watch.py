"""`trackspec watch` end to end: a real daemon process, a real watchdog observer on a real
directory, the tiny model and real ffmpeg. The daemon runs with --json; the tests read its
event lines (see `trackspec watch --help`) and check files, index and exit codes."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from helpers import assert_index_matches_disk, sha256

SPEC = """\
prompt = "calm synth pad"
duration = 1.0
seed = 5

[meta]
bpm = 90
"""


class WatchProcess:
    """`trackspec watch --json` in a subprocess, its events collected by a reader thread."""

    def __init__(self, repo, *args: str):
        self.repo = repo
        self.proc = subprocess.Popen([sys.executable, "-m", "importer", "watch", "--json", *args],
                                     cwd=repo.root, env=repo.env, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
        self.events: list[dict] = []
        self.stderr: list[str] = []
        self._cond = threading.Condition()
        threading.Thread(target=self._read_stdout, daemon=True).start()
        threading.Thread(target=self._read_stderr, daemon=True).start()

    def _read_stdout(self) -> None:
        for line in self.proc.stdout:
            with self._cond:
                self.events.append(json.loads(line))
                self._cond.notify_all()

    def _read_stderr(self) -> None:
        for line in self.proc.stderr:
            self.stderr.append(line)

    def wait_for(self, predicate, timeout: float = 120, after: int = 0) -> dict:
        """The first event from index ``after`` on that satisfies ``predicate``."""
        deadline = time.monotonic() + timeout
        exited = False
        with self._cond:
            while True:
                for event in self.events[after:]:
                    if predicate(event):
                        return event
                if time.monotonic() > deadline or exited:
                    raise AssertionError(f"no such event; rc={self.proc.poll()}\n" + self.log())
                exited = self.proc.poll() is not None  # one more look after the pipes drain
                self._cond.wait(0.5)

    def finished(self, name: str, after: int = 0, **fields) -> dict:
        return self.wait_for(lambda e: e["event"] == "finished" and e["name"] == name
                             and all(e.get(k) == v for k, v in fields.items()), after=after)

    def quiet_for(self, seconds: float) -> None:
        """Let the daemon settle: no event for ``seconds`` (progress events aside)."""
        while True:
            count = len(self.events)
            time.sleep(seconds)
            if len(self.events) == count:
                return

    def mark(self) -> int:
        return len(self.events)

    def since(self, mark: int, event: str, name: str | None = None) -> list[dict]:
        return [e for e in self.events[mark:] if e["event"] == event and (name is None or e.get("name") == name)]

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        rc = self.proc.wait(timeout)
        time.sleep(0.1)  # let the reader threads drain the pipes
        return rc

    def log(self) -> str:
        return "\n".join(json.dumps(e) for e in self.events[-40:]) + "\n" + "".join(self.stderr[-40:])


@pytest.fixture(scope="session")
def warm_cache(tmp_path_factory, tiny_model) -> Path:
    """A cache holding the render of SPEC (named anything): daemons start without generating."""
    root = tmp_path_factory.mktemp("warm") / "game"
    (root / "track_specs").mkdir(parents=True)
    (root / "trackspec.toml").write_text('specs = ["track_specs"]\n')
    (root / "track_specs" / "seed.trackspec").write_text(SPEC)
    cache = root.parent / "cache"
    env = {**os.environ, "TRACKSPEC_CACHE_DIR": str(cache), "PYTHONPATH": str(Path(__file__).parents[1]),
           "TRACKSPEC_MODEL": str(tiny_model)}
    subprocess.run([sys.executable, "-m", "importer", "build", "-q"], cwd=root, env=env, check=True,
                   timeout=600)
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

    def start(repo, *args: str) -> WatchProcess:
        started.append(WatchProcess(repo, *args))
        return started[-1]

    yield start
    for daemon in started:
        if daemon.proc.poll() is None:
            daemon.proc.kill()
            daemon.proc.wait()


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
        time.sleep(0.01)
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
        time.sleep(0.02)
    os.utime(path)


@pytest.mark.parametrize("save", [save_in_place, save_temp_then_rename, save_like_vim, save_like_jetbrains,
                                  save_repeatedly], ids=lambda f: f.__name__)
def test_each_save_pattern_builds_the_new_content_once(warm_repo, daemons, save):
    path = warm_repo.write_spec("a", SPEC)
    daemon = daemons(warm_repo)
    daemon.finished("a", action="restore")
    daemon.quiet_for(0.5)
    for bpm in (91, 92):
        mark = daemon.mark()
        save(path, SPEC.replace("bpm = 90", f"bpm = {bpm}"))
        daemon.finished("a", after=mark)
        daemon.quiet_for(0.6)  # six debounce windows: a second job would show up here
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
        daemon.quiet_for(0.6)  # also lets the cycle write the index
        assert [(j["action"], j["reasons"]) for j in daemon.since(mark, "finished", "a")] == \
            [("generate", ["prompt changed"])], daemon.log()
        assert len(daemon.since(mark, "generated", "a")) == 1
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
    daemon.quiet_for(0.3)
    mark = daemon.mark()
    names = [f"burst{i:03d}" for i in range(200)]
    for name in names:  # same settings, other names: each one a cache hit
        warm_repo.write_spec(name, SPEC)
    daemon.wait_for(lambda e: e["event"] == "index_written" and e["tracks"] == 201, after=mark, timeout=300)
    daemon.quiet_for(0.5)
    restored = {e["name"] for e in daemon.since(mark, "finished") if e["action"] == "restore" and e["ok"]}
    assert restored == set(names)
    writes = daemon.since(mark, "index_written")
    assert 1 <= len(writes) <= 5, [w["tracks"] for w in writes]  # one per settle window, not 200
    assert daemon.since(mark, "generated") == []
    assert daemon.stop() == 0
    index = assert_index_matches_disk(warm_repo)
    assert sorted(index["tracks"]) == sorted(["a", *names])


def test_an_edit_during_generation_never_publishes_the_stale_take(repo, daemons):
    path = repo.write_spec("long", SPEC.replace("duration = 1.0", "duration = 12.0"))
    daemon = daemons(repo)
    first = daemon.wait_for(lambda e: e["event"] == "progress" and e["name"] == "long", timeout=300)
    path.write_text(SPEC.replace("duration = 1.0", "duration = 12.0").replace("calm", "tense"))
    stale = daemon.wait_for(lambda e: e["event"] == "generated", timeout=300)
    assert stale["ok"]
    final = daemon.wait_for(lambda e: e["event"] == "generated" and e["key"] != stale["key"], timeout=300)
    job = daemon.finished("long")
    daemon.quiet_for(0.6)
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


def test_a_second_sigint_stops_at_once_without_partial_files(repo, daemons):
    repo.write_spec("long", SPEC.replace("duration = 1.0", "duration = 30.0"))
    daemon = daemons(repo)
    daemon.wait_for(lambda e: e["event"] == "progress" and e["done"] > 1)
    daemon.proc.send_signal(signal.SIGINT)
    assert daemon.stop(signal.SIGINT) in (0, 130)
    assert_no_partial_files(repo)


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
    daemon.quiet_for(0.6)
    assert len(daemon.since(0, "generated", "long")) == 1
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
    daemon.quiet_for(0.3)
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
    daemon.quiet_for(0.3)
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
    daemon.quiet_for(0.3)
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
    config.write_text("specs = [")  # a broken config: said once, nothing touched
    error = daemon.wait_for(lambda e: e["event"] == "error", after=mark)
    assert "trackspec.toml:1:" in error["message"]
    daemon.quiet_for(0.3)
    assert daemon.since(mark, "finished") == [] and daemon.proc.poll() is None
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
    assert [n.split(":")[0] for n in notes if n.startswith("model")] == ["model loaded", "model unloaded after 1 s idle"] * 2
    assert daemon.stop() == 0


def test_a_track_continuing_another_is_generated_after_it_and_again_when_it_changes(warm_repo, daemons):
    """``continue_from = "track:main"``: the daemon re-plans boss when main changes (its key
    holds main's) and generates it only after main's new audio is in the cache."""
    main = warm_repo.write_spec("main", SPEC)  # its audio is in the warm cache
    warm_repo.write_spec("boss", 'prompt = "boss fight"\nduration = 1.0\nseed = 6\n\n'
                                 '[generation]\nwindow = 1.0\ncontinue_from = "track:main"\n')
    daemon = daemons(warm_repo)
    daemon.finished("main", action="restore")
    daemon.finished("boss", action="generate")
    mark = daemon.mark()
    save_in_place(main, SPEC.replace("calm synth pad", "dark synth pad"))
    boss = daemon.finished("boss", after=mark)
    daemon.quiet_for(0.6)
    assert boss["reasons"] == ["continues main, which changed"], daemon.log()
    assert [e["name"] for e in daemon.since(mark, "generated")] == ["main", "boss"]
    index = warm_repo.index()["tracks"]
    key = index["boss"]["keys"]["generation"]
    manifest = json.loads((warm_repo.cache / "v1" / "raw" / key[:2] / key / "manifest.json").read_text())
    assert manifest["info"]["inputs"]["continue"]["generation"] == index["main"]["keys"]["generation"]
    assert daemon.stop() == 0
    assert warm_repo.run("build", "--check").returncode == 0
