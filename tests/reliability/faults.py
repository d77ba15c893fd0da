"""A small game repo whose specs a fault trial mutates, and the real CLI run in subprocesses."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
from dataclasses import dataclass, field

TRACKS = ("alpha", "beta", "gamma")


@dataclass
class SpecState:
    """What each spec says now; ``render`` turns it into the file's text."""

    seed: int = 1
    genre: str = "synthwave"
    ogg_quality: int = 4
    bpm: int = 90
    present: bool = True

    def render(self, name: str) -> str:
        return (
            f'prompt = "{name} synth pad"\nduration = 1.0\nseed = {self.seed}\ngenre = "{self.genre}"\n'
            f'[output]\nformats = ["ogg", "mp3"]\nogg_quality = {self.ogg_quality}\n'
            f'loudness_profile = "none"\n[meta]\nbpm = {self.bpm}\n'
        )


@dataclass
class Project:
    """The repo's specs as a fault trial sees them: mutate, write, and name the spec set."""

    repo: object
    specs: dict[str, SpecState] = field(default_factory=lambda: {n: SpecState() for n in TRACKS})

    def write(self) -> None:
        for name, state in self.specs.items():
            path = self.repo.root / "track_specs" / f"{name}.trackspec"
            if state.present:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(state.render(name), encoding="utf-8")
            else:
                path.unlink(missing_ok=True)

    def signature(self) -> str:
        return json.dumps({n: vars(s) for n, s in self.specs.items() if s.present}, sort_keys=True)

    def mutate(self, rng: random.Random, kind: str | None = None) -> str:
        """One seeded change of ``kind`` (default: a cheap one, drawn); returns the kind.

        ``generate`` needs the model (slow on a CPU); the others restore, re-encode,
        rewrite the index, move or remove files, all without generating.
        """
        if kind is None:
            kind = rng.choices(CHEAP_KINDS, weights=[25, 20, 15, 25, 15])[0]
        name = rng.choice(TRACKS)
        state = self.specs[name]
        if kind == "generate":
            state.seed = max(s.seed for s in self.specs.values()) + 1  # audio never made before
            state.present = True
        elif kind == "encode":
            state.ogg_quality = rng.choice([q for q in (2, 4, 6) if q != state.ogg_quality])
        elif kind == "genre":
            state.genre = "combat" if state.genre == "synthwave" else "synthwave"
        elif kind == "meta":
            state.bpm = rng.randint(60, 180)
        elif kind == "toggle":
            state.present = not state.present
        elif kind == "index-lost":
            (self.repo.root / "assets/music/index.json").unlink(missing_ok=True)
        if not any(s.present for s in self.specs.values()):
            state.present = True
        self.write()
        return kind


CHEAP_KINDS = ["encode", "genre", "meta", "toggle", "index-lost"]


def popen_cli(repo, *args: str, stdout=subprocess.DEVNULL) -> subprocess.Popen:
    """The real CLI (``python -m importer``) as a child process of the test."""
    return subprocess.Popen(
        [sys.executable, "-m", "importer", *args],
        cwd=repo.root,
        env=repo.env,
        stdout=stdout,
        stderr=subprocess.PIPE,
        text=True,
    )


def pause(proc: subprocess.Popen, seconds: float) -> None:
    """Let ``seconds`` pass, or less if ``proc`` ends first: a fault schedule's pause."""
    try:
        proc.wait(seconds)
    except subprocess.TimeoutExpired:
        pass


def kill_after(proc: subprocess.Popen, delay: float, sig: int = signal.SIGKILL, timeout: float = 120) -> bool:
    """Send ``sig`` after ``delay`` seconds unless the process ended first; whether it was hit."""
    try:
        proc.wait(delay)
        return False
    except subprocess.TimeoutExpired:
        pass
    proc.send_signal(sig)
    proc.wait(timeout)
    return True


def build(repo, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "importer", "build", *args],
        cwd=repo.root,
        env=repo.env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
