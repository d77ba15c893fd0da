"""The team cache (issue 8) against a real S3 server: SeaweedFS ``weed mini`` on loopback.

Every build runs the real CLI in a subprocess with credentials in the standard AWS
environment variables; every check reads real objects from the bucket, real files and
the real index. ``CliResult.imported`` proves what was (not) generated: a build that
restores from the team cache never imports torch.
"""

from __future__ import annotations

import hashlib
import json
import os
import textwrap
import threading
import uuid
from pathlib import Path

import jsonschema
import pytest
from gamerepo import PROJECT_ROOT, GameRepo
from helpers import assert_index_matches_disk
from seaweed import SeaweedServer, free_ports

pytestmark = pytest.mark.timeout(300)

SPEC = """\
prompt = "{prompt}"
duration = 1.0
seed = {seed}

[output]
formats = ["ogg", "mp3"]
"""
CACHE_LS_SCHEMA = json.loads((PROJECT_ROOT / "importer/schemas/cache-ls.schema.json").read_text())
DOCTOR_SCHEMA = json.loads((PROJECT_ROOT / "importer/schemas/doctor.schema.json").read_text())


@pytest.fixture(scope="session")
def s3(tmp_path_factory):
    server = SeaweedServer(tmp_path_factory.mktemp("seaweed")).start()
    yield server
    server.stop()


@pytest.fixture
def bucket(s3) -> str:
    name = f"ts-{uuid.uuid4().hex[:12]}"
    s3.client().create_bucket(Bucket=name)
    return name


def make_repo(
    tmp_path: Path,
    label: str,
    s3: SeaweedServer,
    bucket: str,
    tiny_model: Path,
    *,
    push: bool = False,
    identity: str = "rw",
    secret: str | None = None,
    endpoint: str | None = None,
    tracks: int = 2,
) -> GameRepo:
    """A game repo checkout with its own local cache and a [cache.remote] on ``bucket``."""
    root = tmp_path / label / "game"
    (root / "track_specs").mkdir(parents=True)
    (root / "trackspec.toml").write_text(
        textwrap.dedent(f"""\
        specs = ["track_specs"]

        [cache.remote]
        url = "s3://{bucket}/team/music"
        endpoint_url = "{endpoint or s3.endpoint}"
        region = "us-east-1"
        push = {str(push).lower()}
        timeout = 5
        """),
        encoding="utf-8",
    )
    env = {
        **os.environ,
        "TRACKSPEC_CACHE_DIR": str(tmp_path / label / "cache"),
        "PYTHONPATH": str(PROJECT_ROOT),
        "TRACKSPEC_MODEL": str(tiny_model),
        **s3.env(identity, secret),
    }
    repo = GameRepo(root, tmp_path / label / "cache", env)
    for i in range(tracks):
        repo.write_spec(f"track{i}", SPEC.format(prompt=f"synthwave number {i}", seed=100 + i))
    return repo


def actions(result) -> dict[str, tuple[str, list[str]]]:
    return {t["name"]: (t["action"], t["reasons"]) for t in result.json()["tracks"] if t["name"]}


def digests(repo: GameRepo) -> dict[str, dict[str, str]]:
    return {
        name: {fmt: f["sha256"] for fmt, f in entry["files"].items()} for name, entry in repo.index()["tracks"].items()
    }


def objects(s3: SeaweedServer, bucket: str) -> dict[str, bytes]:
    client = s3.client()
    keys = [
        o["Key"]
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket)
        for o in page.get("Contents", [])
    ]
    return {k: client.get_object(Bucket=bucket, Key=k)["Body"].read() for k in keys}


def manifests(s3: SeaweedServer, bucket: str) -> dict[str, dict]:
    return {k: json.loads(v) for k, v in objects(s3, bucket).items() if k.endswith(".json")}


def warnings(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if "WARNING" in line and "team cache" in line]


# ------------------------------------------------------------------ sharing between checkouts


def test_second_checkout_builds_everything_from_the_team_cache(tmp_path, s3, bucket, tiny_model):
    farm = make_repo(tmp_path, "farm", s3, bucket, tiny_model, push=True, tracks=3)
    first = farm.run("build", "--json", check_rc=0)
    assert {a for a, _ in actions(first).values()} == {"generate"}
    assert "team cache: 6 entries pushed" in first.stderr
    stored = manifests(s3, bucket)
    assert sorted(m["kind"] for m in stored.values()) == ["raw"] * 3 + ["render"] * 3
    assert all(k.startswith("team/music/v1/") for k in objects(s3, bucket))

    dev = make_repo(tmp_path, "dev", s3, bucket, tiny_model, identity="ro", tracks=3)
    check = dev.run("build", "--check")
    assert check.returncode == 1 and check.imported == []  # the gate never consults the team cache
    second = dev.run("build", "--json", check_rc=0)
    assert actions(second) == {f"track{i}": ("restore", ["new", "from the team cache"]) for i in range(3)}
    assert "torch" not in second.imported and "transformers" not in second.imported  # zero generations
    assert digests(dev) == digests(farm)
    assert_index_matches_disk(dev)
    assert warnings(second.stderr) == []
    # the entries are in dev's own local cache now, and a no-op never imports the S3 client
    listed = dev.run("cache", "ls", "--json", check_rc=0).json()
    assert sorted(e["kind"] for e in listed["entries"]) == ["render"] * 3
    again = dev.run("build", check_rc=0)
    assert again.imported == []


def test_corrupt_remote_object_is_reported_ignored_and_repaired(tmp_path, s3, bucket, tiny_model):
    farm = make_repo(tmp_path, "farm", s3, bucket, tiny_model, push=True, tracks=1)
    farm.run("build", check_rc=0)
    client = s3.client()
    blobs = [k for k in objects(s3, bucket) if "/blobs/" in k]
    assert len(blobs) == 3  # raw audio.f32, render audio.ogg and audio.mp3
    for key in blobs:  # same size, other bytes: only a hash can tell
        body = bytearray(client.get_object(Bucket=bucket, Key=key)["Body"].read())
        body[len(body) // 2] ^= 0xFF
        client.put_object(Bucket=bucket, Key=key, Body=bytes(body))

    other = make_repo(tmp_path, "other", s3, bucket, tiny_model, push=True, tracks=1)
    result = other.run("build", "--json", check_rc=0)
    assert actions(result) == {"track0": ("generate", ["new"])}  # regenerated locally
    assert "torch" in result.imported
    assert "does not match its sha256" in result.stderr and "ignored" in result.stderr
    assert digests(other) == digests(farm)  # the corrupt bytes were never published
    # push repaired exactly the corrupt blobs: every blob's name is its content's sha256 again
    for key, body in objects(s3, bucket).items():
        if "/blobs/" in key:
            assert hashlib.sha256(body).hexdigest() == key.rsplit("/", 1)[1]
    assert len(manifests(s3, bucket)) == 2


# ------------------------------------------------------------------ failures degrade


@pytest.mark.parametrize("failure", ["endpoint down", "wrong secret"])
def test_remote_failure_warns_once_or_fails_with_require_remote(tmp_path, s3, bucket, tiny_model, failure):
    if failure == "endpoint down":
        repo = make_repo(
            tmp_path, "down", s3, bucket, tiny_model, push=True, endpoint=f"http://127.0.0.1:{free_ports(1)[0]}"
        )
        cause = "is unreachable"
    else:
        repo = make_repo(tmp_path, "secret", s3, bucket, tiny_model, push=True, secret="not-the-secret")
        cause = "refused the credentials"

    required = repo.run("build", "--require-remote")
    assert required.returncode == 1
    assert cause in required.stderr and "--require-remote" in required.stderr
    assert "torch" not in required.imported  # it stopped before generating anything
    if failure == "wrong secret":
        assert "SignatureDoesNotMatch" in required.stderr

    built = repo.run("build", "--json", check_rc=0)
    assert {a for a, _ in actions(built).values()} == {"generate"}
    assert len(warnings(built.stderr)) == 1, built.stderr  # one warning for 2 tracks, fetch and push
    assert cause in warnings(built.stderr)[0]
    assert_index_matches_disk(repo)
    assert objects(s3, bucket) == {}


def test_read_only_identity_with_push(tmp_path, s3, bucket, tiny_model):
    repo = make_repo(tmp_path, "ro", s3, bucket, tiny_model, push=True, identity="ro", tracks=1)
    doctor = repo.run("doctor", "--json")
    assert doctor.returncode == 1
    jsonschema.validate(doctor.json(), DOCTOR_SCHEMA)
    checks = {c["name"]: c for c in doctor.json()["checks"]}
    assert checks["remote"]["status"] == "ok"  # reachable, the credentials are good for reading
    write = checks["remote_write"]
    assert write["status"] == "fail" and "permission error" in write["message"]
    assert "AccessDenied" in write["message"] and "push = false" in write["hint"]

    built = repo.run("build", "--json", check_rc=0)
    assert actions(built) == {"track0": ("generate", ["new"])}
    assert len(warnings(built.stderr)) == 1 and "denied access while pushing" in built.stderr
    assert objects(s3, bucket) == {}

    rw = make_repo(tmp_path, "rw", s3, bucket, tiny_model, push=True, tracks=1)
    ok = {c["name"]: c["status"] for c in rw.run("doctor", "--json").json()["checks"]}
    assert ok["remote"] == ok["remote_write"] == "ok"
    assert objects(s3, bucket) == {}  # the write probe was deleted


# ------------------------------------------------------------------ concurrent writers


def test_concurrent_pushes_of_the_same_key_leave_one_object(tmp_path, s3, bucket, tiny_model):
    repos = [make_repo(tmp_path, f"ci{i}", s3, bucket, tiny_model, push=False, tracks=1) for i in range(2)]
    for repo in repos:  # the committed file says push = false; CI turns it on
        repo.env["TRACKSPEC_REMOTE_PUSH"] = "true"
    results: list = [None, None]
    threads = [
        threading.Thread(target=lambda i=i: results.__setitem__(i, repos[i].run("build", "--json"))) for i in range(2)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [r.returncode for r in results] == [0, 0], [r.stderr for r in results]
    assert all(warnings(r.stderr) == [] for r in results)
    stored = manifests(s3, bucket)
    assert sorted(m["kind"] for m in stored.values()) == ["raw", "render"]  # one object per key
    assert digests(repos[0]) == digests(repos[1])
    reader = make_repo(tmp_path, "reader", s3, bucket, tiny_model, tracks=1)
    restored = reader.run("build", "--json", check_rc=0)
    assert actions(restored)["track0"][0] == "restore" and digests(reader) == digests(repos[0])


def test_conditional_create_under_many_writers_and_multipart(tmp_path, s3, bucket, monkeypatch):
    """The tier itself, in process: 12 threads push one entry (exactly one wins); a file over
    the multipart threshold goes up in parts, conditionally, and comes back verified."""
    from importer.cache import LocalCache
    from importer.remote.s3 import S3Store
    from importer.remote.settings import RemoteSettings
    from importer.remote.tier import RemoteTier

    for name, value in s3.env("rw").items():
        monkeypatch.setenv(name, value)  # the default credential chain, as the CLI reads it
    settings = RemoteSettings.from_values(
        {"url": f"s3://{bucket}/p", "endpoint_url": s3.endpoint, "region": "us-east-1"}
    )
    tier = RemoteTier(S3Store(settings, multipart_bytes=5 * 1024**2, part_bytes=5 * 1024**2))
    local = LocalCache(tmp_path / "cache")
    staging = local.staging_dir()
    (staging / "audio.f32").write_bytes(os.urandom(12 * 1024**2 + 7))  # three parts
    entry = local.put("raw", "ab" * 32, {"audio.f32": staging / "audio.f32"}, {"sample_rate": 32000})

    wins: list[bool] = []
    barrier = threading.Barrier(12)

    def push() -> None:
        barrier.wait()
        wins.append(tier.push("raw", entry))

    threads = [threading.Thread(target=push) for _ in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(wins) == [False] * 11 + [True]
    assert list(manifests(s3, bucket)) == [f"p/v1/raw/{'ab' * 32}.json"]

    fresh = LocalCache(tmp_path / "other-cache")
    fetched = tier.fetch("raw", "ab" * 32, fresh)
    assert fetched is not None and fetched.digests == entry.digests
    assert fetched.files["audio.f32"].read_bytes() == entry.files["audio.f32"].read_bytes()
    assert tier.fetch("render", "cd" * 32, fresh) is None

    # a multipart upload is conditional too: the second writer's completion is refused (412)
    first, second = tmp_path / "first", tmp_path / "second"
    first.write_bytes(os.urandom(11 * 1024**2))
    second.write_bytes(os.urandom(11 * 1024**2))
    assert tier.store.put_if_absent("x/big", first) is True
    assert tier.store.put_if_absent("x/big", second) is False
    assert tier.store.get_bytes("x/big") == first.read_bytes()
    etag = s3.client().head_object(Bucket=bucket, Key="p/x/big")["ETag"]
    assert etag.strip('"').endswith("-3")  # three parts: it did go up as a multipart upload


# ------------------------------------------------------------------ commands and config


def test_cache_push_pull_and_ls_remote(tmp_path, s3, bucket, tiny_model):
    local_only = make_repo(tmp_path, "a", s3, bucket, tiny_model, push=False)
    built = local_only.run("build", check_rc=0)
    assert "pushed" not in built.stderr and objects(s3, bucket) == {}  # push = false: nothing goes up
    empty = local_only.run("cache", "ls", "--remote", "--json", check_rc=0).json()
    assert empty["entries"] == [] and empty["cache_dir"] == f"s3://{bucket}/team/music"

    usage = local_only.run("cache", "push")
    assert usage.returncode == 2 and "--all or one or more TRACK" in usage.stderr
    one = local_only.run("cache", "push", "track1", check_rc=0)
    assert "pushed 2 of 2" in one.stdout
    everything = local_only.run("cache", "push", "--all", check_rc=0)
    assert "pushed 2 of 4" in everything.stdout
    listed = local_only.run("cache", "ls", "--remote", "--json", check_rc=0).json()
    jsonschema.validate(listed, CACHE_LS_SCHEMA)
    assert sorted(e["kind"] for e in listed["entries"]) == ["raw", "raw", "render", "render"]
    assert {e["formats"] and tuple(e["formats"]) for e in listed["entries"] if e["kind"] == "render"} == {
        ("mp3", "ogg")
    }
    text = local_only.run("cache", "ls", "--remote", check_rc=0)
    assert "4 entries (2 raw, 2 render)" in text.stdout

    other = make_repo(tmp_path, "b", s3, bucket, tiny_model, identity="ro")
    pulled = other.run("cache", "pull", "--all", check_rc=0)
    assert "pulled 4 entries" in pulled.stdout
    built = other.run("build", "--json", check_rc=0)
    assert {a for a, _ in actions(built).values()} == {"restore"}
    assert "torch" not in built.imported and "boto3" not in built.imported  # all local hits now
    assert digests(other) == digests(local_only)

    same = other.run("cache", "push", "--all", check_rc=0)
    assert "pushed 0 of 4" in same.stdout  # all there already: one HEAD each, nothing written
    s3.client().delete_object(Bucket=bucket, Key=listed["entries"][0]["path"].split(f"{bucket}/", 1)[1])
    denied = other.run("cache", "push", "--all")  # the read-only identity may not put it back
    assert denied.returncode == 1 and "denied access" in denied.stderr and "AccessDenied" in denied.stderr


def test_remote_config_errors_name_file_and_field(game_repo):
    toml = game_repo.root / "trackspec.toml"
    toml.write_text('specs = ["track_specs"]\n[cache.remote]\nurl = "http://bucket/x"\n')
    bad = game_repo.run("build", "--check")
    assert bad.returncode == 2 and "trackspec.toml:3" in bad.stderr and "cache.remote.url" in bad.stderr
    toml.write_text('specs = ["track_specs"]\n[cache.remote]\nurl = "s3://b/x"\nsecret_access_key = "x"\n')
    secret = game_repo.run("build", "--check")
    assert secret.returncode == 2 and "cache.remote.secret_access_key" in secret.stderr
    assert "AWS_SECRET_ACCESS_KEY" in secret.stderr
    toml.write_text('specs = ["track_specs"]\n[cache.remote]\nurl = "s3://b/x"\npush = "yes"\n')
    assert "cache.remote.push" in game_repo.run("build", "--check").stderr
    toml.write_text('specs = ["track_specs"]\n[cache.remote]\nurl = "s3://b/x"\n')
    game_repo.env["TRACKSPEC_REMOTE_PUSH"] = "maybe"
    env_bad = game_repo.run("build", "--check")
    assert env_bad.returncode == 2 and "TRACKSPEC_REMOTE_PUSH" in env_bad.stderr
    del game_repo.env["TRACKSPEC_REMOTE_PUSH"]
    toml.write_text('specs = ["track_specs"]\n[cache]\nregion = "x"\n')
    assert "cache.region" in game_repo.run("build", "--check").stderr
    down = f"http://127.0.0.1:{free_ports(1)[0]}"  # nothing listens there (and no request leaves loopback)
    toml.write_text(
        'specs = ["track_specs"]\n[cache]\ndir = "local-cache"\n[cache.remote]\nurl = "s3://b/x"\n'
        f'endpoint_url = "{down}"\n'
    )
    game_repo.env.pop("TRACKSPEC_CACHE_DIR")
    game_repo.env.update({"AWS_ACCESS_KEY_ID": "k", "AWS_SECRET_ACCESS_KEY": "s", "AWS_CONFIG_FILE": os.devnull})
    doctor = game_repo.run("doctor", "--json")
    assert doctor.json()["cache_dir"] == str((game_repo.root / "local-cache").resolve())
    remote = {c["name"]: c for c in doctor.json()["checks"]}["remote"]
    assert remote["status"] == "fail" and "unreachable" in remote["message"] and down in remote["message"]


def test_watch_daemon_restores_from_the_team_cache(tmp_path, s3, bucket, tiny_model):
    from watchproc import WatchProcess

    farm = make_repo(tmp_path, "farm", s3, bucket, tiny_model, push=True, tracks=1)
    farm.run("build", check_rc=0)
    dev = make_repo(tmp_path, "dev", s3, bucket, tiny_model, identity="ro", tracks=1)
    daemon = WatchProcess(dev)
    try:
        event = daemon.finished("track0")
        assert event["ok"] and event["action"] == "restore", daemon.log()
        daemon.barrier((dev.root / "track_specs" / "track0.trackspec").read_text())  # its cycle is over
        daemon.drop_barrier()
        assert daemon.since(0, "generated") == [] and daemon.queue_now() == ([], []), daemon.log()
        assert daemon.stop() == 0
    finally:
        daemon.kill()
    assert digests(dev) == digests(farm)


def test_continuing_a_track_restored_from_a_render_fetches_its_raw_audio(tmp_path, s3, bucket, tiny_model):
    """dev restored track0 from the team cache's render; a new track continues track0, which
    needs track0's raw audio: it comes from the team cache too, so track0 is not generated."""
    farm = make_repo(tmp_path, "farm", s3, bucket, tiny_model, push=True, tracks=1)
    farm.run("build", check_rc=0)
    dev = make_repo(tmp_path, "dev", s3, bucket, tiny_model, identity="ro", tracks=1)
    assert actions(dev.run("build", "--json", check_rc=0)) == {"track0": ("restore", ["new", "from the team cache"])}
    dev.write_spec(
        "boss",
        'prompt = "boss fight"\nduration = 1.0\nseed = 9\n\n'
        '[generation]\nwindow = 1.0\ncontinue_from = "track:track0"\n',
    )
    result = dev.run("build", "--json", check_rc=0)
    assert actions(result) == {
        "track0": ("restore", ["boss continues its generated audio, which is not in the cache", "from the team cache"]),
        "boss": ("generate", ["new"]),
    }
    assert digests(dev)["track0"] == digests(farm)["track0"]
    listed = dev.run("cache", "ls", "--json", check_rc=0).json()
    assert sorted(e["kind"] for e in listed["entries"]) == ["raw", "raw", "render", "render"]
