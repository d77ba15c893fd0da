"""The throwaway game repo the benchmarks share: a trackspec.toml, a cache and a model."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "importer"]


def make_game_repo(tmp: Path, model: Path | None) -> tuple[Path, dict[str, str]]:
    """``(root, env)`` of a repo in ``tmp`` with its own cache, using ``model`` (or a tiny one made here)."""
    root = tmp / "game"
    (root / "track_specs").mkdir(parents=True)
    (root / "trackspec.toml").write_text('specs = ["track_specs"]\n')
    env = {**os.environ, "TRACKSPEC_CACHE_DIR": str(tmp / "cache"), "PYTHONPATH": str(PROJECT)}
    if model is None:
        model = tmp / "tiny"
        subprocess.run([*CLI, "model", "tiny", str(model)], env=env, check=True, capture_output=True)
    env["TRACKSPEC_MODEL"] = str(model.resolve())
    return root, env
