"""Shared fixtures: a tiny MusicGen saved once per session, throwaway game repos, the real CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[1]

#: Runs the CLI in a fresh interpreter and reports which heavy modules it imported.
_CLI_WRAPPER = textwrap.dedent("""
    import json, os, sys
    from importer.cli import main
    try:
        code = main(sys.argv[1:])
    except SystemExit as exc:
        code = exc.code
    heavy = sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'transformers', 'numpy', 'soxr',
                                                          'boto3', 'botocore', 'obstore'})
    with open(os.environ['TRACKSPEC_TEST_IMPORTS'], 'w') as fh:
        json.dump(heavy, fh)
    sys.exit(code)
""")


@dataclass
class CliResult:
    returncode: int
    stdout: str
    stderr: str
    imported: list[str]

    def json(self) -> dict:
        return json.loads(self.stdout)


def _save_tiny(directory: Path, *flags: str) -> Path:
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}
    proc = subprocess.run([sys.executable, "-m", "importer", "model", "tiny", str(directory), *flags],
                          capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert "noise, not music" in proc.stdout
    return directory


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """A tiny random MusicGen, saved by the real CLI (`trackspec model tiny DIR`)."""
    return _save_tiny(tmp_path_factory.mktemp("models") / "tiny")


@pytest.fixture(scope="session")
def tiny_stereo_model(tmp_path_factory) -> Path:
    """The stereo variant (8 interleaved codebooks), also saved by the CLI."""
    return _save_tiny(tmp_path_factory.mktemp("models") / "tiny-stereo", "--stereo")


@dataclass
class GameRepo:
    root: Path
    cache: Path
    env: dict

    def write_spec(self, name: str, text: str) -> Path:
        path = self.root / "track_specs" / f"{name}.trackspec"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text), encoding="utf-8")
        return path

    def run(self, *args: str, check_rc: int | None = None, timeout: float = 600) -> CliResult:
        imports_file = self.root.parent / f"imports-{os.getpid()}.json"
        env = {**self.env, "TRACKSPEC_TEST_IMPORTS": str(imports_file)}
        proc = subprocess.run([sys.executable, "-c", _CLI_WRAPPER, *args], cwd=self.root, env=env,
                              capture_output=True, text=True, timeout=timeout)
        imported = json.loads(imports_file.read_text()) if imports_file.exists() else []
        result = CliResult(proc.returncode, proc.stdout, proc.stderr, imported)
        if check_rc is not None:
            assert proc.returncode == check_rc, f"rc={proc.returncode}\n{proc.stdout}\n{proc.stderr}"
        return result

    def index(self) -> dict:
        return json.loads((self.root / "assets/music/index.json").read_text())


@pytest.fixture
def game_repo(tmp_path) -> GameRepo:
    root = tmp_path / "game"
    (root / "track_specs").mkdir(parents=True)
    (root / "trackspec.toml").write_text('specs = ["track_specs"]\n', encoding="utf-8")
    cache = tmp_path / "cache"
    env = {**os.environ, "TRACKSPEC_CACHE_DIR": str(cache), "PYTHONPATH": str(PROJECT_ROOT)}
    env.pop("TRACKSPEC_MODEL", None)
    return GameRepo(root, cache, env)
