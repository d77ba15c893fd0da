"""Shared fixtures: a tiny MusicGen saved once per session, throwaway game repos, the real CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from gamerepo import PROJECT_ROOT, GameRepo


def _save_tiny(directory: Path, *flags: str) -> Path:
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}
    proc = subprocess.run(
        [sys.executable, "-m", "importer", "model", "tiny", str(directory), *flags],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
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


@pytest.fixture
def game_repo(tmp_path) -> GameRepo:
    root = tmp_path / "game"
    (root / "track_specs").mkdir(parents=True)
    (root / "trackspec.toml").write_text('specs = ["track_specs"]\n', encoding="utf-8")
    cache = tmp_path / "cache"
    env = {**os.environ, "TRACKSPEC_CACHE_DIR": str(cache), "PYTHONPATH": str(PROJECT_ROOT)}
    env.pop("TRACKSPEC_MODEL", None)
    return GameRepo(root, cache, env)


@pytest.fixture(scope="session")
def tiny_melody_model(tmp_path_factory) -> Path:
    """A tiny random MusicGen-Melody (`trackspec model tiny --melody DIR`)."""
    return _save_tiny(tmp_path_factory.mktemp("models") / "tiny-melody", "--melody")


@pytest.fixture(scope="session")
def tiny_stereo_melody_model(tmp_path_factory) -> Path:
    """The stereo MusicGen-Melody (`trackspec model tiny --stereo --melody DIR`)."""
    return _save_tiny(tmp_path_factory.mktemp("models") / "tiny-stereo-melody", "--stereo", "--melody")
