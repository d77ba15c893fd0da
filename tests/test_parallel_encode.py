"""Rendering several tracks at once: the same files, index and results as one at a time.

Real ffmpeg and real files throughout. ffmpeg runs behind a small wrapper
(``TRACKSPEC_FFMPEG``) through which each encode checks in with a gate in the test and
waits there for its go, and whose end the gate sees: the tests count the encodes alive
at once and hold them until the moment they want to prove (no timing, no sleeps). The
end-to-end tests use the CLI and the tiny model; the generation tests run the build in
process with a fake backend, whose failures they control and which, in the middle of a
batch, can wait for what the encodes of the previous batch are doing.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import shutil
import socket
import stat
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import imageio_ffmpeg
import numpy as np
import pytest
from gamerepo import PROJECT_ROOT, GameRepo
from helpers import assert_index_matches_disk

from importer.build import BuildOptions, run_build
from importer.cache import LocalCache
from importer.config import MAX_AUTO_WORKERS, auto_workers, load_config
from importer.errors import ConfigError
from importer.render_pool import InOrder, RenderPool

NAN_ERROR = "the audio contains NaN or infinite samples"

_WRAPPER = """#!{python} -I
# ffmpeg; an encode (PCM piped in: "-i pipe:") first checks in with the test's gate and
# waits for its go. ffmpeg inherits the connection, so the gate sees the encode end.
import os, socket, sys
real, args = os.environ["REAL_FFMPEG"], sys.argv[1:]
if any(a == "-i" and b == "pipe:" for a, b in zip(args, args[1:])):
    gate = socket.create_connection(("127.0.0.1", int(os.environ["FFMPEG_GATE_PORT"])))
    gate.sendall(b"start\\n")
    if gate.recv(1) != b"g":
        sys.exit("ffmpeg wrapper: the test's gate closed")
    os.set_inheritable(gate.fileno(), True)
os.execv(real, [real, *args])
"""


class FfmpegGate:
    """The test's end of the wrapper: how many encodes started, ended, and ran at once.

    While ``holding``, an encode that checks in waits (at most ``timeout`` seconds) until
    ``release``, or until ``hold_until`` encodes are alive at once, which releases them all
    and holds no more.
    """

    def __init__(self, folder: Path, holding: bool = False, hold_until: int | None = None, timeout: float = 60):
        script = folder / "ffmpeg-wrapper.py"
        script.write_text(_WRAPPER.format(python=sys.executable))
        script.chmod(script.stat().st_mode | stat.S_IXUSR)
        self._server = socket.create_server(("127.0.0.1", 0))
        self.env = {
            "TRACKSPEC_FFMPEG": str(script),
            "REAL_FFMPEG": imageio_ffmpeg.get_ffmpeg_exe(),
            "FFMPEG_GATE_PORT": str(self._server.getsockname()[1]),
        }
        self.holding = holding or hold_until is not None
        self.hold_until = hold_until
        self.timeout = timeout
        self.started = self.ended = self.alive = self.peak = 0
        self.held_too_long = 0  # encodes let go by the timeout, not by the test
        self._cond = threading.Condition()
        self._threads: list[threading.Thread] = []
        self._accepting = threading.Thread(target=self._accept, daemon=True)
        self._accepting.start()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._server.accept()
            except OSError:  # closed
                return
            thread = threading.Thread(target=self._encode, args=(conn,), daemon=True)
            with self._cond:
                self._threads.append(thread)
            thread.start()

    def _encode(self, conn: socket.socket) -> None:
        with conn:
            conn.makefile("rb").readline()  # "start"
            with self._cond:
                self.started += 1
                self.alive += 1
                self.peak = max(self.peak, self.alive)
                if self.hold_until is not None and self.alive >= self.hold_until:
                    self.holding = False
                self._cond.notify_all()
                if not self._cond.wait_for(lambda: not self.holding, self.timeout):
                    self.held_too_long += 1
            conn.sendall(b"g")
            while conn.recv(4096):  # until ffmpeg exits
                pass
            with self._cond:
                self.alive -= 1
                self.ended += 1
                self._cond.notify_all()

    def wait_alive(self, count: int, timeout: float = 60) -> bool:
        """Whether ``count`` encodes came to be alive at once within ``timeout`` seconds."""
        with self._cond:
            return self._cond.wait_for(lambda: self.alive >= count, timeout)

    def release(self) -> None:
        with self._cond:
            self.holding = False
            self._cond.notify_all()

    def close(self) -> None:
        """Stop listening and wait for every encode seen to end."""
        self.release()
        try:
            self._server.shutdown(socket.SHUT_RDWR)  # wakes the accept() below (close alone does not)
        except OSError:
            pass
        self._server.close()
        self._accepting.join(10)
        assert not self._accepting.is_alive()
        with self._cond:
            threads = list(self._threads)
        for thread in threads:
            thread.join(60)
        assert not any(t.is_alive() for t in threads), "an encode started and never ended"
        assert self.started == self.ended


def digests(root: Path) -> dict[str, str]:
    """sha256 of every file under the repo's assets folder, by relative path."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted((root / "assets").rglob("*"))
        if p.is_file()
    }


def comparable(results: list[dict]) -> list[dict]:
    """Results without what differs between any two runs: timing, private staging folders."""
    return [
        {
            **{k: v for k, v in r.items() if k != "seconds"},
            "error": r["error"] and re.sub(r"\S*/tmp/\d+-[0-9a-f]+/", "STAGING/", r["error"]),
        }
        for r in results
    ]


# ------------------------------------------------------------------- the pool itself


def test_pool_runs_at_most_workers_and_hands_results_back_in_order():
    lock = threading.Lock()
    running, peak = [0], [0]
    three_at_once = threading.Barrier(3, timeout=30)
    done = [threading.Event() for _ in range(6)]
    # Jobs 0-2 meet (three run at once), then each job waits for the next one to finish:
    # later jobs finish first (2 before 1 before 0, then 5, 4, 3).
    waits_for = {0: 1, 1: 2, 3: 4, 4: 5}

    def work(i: int) -> int:
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        try:
            if i < 3:
                three_at_once.wait()
            if i in waits_for:
                assert done[waits_for[i]].wait(30), f"job {i}: job {waits_for[i]} never finished"
            with lock:
                running[0] -= 1
            if i == 3:
                raise ValueError("job 3 broke")
            return i * 10
        finally:
            done[i].set()

    seen: list[object] = []
    with RenderPool(3) as pool:
        queue = InOrder()
        for i in range(6):
            job = pool.submit(work, i)
            queue.add(job, lambda job=job: seen.append(_outcome(job)))
        queue.add(None, lambda: seen.append("no job"))
        queue.run_all()
    assert peak[0] == 3
    assert seen == [0, 10, 20, "ValueError: job 3 broke", 40, 50, "no job"]


def _outcome(job) -> object:
    try:
        return job.result()
    except ValueError as exc:  # the worker's exception, unchanged
        return f"{type(exc).__name__}: {exc}"


def test_run_ready_never_waits_and_never_skips_ahead():
    gate = threading.Event()
    seen: list[str] = []
    with RenderPool(2) as pool:
        queue = InOrder()
        slow = pool.submit(gate.wait, 10)
        fast = pool.submit(lambda: "fast")
        queue.add(slow, lambda: seen.append("slow"))
        queue.add(fast, lambda: seen.append("fast"))
        fast.wait()
        started = time.monotonic()
        queue.run_ready()  # the head is not done: nothing may run, and nothing waits
        assert seen == [] and time.monotonic() - started < 1 and len(queue) == 2
        gate.set()
        slow.wait()
        queue.run_ready()
    assert seen == ["slow", "fast"]


def test_a_pool_with_nothing_to_render_starts_no_thread():
    before = threading.active_count()
    with RenderPool(4):
        assert threading.active_count() == before


# ---------------------------------------------------------------------- the setting


def test_encode_workers_setting_and_its_environment_override(tmp_path, monkeypatch):
    monkeypatch.delenv("TRACKSPEC_ENCODE_WORKERS", raising=False)
    (tmp_path / "trackspec.toml").write_text('specs = ["."]\n')
    assert load_config(tmp_path).encode_workers == auto_workers()
    assert 1 <= auto_workers() <= MAX_AUTO_WORKERS
    (tmp_path / "trackspec.toml").write_text('specs = ["."]\nencode_workers = 3\n')
    assert load_config(tmp_path).encode_workers == 3
    monkeypatch.setenv("TRACKSPEC_ENCODE_WORKERS", "5")
    assert load_config(tmp_path).encode_workers == 5
    monkeypatch.setenv("TRACKSPEC_ENCODE_WORKERS", "auto")
    assert load_config(tmp_path).encode_workers == auto_workers()
    monkeypatch.setenv("TRACKSPEC_ENCODE_WORKERS", "many")
    with pytest.raises(ConfigError, match="TRACKSPEC_ENCODE_WORKERS: 'many' is not a worker count"):
        load_config(tmp_path)
    monkeypatch.delenv("TRACKSPEC_ENCODE_WORKERS")
    (tmp_path / "trackspec.toml").write_text('specs = ["."]\nencode_workers = 0\n')
    with pytest.raises(ConfigError, match=r"trackspec.toml:2:1: encode_workers: 0 is not a worker count"):
        load_config(tmp_path)


# ------------------------------------------------- generation, in process, fake backend


class FakeBackend:
    """Deterministic tones at 32 kHz; a prompt with "nan" gets a NaN sample, a batch with
    an "explode" prompt fails as a whole. ``during_batch(n)`` is called in the middle of
    the n-th batch (from 1)."""

    sample_rate = 32000
    channels = 1
    description = "fake"

    def __init__(self, during_batch: Callable[[int], None] | None = None):
        self.during_batch = during_batch
        self.batches = 0

    def generate(self, requests, progress=None):
        self.batches += 1
        if self.during_batch is not None:
            self.during_batch(self.batches)
        if any("explode" in r.prompt for r in requests):
            raise RuntimeError("the fake model exploded")
        out = []
        for r in requests:
            t = np.arange(int(r.duration * self.sample_rate)) / self.sample_rate
            audio = (0.3 * np.sin(2 * np.pi * (200 + r.seed % 300) * t)).astype(np.float32)[None]
            if "nan" in r.prompt:
                audio[0, 100] = np.nan
            out.append(audio)
            if progress:
                progress(r.name, 1, 1)
        return out

    def close(self) -> None:
        pass


class Recorder:
    """A reporter that keeps every result and the thread of every call."""

    def __init__(self) -> None:
        self.results = []
        self.threads: set[str] = set()

    def _called(self) -> None:
        self.threads.add(threading.current_thread().name)

    def note(self, message):
        self._called()

    def started(self, plan):
        self._called()

    def progress(self, name, done, total):
        self._called()

    def finished(self, result):
        self._called()
        self.results.append(result)

    def index_written(self, path, tracks):
        self._called()


def fake_repo(folder: Path, specs: dict[str, str], batch_size: int) -> Path:
    root = folder / "game"
    (root / "track_specs").mkdir(parents=True)
    (root / "trackspec.toml").write_text(
        f'specs = ["track_specs"]\nbatch_size = {batch_size}\ncache = "{folder / "cache"}"\n'
    )
    for name, text in specs.items():
        (root / "track_specs" / f"{name}.trackspec").write_text(text)
    return root


def build_in_process(
    root: Path, workers: int, monkeypatch, during_batch: Callable[[int], None] | None = None
) -> Recorder:
    class FakeBackends:  # what `generation.generate` gets its models from: no patching
        def get(self, source, revision):
            return FakeBackend(during_batch)

        def release(self, backend):
            backend.close()

    config = dataclasses.replace(load_config(root), encode_workers=workers)
    recorder = Recorder()
    run_build(config, BuildOptions(), recorder, backends=FakeBackends())
    return recorder


@pytest.fixture
def clean_env(monkeypatch):
    for name in ("TRACKSPEC_CACHE_DIR", "TRACKSPEC_MODEL", "TRACKSPEC_ENCODE_WORKERS", "TRACKSPEC_FFMPEG"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_a_batch_renders_while_the_next_batch_generates(tmp_path, clean_env):
    monkeypatch = clean_env
    overlap: list[bool] = []
    with FfmpegGate(tmp_path, holding=True) as gate:
        for key, value in gate.env.items():
            monkeypatch.setenv(key, value)

        def during_batch(n: int) -> None:
            if n == 2:  # the first batch's two encodes must be running now, both at once
                overlap.append(gate.wait_alive(2, timeout=120))
                gate.release()

        specs = {f"t{i}": f'prompt = "tone {i}"\nduration = 1.0\nseed = {i}\n' for i in range(4)}
        root = fake_repo(tmp_path, specs, batch_size=2)
        recorder = build_in_process(root, workers=2, monkeypatch=monkeypatch, during_batch=during_batch)

    assert overlap == [True], "the first batch's encodes did not both run during the second batch's generation"
    assert [(r.name, r.action, r.ok) for r in recorder.results] == [(f"t{i}", "generate", True) for i in range(4)]
    assert recorder.threads == {"MainThread"}  # the reporter never hears from a render thread
    assert (gate.started, gate.peak, gate.held_too_long) == (4, 2, 0)


def test_generated_builds_with_one_and_three_workers_are_identical(tmp_path, clean_env):
    specs = {f"a{i}": f'prompt = "tone {i}"\nduration = 1.0\nseed = {i}\n' for i in range(7)}
    specs["a2"] = 'prompt = "tone nan"\nduration = 1.0\nseed = 2\n'  # its render fails
    specs["twin"] = specs["a0"]  # the same audio: generated once, restored
    specs["e0"] = 'prompt = "explode"\nduration = 1.5\nseed = 1\n'  # a batch that fails
    specs["e1"] = 'prompt = "explode too"\nduration = 1.5\nseed = 2\n'
    specs["wav"] = 'prompt = "tone wav"\nduration = 1.0\nseed = 9\n[output]\nformats = ["wav", "flac"]\n'
    builds = {}
    for workers in (1, 3):
        root = fake_repo(tmp_path / f"w{workers}", specs, batch_size=3)
        recorder = build_in_process(root, workers, monkeypatch=clean_env)
        results = [dataclasses.asdict(r) for r in recorder.results]
        builds[workers] = (comparable(results), (root / "assets/music/index.json").read_text(), digests(root))
        by_name = {r["name"]: r for r in results}
        assert NAN_ERROR in by_name["a2"]["error"] and by_name["a2"]["action"] == "generate"
        assert (
            by_name["e0"]["error"] == by_name["e1"]["error"] == "internal error: RuntimeError: the fake model exploded"
        )
        assert by_name["twin"]["ok"] and by_name["twin"]["action"] == "restore"
        ok = sorted(n for n, r in by_name.items() if r["ok"])
        assert ok == ["a0", "a1", "a3", "a4", "a5", "a6", "twin", "wav"]
        index = assert_index_matches_disk(GameRepo(root, tmp_path / f"w{workers}" / "cache", {}))
        assert sorted(index["tracks"]) == ok
        assert recorder.threads == {"MainThread"}
    for one, three in zip(builds[1], builds[3]):  # results, index text, files
        assert one == three


# ------------------------------------------------ re-encoding, end to end with the CLI

TRACKS = {f"t{i}": f'prompt = "pad {i}"\nduration = 1.0\nseed = {i + 1}\n' for i in range(6)}
TRACKS["t5"] += '[output]\nformats = ["ogg", "mp3", "wav"]\n'
TRACKS["twin"] = TRACKS["t0"]  # same audio and render as t0


@pytest.fixture(scope="module")
def generated(tmp_path_factory, tiny_model) -> Path:
    """A repo and cache where every track was generated once (copied by each test)."""
    folder = tmp_path_factory.mktemp("generated")
    root = folder / "game"
    (root / "track_specs").mkdir(parents=True)
    (root / "trackspec.toml").write_text('specs = ["track_specs"]\n')
    for name, text in TRACKS.items():
        (root / "track_specs" / f"{name}.trackspec").write_text(text)
    repo = _repo(folder, tiny_model)
    repo.run("build", check_rc=0)
    return folder


def _repo(folder: Path, model: Path) -> GameRepo:
    env = {
        **os.environ,
        "TRACKSPEC_CACHE_DIR": str(folder / "cache"),
        "PYTHONPATH": str(PROJECT_ROOT),
        "TRACKSPEC_MODEL": str(model),
    }
    env.pop("TRACKSPEC_ENCODE_WORKERS", None)
    return GameRepo(folder / "game", folder / "cache", env)


def copy_of(generated: Path, folder: Path, model: Path) -> GameRepo:
    shutil.copytree(generated / "game", folder / "game")
    shutil.copytree(generated / "cache", folder / "cache")
    return _repo(folder, model)


def forget_renders(repo: GameRepo) -> None:
    """Leave only the raw audio: every track must be encoded again."""
    shutil.rmtree(repo.cache / "v1" / "render")
    for path in (repo.root / "assets").rglob("*"):
        if path.is_file() and path.suffix != ".json":
            path.unlink()


def test_reencoding_with_one_and_four_workers_gives_identical_results(generated, tiny_model, tmp_path):
    repo = copy_of(generated, tmp_path, tiny_model)
    as_generated = digests(repo.root), repo.index()
    runs = {}
    for workers in (1, 4):
        forget_renders(repo)
        # With four workers, the first encodes wait at the gate until four are alive at once.
        with FfmpegGate(tmp_path, hold_until=workers) as gate:
            repo.env.update(gate.env, TRACKSPEC_ENCODE_WORKERS=str(workers))
            result = repo.run("build", "--json", check_rc=0)
        tracks = result.json()["tracks"]
        assert [(t["name"], t["action"]) for t in tracks] == [(f"t{i}", "encode") for i in range(6)] + [
            ("twin", "restore")
        ]  # t0 made its files first
        runs[workers] = comparable(tracks), (digests(repo.root), repo.index())
        assert_index_matches_disk(repo)
        assert gate.started == 6  # twin shares t0's render
        assert (gate.peak, gate.held_too_long) == (workers, 0)
    assert runs[1] == runs[4]
    assert runs[4][1] == as_generated  # and the same files as the build that generated them


def test_a_track_whose_render_fails_fails_alone(generated, tiny_model, tmp_path):
    repo = copy_of(generated, tmp_path, tiny_model)
    before = repo.index()
    # t3's raw audio, whole by its manifest, holds a NaN sample (as a model running out of
    # fp16 range can produce): the encoder refuses it.
    cache = LocalCache(repo.cache)
    key = before["tracks"]["t3"]["keys"]["generation"]
    raw = cache.get("raw", key)
    samples = np.fromfile(raw.files["audio.f32"], dtype="<f4")
    samples[500] = np.nan
    staging = tmp_path / "nan.f32"
    samples.tofile(staging)
    info = raw.info
    cache.remove("raw", key)
    cache.put("raw", key, {"audio.f32": staging}, info)
    # Every track's render key changes: all are encoded again, four at a time.
    config = repo.root / "trackspec.toml"
    config.write_text(config.read_text() + "[defaults.output]\nogg_quality = 3\n")
    repo.env["TRACKSPEC_ENCODE_WORKERS"] = "4"

    result = repo.run("build", "--json", check_rc=1)
    tracks = {t["name"]: t for t in result.json()["tracks"]}
    assert [t["name"] for t in result.json()["tracks"]] == [f"t{i}" for i in range(6)] + ["twin"]
    failed = tracks.pop("t3")
    assert not failed["ok"] and failed["action"] == "encode"
    assert failed["error"].endswith(f"/audio: {NAN_ERROR}")
    assert all(t["ok"] and t["action"] in ("encode", "restore") for t in tracks.values())
    after = assert_index_matches_disk(repo)
    assert after["tracks"]["t3"] == before["tracks"]["t3"]  # its last good asset stays
    for name in tracks:
        assert after["tracks"][name]["keys"]["render"] != before["tracks"][name]["keys"]["render"]
    text = repo.run("build", check_rc=1)  # the same failure, again, as text
    assert "FAILED    t3\n          " in text.stdout and NAN_ERROR in text.stdout
    assert json.loads((repo.root / "assets/music/index.json").read_text()) == after
