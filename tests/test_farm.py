"""The generation farm (issue 20) against a real Ray cluster on loopback: a head node and a
second worker node (``tests/rayfarm.py``), GPU-less, one unit of a custom resource per node
in place of a GPU. Builds run the real CLI; outputs are compared with a local build of the
same specs, file by file and index entry by index entry.

The local reference build runs with OMP_NUM_THREADS=1, as each farm worker does (Ray gives
an actor that reserves one CPU one thread): on CPU, float sums depend on the thread count,
so bit-identical audio needs the same number of threads on both sides.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from gamerepo import PROJECT_ROOT, GameRepo
from helpers import assert_index_matches_disk, sha256
from rayfarm import RESOURCE, RayCluster
from seaweed import free_ports

pytest.importorskip("ray")

TRACKS = 4
CONFIG = f'specs = ["track_specs"]\nbatch_size = 1\n\n[farm]\naddress = "local"\nresource = "{RESOURCE}"\n'


def _spec(i: int) -> str:
    return (
        f'name = "t{i}"\nprompt = "tune number {i}"\nduration = 1.0\nseed = {i}\n\n[output]\nformats = ["ogg", "mp3"]\n'
    )


def _repo(base: Path, tiny_model: Path, extra_env: dict[str, str] | None = None) -> GameRepo:
    root = base / "game"
    (root / "track_specs").mkdir(parents=True)
    (root / "trackspec.toml").write_text(CONFIG, encoding="utf-8")
    for i in range(1, TRACKS + 1):
        (root / "track_specs" / f"t{i}.trackspec").write_text(_spec(i), encoding="utf-8")
    env = {
        **os.environ,
        "TRACKSPEC_CACHE_DIR": str(base / "cache"),
        "PYTHONPATH": str(PROJECT_ROOT),
        "TRACKSPEC_MODEL": str(tiny_model),
        **(extra_env or {}),
    }
    env.pop("TRACKSPEC_FARM", None)
    return GameRepo(root, base / "cache", env)


def _outputs(repo: GameRepo) -> tuple[dict, dict[str, str]]:
    """(the index, sha256 of every published file by path)."""
    index = assert_index_matches_disk(repo)
    files = {p.relative_to(repo.root).as_posix(): sha256(p) for p in (repo.root / "assets").rglob("*") if p.is_file()}
    return index, files


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    ray_cluster = RayCluster(tmp_path_factory.mktemp("ray")).start()
    yield ray_cluster
    ray_cluster.stop()


@pytest.fixture(scope="module")
def reference(tmp_path_factory, tiny_model):
    """The same specs built locally (no farm), one thread: (the repo, its index, its files)."""
    repo = _repo(tmp_path_factory.mktemp("reference"), tiny_model, {"OMP_NUM_THREADS": "1"})
    (repo.root / "trackspec.toml").write_text('specs = ["track_specs"]\nbatch_size = 1\n', encoding="utf-8")
    repo.run("build", check_rc=0)
    return (repo, *_outputs(repo))


def _farm_repo(tmp_path: Path, tiny_model: Path, cluster: RayCluster) -> GameRepo:
    return _repo(tmp_path, tiny_model, cluster.env)


def _loads_by_worker(stderr: str) -> dict[str, int]:
    loads: dict[str, int] = {}
    for pid in re.findall(r"farm worker \d+ on \S+, pid (\d+): model loaded", stderr):
        loads[pid] = loads.get(pid, 0) + 1
    return loads


def test_farm_build_over_ray_client_matches_a_local_build(cluster, reference, tiny_model, tmp_path):
    _, ref_index, ref_files = reference
    repo = _farm_repo(tmp_path, tiny_model, cluster)
    result = repo.run("build", "--json", "--farm", cluster.address, check_rc=0)
    assert [(t["name"], t["action"], t["ok"]) for t in result.json()["tracks"]] == [
        (f"t{i}", "generate", True) for i in range(1, TRACKS + 1)
    ]
    assert f"farm joined at {cluster.address}" in result.stderr
    assert "2 worker(s), one per unit of 'farm_slot'" in result.stderr
    index, files = _outputs(repo)
    assert index == ref_index
    assert files == ref_files
    # Four batches of one model: each worker loaded it once, however many batches it ran.
    dispatched = re.findall(r"farm worker \d+ on \S+, pid (\d+): batch \d/4", result.stderr)
    assert len(dispatched) == TRACKS
    loads = _loads_by_worker(result.stderr)
    assert set(loads) == set(dispatched) and all(n == 1 for n in loads.values())
    assert sum(loads.values()) < len(dispatched)  # at least one worker reused its loaded model
    # Progress from the remote workers reaches the console like local progress does.
    for i in range(1, TRACKS + 1):
        assert re.search(rf"generating t{i}: 100% \((\d+)/\1 steps\)", result.stderr)
    assert "ray" in result.imported
    # Nothing is left to do, and the no-op (with the farm still configured) never imports Ray.
    again = repo.run("build", "--farm", cluster.address, check_rc=0)
    assert "ray" not in again.imported and "4 up to date" in again.stderr


def test_farm_local_starts_ray_here_and_matches_a_local_build(reference, tiny_model, tmp_path):
    _, ref_index, ref_files = reference
    repo = _repo(tmp_path, tiny_model)
    result = repo.run("build", "--farm", "local", check_rc=0)
    assert "farm started on this machine" in result.stderr
    assert "1 worker(s), one per unit of 'farm_slot'" in result.stderr
    assert len(re.findall(r"farm worker 1 on \S+, pid \d+: batch \d/4", result.stderr)) == TRACKS
    assert list(_loads_by_worker(result.stderr).values()) == [1]  # one load for four batches
    assert _outputs(repo) == (ref_index, ref_files)


def test_a_bad_farm_address_is_a_config_error_with_its_line(game_repo):
    (game_repo.root / "trackspec.toml").write_text('specs = ["track_specs"]\n\n[farm]\naddress = "gpu-box"\n')
    result = game_repo.run("build", "--check", check_rc=2)
    assert "trackspec.toml:4:" in result.stderr and "farm.address: 'gpu-box' is not a farm address" in result.stderr
    assert "ray" not in result.imported
    (game_repo.root / "trackspec.toml").write_text('specs = ["track_specs"]\n')
    game_repo.env["TRACKSPEC_FARM"] = "ray://nowhere"
    result = game_repo.run("plan", check_rc=2)
    assert "environment variable TRACKSPEC_FARM" in result.stderr


def test_a_worker_killed_mid_batch_loses_nothing(cluster, reference, tiny_model, tmp_path):
    """The first worker to say it is ready is stopped (SIGSTOP), so the batch it is given
    cannot finish; once the build has dispatched that batch, the worker is SIGKILLed."""
    _, ref_index, ref_files = reference
    repo = _farm_repo(tmp_path, tiny_model, cluster)
    proc = subprocess.Popen(
        [sys.executable, "-m", "importer", "build", "--farm", cluster.address],
        cwd=repo.root,
        env=repo.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    out: list[str] = []
    threading.Thread(target=lambda: out.extend(proc.stdout), daemon=True).start()
    err: list[str] = []
    victim = killed = None
    for line in proc.stderr:
        err.append(line)
        ready = re.match(r"farm worker (\d+) on \S+, pid (\d+): ready", line)
        if ready and victim is None:
            victim = ready.groups()
            os.kill(int(victim[1]), signal.SIGSTOP)
        batch = re.match(r"farm worker (\d+) on \S+, pid (\d+): batch", line)
        if batch and victim is not None and batch.groups() == victim and killed is None:
            killed = victim
            os.kill(int(victim[1]), signal.SIGKILL)
    assert proc.wait(300) == 0, "".join(err)
    stderr = "".join(err)
    assert killed is not None, stderr
    assert re.search(rf"farm worker {killed[0]} on \S+, pid {killed[1]} lost", stderr)
    assert "goes to another worker (attempt 2)" in stderr
    index, files = _outputs(repo)
    assert index == ref_index and files == ref_files
    # In the cache: exactly the four raw and four render entries, whole; no staging left over.
    for kind in ("raw", "render"):
        assert len(list((repo.cache / "v1" / kind).glob("*/*/manifest.json"))) == TRACKS
    assert not any((repo.cache / "v1" / "tmp").glob("*")) if (repo.cache / "v1" / "tmp").exists() else True
    verify = repo.run("cache", "verify", check_rc=0)
    assert "corrupt" not in verify.stdout.lower()


def test_an_unreachable_farm_fails_with_require_farm_or_builds_here(reference, tiny_model, tmp_path):
    _, ref_index, ref_files = reference
    repo = _repo(tmp_path, tiny_model, {"OMP_NUM_THREADS": "1"})
    [port] = free_ports(1)
    address = f"ray://127.0.0.1:{port}"
    required = repo.run("build", "--farm", address, "--require-farm", check_rc=1)
    assert f"the farm at {address} is unreachable" in required.stderr
    assert "requires the farm" in required.stderr and "Traceback" not in required.stderr
    assert not (repo.root / "assets/music/index.json").exists() or not repo.index()["tracks"]
    fallback = repo.run("build", "--farm", address, check_rc=0)
    assert fallback.stderr.count("unreachable") == 1
    assert "generating on this machine instead" in fallback.stderr
    assert _outputs(repo) == (ref_index, ref_files)


def test_without_ray_the_farm_says_what_to_install(game_repo, tmp_path):
    """An interpreter where ``import ray`` fails, as where the extra is not installed."""
    blocker = tmp_path / "no-ray"
    (blocker / "ray").mkdir(parents=True)
    (blocker / "ray" / "__init__.py").write_text("raise ImportError(\"No module named 'ray'\")\n")
    game_repo.env["PYTHONPATH"] = f"{blocker}{os.pathsep}{game_repo.env['PYTHONPATH']}"
    game_repo.write_spec("calm", 'prompt = "calm"\nduration = 1.0\n')
    result = game_repo.run("build", "--farm", "local", "--require-farm", "--model", "unused/model", check_rc=1)
    assert 'install it with: pip install "trackspec[farm]"' in result.stderr
    assert "Traceback" not in result.stderr


def test_paths_without_generation_never_import_ray(reference):
    repo = reference[0]
    env = {**repo.env, "TRACKSPEC_FARM": "local"}
    probe = GameRepo(repo.root, repo.cache, env)
    for args in (["build"], ["build"], ["build", "--check"], ["plan"], ["status"], ["build", "--farm", "auto"]):
        result = probe.run(*args, check_rc=0)
        assert "ray" not in result.imported, (args, result.imported)


def test_watch_generates_on_the_farm(cluster, reference, tiny_model, tmp_path):
    from test_watch import WatchProcess

    _, ref_index, ref_files = reference
    repo = _farm_repo(tmp_path, tiny_model, cluster)
    daemon = WatchProcess(repo, "--farm", cluster.address)
    try:
        for i in range(1, TRACKS + 1):
            daemon.finished(f"t{i}", ok=True)
        notes = [e["message"] for e in daemon.events if e["event"] == "note"]
        assert any(n.startswith(f"farm joined at {cluster.address}") for n in notes), notes
        assert sum(": model loaded" in n for n in notes) <= 2
        assert len([n for n in notes if re.search(r"farm worker \d+ on \S+, pid \d+: batch", n)]) == TRACKS
    finally:
        rc = daemon.stop()
    assert rc == 0, daemon.log()
    assert _outputs(repo) == (ref_index, ref_files)


def test_an_entry_from_a_worker_is_verified_before_it_reaches_the_cache(tmp_path):
    """What a worker returns is checked like a team-cache download: a changed byte, a manifest
    for another key or a missing file and nothing reaches the cache."""
    from importer.cache import LocalCache
    from importer.errors import CacheCorrupt
    from importer.farm.client import verified_put
    from importer.farm.worker import pack

    source = LocalCache(tmp_path / "worker")
    (tmp_path / "audio.ogg").write_bytes(b"OggS" + bytes(range(200)))
    entry = pack("render", source.put("render", "a" * 64, {"audio.ogg": tmp_path / "audio.ogg"}, {"x": 1}))
    cache = LocalCache(tmp_path / "build")
    tampered = {**entry, "files": {"audio.ogg": entry["files"]["audio.ogg"][:-1] + b"!"}}
    for bad, key in ((tampered, "a" * 64), (entry, "b" * 64), ({**entry, "files": {}}, "a" * 64)):
        with pytest.raises(CacheCorrupt):
            verified_put(cache, bad, key, "farm worker 1")
        assert not cache.has("render", key)
    put = verified_put(cache, entry, "a" * 64, "farm worker 1")
    assert put.files["audio.ogg"].read_bytes() == entry["files"]["audio.ogg"] and put.info == {"x": 1}
    assert not any((tmp_path / "build" / "v1" / "tmp").iterdir())
