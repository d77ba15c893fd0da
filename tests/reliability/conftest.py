"""Fixtures and the summary line of the reliability suite (fault matrix and bad input).

Every test here drives the real CLI or daemon in subprocesses against a throwaway game
repo (``tests/conftest.py``: ``game_repo``, ``tiny_model``). Faults and inputs are
counted in ``TALLY``; the run ends with one line: trials, faults survived, inputs
tried, and assets lost or corrupted (a test that finds one also fails).
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from faults import Project
from invariants import TALLY


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    if not TALLY.used:
        return
    terminalreporter.write_line(
        f"reliability: trials={TALLY.trials} faults_survived={TALLY.faults_survived} "
        f"inputs_tried={TALLY.inputs} assets_lost_or_corrupted={TALLY.lost} "
        f"outside_touched={TALLY.outside} secrets_leaked={TALLY.leaked}"
    )


@pytest.fixture
def rng(request) -> random.Random:
    """A generator seeded from the test's name (``RELIABILITY_SEED`` shifts every seed)."""
    base = int(os.environ.get("RELIABILITY_SEED", "6"))
    return random.Random(f"{base}:{request.node.nodeid}")


@pytest.fixture
def repo(game_repo, tiny_model):
    """A game repo building with the tiny model, offline (nothing may reach the network)."""
    game_repo.env.update(
        {
            "TRACKSPEC_MODEL": str(tiny_model),
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            "TRACKSPEC_ENCODE_WORKERS": "1",
        }
    )
    return game_repo


@pytest.fixture(scope="session")
def built(tmp_path_factory, tiny_model) -> Path:
    """One real build of ``faults.Project``'s three tracks (repo and cache), made once:
    generating is the slow part, so tests that start from a built repo copy this one."""
    top = tmp_path_factory.mktemp("built-template")
    root, cache = top / "game", top / "cache"
    (root / "track_specs").mkdir(parents=True)
    (root / "trackspec.toml").write_text('specs = ["track_specs"]\n')
    Project(type("Repo", (), {"root": root})()).write()
    env = {
        **os.environ,
        "TRACKSPEC_CACHE_DIR": str(cache),
        "TRACKSPEC_MODEL": str(tiny_model),
        "PYTHONPATH": str(Path(__file__).parents[2]),
    }
    proc = subprocess.run([sys.executable, "-m", "importer", "build", "-q"], cwd=root, env=env, timeout=600)
    assert proc.returncode == 0
    return top


@pytest.fixture
def built_repo(repo, built):
    """``repo`` holding a copy of the ``built`` repo and its cache (specs as ``Project()`` writes them)."""
    shutil.rmtree(repo.root)
    shutil.copytree(built / "game", repo.root, symlinks=True)
    shutil.copytree(built / "cache", repo.cache)
    return repo
