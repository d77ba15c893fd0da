"""Credentials never appear in any output channel (issue 16): console, ``-v`` logs (botocore
printed the session token in its debug log), ``--json``, the index, the report, the state
folder and exception messages; a URL with a password in ``trackspec.toml`` is refused
without echoing it. Against a real S3 server (SeaweedFS ``weed mini`` on loopback)."""

from __future__ import annotations

import sys
import textwrap
import uuid
from pathlib import Path

import pytest
from invariants import TALLY
from seaweed import SeaweedServer, free_ports

pytestmark = pytest.mark.timeout(900)

TOKEN = "FwoGZXIvYXdzEXAMPLESESSIONTOKENdoNotPrint0123456789"
PASSWORD = "hunter2-DoNotPrint"
SPEC = 'prompt = "secret pad"\nduration = 1.0\nseed = 4\n[output]\nformats = ["ogg"]\nloudness_profile = "none"\n'


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    server = SeaweedServer(tmp_path_factory.mktemp("seaweed-secrets")).start()
    yield server
    server.stop()


def _repo(repo, endpoint: str, push: bool) -> None:
    bucket = f"ts-{uuid.uuid4().hex[:12]}"
    (repo.root / "trackspec.toml").write_text(
        textwrap.dedent(f"""\
        specs = ["track_specs"]
        [cache.remote]
        url = "s3://{bucket}/team"
        endpoint_url = "{endpoint}"
        region = "us-east-1"
        push = {str(push).lower()}
        timeout = 5
        """)
    )
    repo.write_spec("calm", SPEC)


def _leaks(texts: dict[str, str], secrets: list[str]) -> list[str]:
    found = [f"{secret[:6]}... in {where}" for where, text in texts.items() for secret in secrets if secret in text]
    TALLY.leaked += len(found)
    return found


def _written(root: Path) -> dict[str, str]:
    """Every file trackspec wrote in the repo (index, report, state), as text."""
    found = {}
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink() and path.suffix in (".json", ".html", ".marshal", ".txt", ""):
            found[str(path.relative_to(root))] = path.read_bytes().decode("utf-8", "replace")
    return found


def test_password_in_a_url_is_refused_and_never_echoed(repo):
    down = free_ports(1)[0]
    _repo(repo, f"http://someone:{PASSWORD}@127.0.0.1:{down}", push=False)
    runs = {
        args: repo.run(*args.split())
        for args in ("build --check", "doctor", "doctor --json", "build -v", "cache ls --remote", "plan")
    }
    texts = {f"{args} {stream}": getattr(r, stream) for args, r in runs.items() for stream in ("stdout", "stderr")}
    assert _leaks(texts, [PASSWORD]) == []
    for args, result in runs.items():
        TALLY.trial()
        TALLY.input()
        assert "Traceback" not in result.stderr + result.stdout
        if args != "doctor --json" and args != "doctor":
            assert result.returncode == 2, (args, result.stderr)
            assert "user name or password" in result.stderr and "cache.remote.endpoint_url" in result.stderr


def test_credentials_in_no_output_channel(repo, s3, tiny_model):
    """A session token and a secret key in the environment (the standard AWS chain): a
    verbose build pushing to the bucket, doctor, cache ls/push/pull; none of console, logs,
    JSON, the index or the state folder holds them."""
    _repo(repo, s3.endpoint, push=True)
    repo.env.update({**s3.env("rw"), "TRACKSPEC_MODEL": str(tiny_model), "HF_HUB_OFFLINE": "1"})
    secret = repo.env["AWS_SECRET_ACCESS_KEY"]
    secrets = [secret, TOKEN]
    runs = {}
    # Without a token first: the build really pushes (the token would be refused by the server).
    runs["build -v --json"] = repo.run("build", "-v", "--json")
    assert runs["build -v --json"].returncode == 0, runs["build -v --json"].stderr
    repo.env["AWS_SESSION_TOKEN"] = TOKEN  # now every request carries it (and is refused: an error path)
    (repo.root / "track_specs/calm.trackspec").write_text(SPEC.replace('formats = ["ogg"]', 'formats = ["mp3"]'))
    for args in (
        "build -v",
        "doctor",
        "doctor --json",
        "cache ls --remote --json",
        "cache push --all",
        "cache pull --all",
    ):  # the build re-encodes and pushes: refused with the token
        runs[args] = repo.run(*args.split())
    texts = {f"{args} {stream}": getattr(r, stream) for args, r in runs.items() for stream in ("stdout", "stderr")}
    texts.update(_written(repo.root))
    assert any("botocore" in t or "team cache" in t for t in texts.values())  # the remote was really used
    assert _leaks(texts, secrets) == []
    for args, result in runs.items():
        TALLY.trial()
        TALLY.input()
        assert "Traceback" not in result.stderr, (args, result.stderr)


def test_redaction_filter_covers_third_party_debug_logs(monkeypatch, capsys):
    """The CLI's logging setup: botocore/urllib3 debug records are dropped below WARNING and
    every record (any logger) is redacted of URL passwords and secret environment values."""
    import logging

    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from importer import cli

    monkeypatch.setenv("AWS_SESSION_TOKEN", TOKEN)
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    root.handlers = []
    try:
        cli._configure_logging(verbose=True)
        logging.getLogger("botocore.endpoint").debug("headers: X-Amz-Security-Token: %s", TOKEN)
        logging.getLogger("urllib3.connectionpool").debug("GET http://u:%s@host/", PASSWORD)
        logging.getLogger("importer.remote").warning("retrying with %s at http://u:%s@host/x", TOKEN, PASSWORD)
        try:
            raise RuntimeError(f"token {TOKEN}")
        except RuntimeError:
            logging.getLogger("importer.build").exception("failed")
    finally:
        for handler in root.handlers:
            handler.close()
        root.handlers, _ = saved
        root.setLevel(saved[1])
    err = capsys.readouterr().err
    TALLY.trial()
    assert "retrying with <AWS_SESSION_TOKEN> at http://***@host/x" in err
    assert _leaks({"log": err}, [TOKEN, PASSWORD]) == []
    assert "X-Amz-Security-Token" not in err
