"""Trust boundaries (issue 16): nothing read from a file, a link or a bucket makes trackspec
touch what it does not own, hang, crash or print a secret.

Families, each through the real CLI (or, for the bucket and the daemon's request folder,
the real tier and request reader): links in every folder trackspec writes into, crafted
values in every file it reads, special files (FIFO, socket, /dev/zero link, directory) in
every place it opens files, ``cache gc``/``cache clear`` racing builds and ``watch``
generation. Credentials in every output channel are in ``test_trust_secrets.py`` (it needs
an S3 server). Every trial checks that a folder outside the repo (``victim``) is untouched,
that no command hangs (each runs under a timeout) and that no traceback is printed.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from faults import Project, build, popen_cli
from invariants import TALLY, check_complete, check_tree, sha256

PY = sys.executable
HEX = "ab" * 32


def cli(repo, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """The real CLI; a hang (a FIFO read, /dev/zero hashed) fails the test by its timeout."""
    return subprocess.run(
        [PY, "-m", "importer", *args], cwd=repo.root, env=repo.env, capture_output=True, text=True, timeout=timeout
    )


def snapshot(top: Path) -> dict[str, tuple]:
    files = {}
    for dirpath, dirs, names in os.walk(top):
        for name in dirs + names:
            path = Path(dirpath) / name
            st = path.lstat()
            files[str(path.relative_to(top))] = (
                st.st_mode,
                st.st_size,
                st.st_mtime_ns,
                sha256(path) if path.is_file() and not path.is_symlink() else "",
            )
    return files


@pytest.fixture
def victim(tmp_path) -> Path:
    """A folder outside the game repo that no trial may change."""
    folder = tmp_path / "victim"
    (folder / "sub").mkdir(parents=True)
    (folder / "precious.txt").write_text("someone's work\n")
    (folder / "alpha.ogg").write_bytes(b"not trackspec's")
    (folder / "sub" / "deep.ogg").write_bytes(b"nor this")
    return folder


class Guard:
    """Snapshots ``victim``; ``check`` asserts it is unchanged and the output has no traceback."""

    def __init__(self, victim: Path):
        self.victim = victim
        self.before = snapshot(victim)

    def check(self, *procs: subprocess.CompletedProcess) -> None:
        TALLY.trial()
        TALLY.input()
        after = snapshot(self.victim)
        changed = sorted(set(after.items()) ^ set(self.before.items()))
        if changed:
            TALLY.outside += 1
        assert not changed, f"outside the repo changed: {changed}"
        for proc in procs:
            text = proc.stdout + proc.stderr
            assert "Traceback" not in text, text


def _mkfifo(path: Path) -> None:
    os.mkfifo(path)


def _socket(path: Path) -> socket.socket:
    """A listening Unix socket at ``path`` (bound from its folder: socket paths are short)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    cwd = os.getcwd()
    os.chdir(path.parent)
    try:
        sock.bind(path.name)
    finally:
        os.chdir(cwd)
    sock.listen(1)
    return sock


def plant(path: Path, kind: str, stack: contextlib.ExitStack) -> None:
    """Put a special file of ``kind`` at ``path`` (replacing what is there); it is removed
    when ``stack`` closes (the test's own checks then read the tree without blocking)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_symlink() or path.is_file():
        path.unlink()
    stack.callback(
        lambda: shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink(missing_ok=True)
    )
    if kind == "fifo":
        _mkfifo(path)
    elif kind == "socket":
        stack.callback(_socket(path).close)
    elif kind == "devzero":
        path.symlink_to("/dev/zero")
    elif kind == "directory":
        path.mkdir()
        (path / "inside.txt").write_text("x")
    else:
        raise AssertionError(kind)


# ------------------------------------------------------------------ the examples of the issue


def test_report_never_follows_a_key_that_is_a_path(built_repo, victim):
    """`report` deleted a directory outside the repo when an audition record's key was a path."""
    repo = built_repo
    guard = Guard(victim)
    auditions = repo.root / ".trackspec/auditions"
    auditions.mkdir(parents=True, exist_ok=True)
    take = {
        "take": 1,
        "seed": 5,
        "seconds": 1.0,
        "preview": False,
        "action": "generated",
        "keys": {"generation": str(victim), "render": str(victim / "sub")},
        "files": {"ogg": {"sha256": HEX, "bytes": 3}},
        "duration": 1.0,
        "sample_rate": 32000,
        "channels": 1,
    }
    (auditions / "alpha.json").write_text(json.dumps({"name": "alpha", "takes": [take]}))
    report = cli(repo, "report")
    pin = cli(repo, "pin", "alpha", "1")
    guard.check(report, pin)
    assert report.returncode == 0 and "alpha.json: audition record ignored" in report.stderr
    assert pin.returncode == 1 and "no audition" in pin.stderr


def test_init_and_first_state_write_ignore_the_state_folder(repo, tmp_path):
    """The state folder ignores itself in git from the first command that creates it
    (`init` wrote no ignore rule, so a cloned repo could carry a crafted one)."""
    new = tmp_path / "newgame"
    assert cli(repo, "init", "--root", str(new)).returncode == 0
    assert (new / ".trackspec/.gitignore").read_text().splitlines()[-1] == "*"
    assert not (repo.root / ".trackspec").exists()
    result = cli(repo, "build")  # no spec yet: nothing to generate, but the lock and state are made
    assert result.returncode == 0, result.stderr
    assert (repo.root / ".trackspec/.gitignore").read_text().splitlines()[-1] == "*"
    git = subprocess.run(["git", "init", "-q"], cwd=repo.root, capture_output=True)
    if git.returncode == 0:
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=all"], cwd=repo.root, capture_output=True, text=True
        ).stdout
        assert not [line for line in status.splitlines() if line[3:].startswith(".trackspec/")], status
    TALLY.trial()


# ------------------------------------------------------------------ links where trackspec writes

LINK_CASES = [
    "genre-folder",
    "report",
    "report-img",
    "report-audio",
    "state-folder",
    "staging",
    "cache-tmp",
    "published-file",
]


@pytest.mark.parametrize("where", LINK_CASES)
def test_links_out_of_what_trackspec_owns(built_repo, victim, where):
    """A link in any folder trackspec writes into, pointing outside: refused with a clear
    error for what it affects, nothing outside touched, the rest built."""
    repo = built_repo
    project = Project(repo)
    music = repo.root / "assets/music"
    guard = Guard(victim)
    if where == "genre-folder":
        (music / "combat").symlink_to(victim)
        project.specs["alpha"].genre = "combat"
        project.write()
        proc = build(repo)
        guard.check(proc)
        assert proc.returncode == 1 and "remove the link" in proc.stdout, proc.stdout + proc.stderr
        index = json.loads((music / "index.json").read_text())
        assert {"beta", "gamma"} <= set(index["tracks"])
        assert check_tree(repo.root) == []
        (music / "combat").unlink()
        assert build(repo).returncode == 0
        check_complete(repo.root)
    elif where.startswith("report"):
        report = music / ".report"
        if where == "report":
            report.symlink_to(victim)
        else:
            report.mkdir()
            (report / where.split("-")[1]).symlink_to(victim)
        proc = cli(repo, "report")
        guard.check(proc)
        assert proc.returncode == 1 and "remove the link" in proc.stderr, proc.stderr
    elif where in ("state-folder", "staging"):
        state = repo.root / ".trackspec"
        if where == "state-folder":
            import shutil

            shutil.rmtree(state)
            state.symlink_to(victim)
        else:
            import shutil

            shutil.rmtree(state / "tmp", ignore_errors=True)
            (state / "tmp").symlink_to(victim)
        project.specs["beta"].ogg_quality = 6
        project.write()
        proc = build(repo)
        guard.check(proc)
        assert proc.returncode != 0 and "remove the link" in proc.stdout + proc.stderr, proc.stdout + proc.stderr
        assert check_tree(repo.root) == []
    elif where == "cache-tmp":
        import shutil

        shutil.rmtree(repo.cache / "v1/tmp", ignore_errors=True)
        (repo.cache / "v1/tmp").symlink_to(victim)
        project.specs["beta"].ogg_quality = 6  # re-encodes: a new render entry is staged
        project.write()
        proc = build(repo)
        guard.check(proc)
        assert proc.returncode == 1 and "remove the link" in proc.stdout, proc.stdout + proc.stderr
        assert check_tree(repo.root) == []
    elif where == "published-file":
        published = music / "synthwave/alpha.ogg"
        published.unlink()
        published.symlink_to(victim / "alpha.ogg")  # replaced as a link, never written through
        project.specs["alpha"].ogg_quality = 6
        project.write()
        replaced = build(repo)
        published = music / "synthwave/beta.ogg"
        published.unlink()
        published.symlink_to(victim / "alpha.ogg")
        project.specs["beta"].present = False  # deleted as a link, never what it points to
        project.write()
        deleted = build(repo)
        guard.check(replaced, deleted)
        assert replaced.returncode == 0 and deleted.returncode == 0, replaced.stderr + deleted.stderr
        assert not published.exists() and not published.is_symlink()
        check_complete(repo.root)


# ------------------------------------------------------------------ crafted values in every file read


def _index_cases(victim: Path) -> dict[str, object]:
    outside = os.path.relpath(victim / "alpha.ogg", "/tmp")
    return {
        "track-not-a-table": lambda d: d["tracks"].__setitem__("a", 5),
        "files-ogg-empty": lambda d: d["tracks"]["alpha"]["files"].__setitem__("ogg", {}),
        "path-outside": lambda d: d["tracks"]["alpha"]["files"]["ogg"].__setitem__("path", f"../../../{outside}"),
        "path-absolute": lambda d: d["tracks"]["beta"]["files"]["ogg"].__setitem__("path", str(victim / "alpha.ogg")),
        "key-dot": lambda d: d["tracks"]["alpha"]["keys"].__setitem__("render", "."),
        "sha-path": lambda d: d["tracks"]["gamma"]["files"]["mp3"].__setitem__("sha256", "../../x"),
        "bytes-string": lambda d: d["tracks"]["gamma"]["files"]["mp3"].__setitem__("bytes", "many"),
        "name-path": lambda d: d["tracks"].__setitem__("../../x", d["tracks"]["alpha"]),
        "duration-nan": lambda d: d["tracks"]["beta"].__setitem__("duration", float("nan")),
        "deep": lambda d: d["tracks"]["beta"].__setitem__("meta", "DEEP"),  # made deep in the text
    }


#: Cases applied together touch different tracks, so none hides another.
INDEX_GROUPS = {
    "a": ["track-not-a-table", "files-ogg-empty", "path-absolute", "sha-path"],
    "b": ["path-outside", "duration-nan", "bytes-string", "name-path"],
    "c": ["key-dot"],
    "deep": ["deep"],
}


@pytest.mark.parametrize("group", list(INDEX_GROUPS))
def test_crafted_index_entries(built_repo, victim, group):
    """Malformed index entries: a warning naming the index, the track treated as not built
    (built again), never a traceback, a path followed or a key used; healed for good."""
    repo = built_repo
    guard = Guard(victim)
    index_path = repo.root / "assets/music/index.json"
    data = json.loads(index_path.read_text())
    for case in INDEX_GROUPS[group]:
        _index_cases(victim)[case](data)
        TALLY.input()
    index_path.write_text(json.dumps(data).replace('"DEEP"', "[" * 5000 + "]" * 5000))
    runs = [cli(repo, "plan"), cli(repo, "status"), cli(repo, "build", "--check"), build(repo), build(repo)]
    guard.check(*runs)
    if group == "deep":
        assert all(r.returncode == 2 and "nested more than" in r.stderr for r in runs), runs[0].stderr
        index_path.unlink()
        assert build(repo).returncode == 0
    else:
        assert [r.returncode for r in runs[3:]] == [0, 0], runs[3].stderr
        assert runs[3].stderr.count("treated as not built") == len(INDEX_GROUPS[group]), runs[3].stderr
        assert "treated as not built" not in runs[4].stderr  # healed, not "on every build forever"
    check_complete(repo.root, decode=group == "a")


def _take(**over) -> dict:
    take = {
        "take": 1,
        "seed": 5,
        "seconds": 1.0,
        "preview": False,
        "action": "generated",
        "keys": {"generation": HEX, "render": HEX},
        "files": {"ogg": {"sha256": HEX, "bytes": 3}},
        "duration": 1.0,
        "sample_rate": 32000,
        "channels": 1,
        "loop": None,
    }
    take.update(over)
    return take


RECORD_CASES = {
    "key-dot": {"name": "alpha", "takes": [_take(keys={"generation": ".", "render": "."})]},
    "key-dotdot": {"name": "alpha", "takes": [_take(keys={"generation": HEX, "render": "../../.."})]},
    "seconds-nan": {"name": "alpha", "takes": [_take(seconds=float("nan"))]},
    "take-huge": {"name": "alpha", "takes": [_take(take=10**30)]},
    "seed-string": {"name": "alpha", "takes": [_take(seed="5; rm -rf /")]},
    "rate-zero": {"name": "alpha", "takes": [_take(sample_rate=0)]},
    "loop-negative": {"name": "alpha", "takes": [_take(loop={"start": -5, "length": 1})]},
    "too-many-takes": {"name": "alpha", "takes": [_take(take=1)] * 1000},
    "other-name": {"name": "../beta", "takes": [_take()]},
    "not-a-record": [1, 2, 3],
}


def test_crafted_audition_records(built_repo, victim):
    """Every crafted audition record: ignored with a warning naming it; `report` and `pin`
    neither follow a key nor crash."""
    repo = built_repo
    guard = Guard(victim)
    auditions = repo.root / ".trackspec/auditions"
    auditions.mkdir(parents=True, exist_ok=True)
    runs = []
    for case, record in RECORD_CASES.items():
        (auditions / "alpha.json").write_text(json.dumps(record))
        pin = cli(repo, "pin", "alpha", "1")
        assert pin.returncode == 1 and "no audition" in pin.stderr, (case, pin.stderr)
        assert "alpha.json: audition record ignored" in pin.stderr, (case, pin.stderr)
        runs.append(pin)
        TALLY.input()
    (auditions / "alpha.json").write_text("[" * 100000)
    runs.append(cli(repo, "report"))
    guard.check(*runs)
    assert runs[-1].returncode == 0


def test_crafted_state_and_pending_note(built_repo, victim):
    """state.json and pending-removals.json are trackspec's own, but a crafted one may not
    make a build crash, or delete anything but a published audio file."""
    repo = built_repo
    guard = Guard(victim)
    state = repo.root / ".trackspec"
    toml = repo.root / "trackspec.toml"
    toml_digest = sha256(toml)
    outside = os.path.relpath(victim / "alpha.ogg", repo.root)
    cases = [
        ("state.json", {"version": 1, "files": {"x": 5, str(toml): [1, 2, 3, 4, "../x"]}, "tracks": {"alpha": 5}}),
        ("state.json", {"version": 1, "files": [], "tracks": {"../x": {"generation_inputs": 1}}}),
        ("state.json", "[" * 100000),
        ("pending-removals.json", [{"path": outside, "sha256": sha256(victim / "alpha.ogg")}]),
        ("pending-removals.json", [{"path": "trackspec.toml", "sha256": toml_digest}]),
        ("pending-removals.json", [{"path": str(victim / "alpha.ogg"), "sha256": HEX}, 5, None]),
    ]
    project = Project(repo)
    runs = []
    for i, (name, content) in enumerate(cases):
        (state / name).write_text(content if isinstance(content, str) else json.dumps(content))
        project.specs["gamma"].bpm = 100 + i  # a change: a full build, which replays the note
        project.write()
        runs.append(build(repo))
        assert runs[-1].returncode == 0, (name, runs[-1].stderr)
        assert sha256(toml) == toml_digest
        TALLY.input()
    guard.check(*runs)
    check_complete(repo.root)


def test_remote_manifests_and_object_names_are_checked(tmp_path):
    """A poisoned team cache: object names that are not keys ('.', a path) and manifests
    with crafted file names, digests or sizes are skipped or refused; the local cache is
    never replaced (`cache pull --all` with a '.' key replaced the whole render cache)."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from importer.cache import LocalCache, manifest_digest
    from importer.remote.store import ObjectInfo
    from importer.remote.tier import RemoteCorrupt, RemoteTier

    class DictStore:
        location = "mem://bucket"

        def __init__(self):
            self.objects: dict[str, bytes] = {}

        def get_bytes(self, name):
            return self.objects.get(name)

        def download(self, name, target):
            if name not in self.objects:
                return False
            Path(target).write_bytes(self.objects[name])
            return True

        def exists(self, name):
            return name in self.objects

        def put_if_absent(self, name, source):
            self.objects.setdefault(name, source if isinstance(source, bytes) else Path(source).read_bytes())
            return True

        def delete(self, name):
            self.objects.pop(name, None)

        def list(self, prefix):
            return iter([ObjectInfo(n, len(b), 0.0) for n, b in self.objects.items() if n.startswith(prefix)])

    cache = LocalCache(tmp_path / "cache")
    blob = tmp_path / "audio.ogg"
    blob.write_bytes(b"OggS audio")
    good = cache.put("render", "cd" * 32, {"audio.ogg": blob}, {"duration": 1.0})
    before = snapshot(tmp_path / "cache" / "v1" / "render")

    def manifest(key, files=None, info=None):
        body = {
            "kind": "render",
            "key": key,
            "info": info or {},
            "files": files or {"audio.ogg": {"sha256": good.digests["audio.ogg"], "bytes": 10}},
        }
        body["digest"] = manifest_digest(body)
        return json.dumps(body).encode()

    store = DictStore()
    store.objects[f"blobs/{good.digests['audio.ogg'][:2]}/{good.digests['audio.ogg']}"] = b"OggS audio"
    crafted = {
        "v1/render/..json": manifest("."),
        "v1/render/.json": manifest(""),
        "v1/render/...json": manifest(".."),
        "v1/render/x/../../raw/" + "ef" * 32 + ".json": manifest("ef" * 32),
        "v1/render/" + "AB" * 32 + ".json": manifest("AB" * 32),
        "v1/render/" + "01" * 32 + ".json": manifest("01" * 32, files={"../../escape": {"sha256": HEX, "bytes": 1}}),
        "v1/render/" + "02" * 32 + ".json": manifest("02" * 32, files={"audio.ogg": {"sha256": "../x", "bytes": 1}}),
        "v1/render/" + "03" * 32 + ".json": manifest("03" * 32, files={"audio.ogg": {"sha256": HEX, "bytes": True}}),
        "v1/render/" + "04" * 32 + ".json": b"[" * 200000,
        "v1/render/" + "05" * 32 + ".json": b"{" + b" " * (2 << 20) + b"}",
    }
    store.objects.update(crafted)
    tier = RemoteTier(store)
    assert tier.entries() == []  # every crafted entry skipped (with a warning), none listed
    for name in crafted:
        key = name.rsplit("/", 1)[-1][: -len(".json")]
        try:
            got = tier.fetch("render", key, cache)  # refused, or (a crafted name) not found
        except (RemoteCorrupt, ValueError):
            got = None
        assert got is None, name
        TALLY.input()
    TALLY.trial()
    assert snapshot(tmp_path / "cache" / "v1" / "render") == before
    assert cache.get("render", "cd" * 32) is not None


def test_crafted_daemon_requests(built_repo):
    """Requests as the daemon reads them: values checked like the CLI's arguments, special
    files never opened, stale results removed, directories left alone without blocking."""
    repo = built_repo
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from importer.config import load_config
    from importer.watch.requests import RESULT_SUFFIX, requests_dir, take_requests

    config = load_config(repo.root)
    folder = requests_dir(config)
    folder.mkdir(parents=True, exist_ok=True)
    bad = {
        "name": {"name": "../x", "takes": [1]},
        "takes-huge": {"name": "alpha", "takes": [10**9]},
        "takes-many": {"name": "alpha", "takes": list(range(1, 1000))},
        "takes-bool": {"name": "alpha", "takes": [True]},
        "seconds-nan": {"name": "alpha", "takes": [1], "seconds": float("nan")},
        "seconds-huge": {"name": "alpha", "takes": [1], "seconds": 1e9},
        "model-type": {"name": "alpha", "takes": [1], "model": 5},
        "not-a-dict": [1],
    }
    for i, (case, request) in enumerate(bad.items()):
        (folder / f"audition-{i:02d}-{case}.json").write_text(json.dumps(request))
    (folder / "audition-deep.json").write_text("[" * 100000)
    (folder / "audition-good.json").write_text(json.dumps({"name": "alpha", "takes": [1, 2], "seconds": 2}))
    with contextlib.ExitStack() as stack:
        for kind in ("fifo", "socket", "directory", "devzero"):
            plant(folder / f"audition-{kind}.json", kind, stack)
        stale = folder / f"audition-old{RESULT_SUFFIX}"
        stale.write_text("{}")
        os.utime(stale, (time.time() - 7200, time.time() - 7200))
        fresh = folder / f"audition-new{RESULT_SUFFIX}"
        fresh.write_text("{}")
        taken = dict(take_requests(config))
        good = taken.pop("audition-good")
        assert good == {"name": "alpha", "takes": [1, 2], "seconds": 2, "model": None, "cwd": None}
        assert all("invalid" in r for r in taken.values()), taken
        assert len(taken) == len(bad) + 4  # the directory is left alone
        assert sorted(p.name for p in folder.iterdir()) == ["audition-directory.json", fresh.name]
    TALLY.trial()
    TALLY.input(len(bad) + 5)


def test_one_deep_spec_fails_alone(built_repo, victim):
    """A 600-deep array in one spec's [meta] crashed the whole build with RecursionError."""
    repo = built_repo
    guard = Guard(victim)
    deep = repo.root / "track_specs/deep.trackspec"
    deep.write_text('prompt = "x"\nduration = 1.0\n[meta]\nx = ' + "[" * 600 + "]" * 600 + "\n")
    wide = repo.root / "track_specs/wide.trackspec"
    wide.write_text(
        'prompt = "x"\nduration = 1.0\n[meta]\n' + "".join(f"k{i} = {{a = {{b = 1}}}}\n" for i in range(50))
    )
    project = Project(repo)
    project.specs["alpha"].ogg_quality = 6
    project.write()
    runs = [cli(repo, "plan"), cli(repo, "build", "--check"), build(repo)]
    guard.check(*runs)
    for run in runs:
        assert (
            run.returncode == 1
            and "deep.trackspec" in run.stderr + run.stdout
            and "nested more than" in run.stderr + run.stdout
        ), run.stderr
    index = json.loads((repo.root / "assets/music/index.json").read_text())
    assert set(index["tracks"]) == {"alpha", "beta", "gamma", "wide"}  # the good specs were built
    assert index["tracks"]["alpha"]["files"]["ogg"]["sha256"] != ""


# ------------------------------------------------------------------ special files where files are opened

SPECIAL_PLACES = ["spec", "model-file", "licence-file", "index", "state", "pending", "audition-record", "noop-record"]
SPECIAL_KINDS = ["fifo", "socket", "devzero", "directory"]


def _special_trial(
    repo, tiny_model: Path, tmp_path: Path, place: str, kind: str, stack: contextlib.ExitStack
) -> list[subprocess.CompletedProcess]:
    root, state = repo.root, repo.root / ".trackspec"
    output = lambda r: r.stdout + r.stderr  # noqa: E731
    if place == "spec":
        plant(root / f"track_specs/odd-{kind}.trackspec", kind, stack)
        runs = [cli(repo, "plan", timeout=60), cli(repo, "build", "--check", timeout=60)]
        if kind == "fifo":
            runs.append(build(repo, timeout=120))
        if kind != "directory":
            assert all(r.returncode == 1 and f"odd-{kind}.trackspec" in output(r) for r in runs), output(runs[0])
        return runs
    if place in ("model-file", "licence-file"):
        model = tmp_path / f"model-{kind}"
        shutil.copytree(tiny_model, model)
        repo.env["TRACKSPEC_MODEL"] = str(model)
        plant(model / ("extra.bin" if place == "model-file" else "trackspec-model.toml"), kind, stack)
        runs = [cli(repo, "build", "--check", timeout=60)]
        if kind != "directory" or place == "licence-file":
            assert runs[0].returncode == 1 and "model" in output(runs[0]), output(runs[0])
        return runs
    if place == "index":
        plant(root / "assets/music/index.json", kind, stack)
        runs = [cli(repo, "plan", timeout=60)]
        assert runs[0].returncode == 2 and "index.json" in runs[0].stderr, runs[0].stderr
        return runs
    if place == "audition-record":
        plant(state / "auditions/alpha.json", kind, stack)
        runs = [cli(repo, "pin", "alpha", "1", timeout=60)]
        assert runs[0].returncode == 1 and "no audition" in runs[0].stderr, runs[0].stderr
        return runs
    name = {"state": "state.json", "pending": "pending-removals.json", "noop-record": "noop.marshal"}[place]
    plant(state / name, kind, stack)
    if place != "noop-record":
        project = Project(repo)
        project.specs["gamma"].bpm = 60 + SPECIAL_KINDS.index(kind)  # a full build (index update only)
        project.write()
    runs = [build(repo, timeout=120)]
    if kind == "directory" and place == "pending":
        assert runs[0].returncode == 1 and "directory is in the way" in runs[0].stderr, runs[0].stderr
    else:
        assert runs[0].returncode == 0, runs[0].stderr
    return runs


@pytest.mark.parametrize("place", SPECIAL_PLACES)
def test_special_files_never_block(built_repo, victim, tiny_model, tmp_path, place):
    """A FIFO, socket, /dev/zero link or directory wherever trackspec opens a file: a clear
    error for what it concerns (or it is skipped), never a hang (every run has a timeout)."""
    repo = built_repo
    guard = Guard(victim)
    runs: list[subprocess.CompletedProcess] = []
    for kind in SPECIAL_KINDS:
        with contextlib.ExitStack() as stack:
            runs += _special_trial(repo, tiny_model, tmp_path, place, kind, stack)
        TALLY.input()
        assert check_tree(repo.root) == [], kind
    guard.check(*runs)


# ------------------------------------------------------------------ concurrent gc and clear


def _churn(repo, stop: threading.Event, ran: list) -> None:
    """`cache gc --max-size 0` and `cache clear`, one after the other, until ``stop``."""
    n = 0
    while not stop.is_set():
        args = ("cache", "gc", "--max-size", "0") if n % 2 == 0 else ("cache", "clear")
        proc = cli(repo, *args, timeout=120)
        ran.append(proc)
        n += 1


def test_gc_and_clear_during_a_build(built_repo):
    """`cache gc --max-size 0` while a build ran failed most tracks with FileNotFoundError
    and lost freshly generated audio. Now a build pins what it restores, renders or just
    generated: every track finishes, generated once."""
    repo = built_repo
    project = Project(repo)
    project.specs["alpha"].seed = 77  # generates
    project.specs["beta"].ogg_quality = 6  # re-encodes cached raw audio
    project.specs["gamma"].genre = "combat"  # restores a cached render
    project.write()
    stop, ran = threading.Event(), []
    churner = threading.Thread(target=_churn, args=(repo, stop, ran))
    churner.start()
    try:
        proc = build(repo, "--json", timeout=600)
    finally:
        stop.set()
        churner.join()
    TALLY.trial()
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr and "FileNotFoundError" not in proc.stderr
    assert ran and all(r.returncode == 0 and "Traceback" not in r.stderr for r in ran)
    results = {t["name"]: t for t in json.loads(proc.stdout)["tracks"] if t["name"]}
    assert results["alpha"]["action"] == "generate" and not results["alpha"].get("error")
    assert all(not t.get("error") for t in results.values()), results
    check_complete(repo.root, decode=True)
    TALLY.survived()
    TALLY.input(len(ran))


def test_gc_and_clear_during_watch_generation(built_repo):
    """The same race against `trackspec watch`: its worker's fresh raw audio and the cycle
    that publishes it are pinned; the track is generated once and published."""
    repo = built_repo
    project = Project(repo)
    events = repo.root.parent / "events.jsonl"
    with open(events, "w") as out:
        daemon = popen_cli(repo, "watch", "--json", "--debounce", "50", stdout=out)
    stop, ran = threading.Event(), []
    churner = threading.Thread(target=_churn, args=(repo, stop, ran))
    try:
        deadline = time.monotonic() + 120
        while '"event": "watching"' not in events.read_text():
            assert daemon.poll() is None and time.monotonic() < deadline, daemon.stderr.read()
            time.sleep(0.05)
        churner.start()
        project.specs["alpha"].seed = 91
        project.write()
        index_path = repo.root / "assets/music/index.json"
        deadline = time.monotonic() + 400
        while True:
            try:
                if json.loads(index_path.read_text())["tracks"]["alpha"]["seed"] == 91:
                    break
            except (ValueError, KeyError, FileNotFoundError):
                pass
            assert daemon.poll() is None, daemon.stderr.read()
            assert time.monotonic() < deadline, "the daemon never published the new take"
            time.sleep(0.1)
    finally:
        stop.set()
        if churner.is_alive():
            churner.join()
        daemon.terminate()
        daemon.wait(120)
    stderr = daemon.stderr.read()
    TALLY.trial()
    assert "Traceback" not in stderr and "FileNotFoundError" not in stderr, stderr
    lines = [json.loads(line) for line in events.read_text().splitlines() if line.strip()]
    generated = [e for e in lines if e["event"] == "generated" and e.get("name") == "alpha"]
    assert len(generated) == 1, generated  # made once: nothing it generated was lost to gc
    assert not [e for e in lines if e["event"] == "finished" and e.get("error")]
    assert all(r.returncode == 0 for r in ran)
    assert build(repo).returncode == 0
    check_complete(repo.root, decode=True)
    TALLY.survived()
    TALLY.input(len(ran))
