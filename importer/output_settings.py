"""What a spec's ``[output]`` table asks of the audio, resolved to numbers.

Kept free of numpy and scipy: spec parsing (and so ``build --check``) resolves these
settings, while only rendering needs the signal processing in ``loudness`` and ``loop``.
"""

from __future__ import annotations

import math

#: Integrated loudness targets in LUFS: EBU R 128 broadcast/console level, the louder
#: levels usual on mobile and on the web (AES TD1004 streaming).
PROFILES: dict[str, float] = {"console": -23.0, "mobile": -18.0, "web": -16.0}
#: The profile that leaves the audio as generated.
NO_NORMALISATION = "none"
DEFAULT_PROFILE = "web"
#: Loop crossfade when the tempo is unknown.
DEFAULT_CROSSFADE_SECONDS = 2.0
#: Beats per bar for the one-bar default (MusicGen prompts rarely say; 4/4 is the norm).
BEATS_PER_BAR = 4


def target_for(profile: str | None, loudness: float | None) -> float | None:
    """The target in LUFS for a spec's settings: an explicit ``loudness`` wins over the
    profile; no profile means ``DEFAULT_PROFILE``; ``"none"`` means no normalisation (None)."""
    if loudness is not None:
        if isinstance(loudness, bool) or not isinstance(loudness, (int, float)) or not -70.0 < loudness <= 0.0:
            raise ValueError(f"loudness must be a number of LUFS in (-70, 0], got {loudness!r}")
        return float(loudness)
    name = DEFAULT_PROFILE if profile is None else profile
    if name == NO_NORMALISATION:
        return None
    if name not in PROFILES:
        allowed = ", ".join(repr(p) for p in (*PROFILES, NO_NORMALISATION))
        raise ValueError(f"unknown loudness profile {profile!r}; expected one of {allowed}")
    return PROFILES[name]


#: Measured and declared tempos further apart than this (relative) are warned about.
TEMPO_WARN_FRACTION = 0.03


def default_crossfade(bpm: float | None, bar_beats: int = BEATS_PER_BAR) -> float:
    """One bar (of ``bar_beats`` beats) when the tempo is known (a bar-long fade hides the seam
    inside the music's own phrase), else ``DEFAULT_CROSSFADE_SECONDS``."""
    if bpm is None:
        return DEFAULT_CROSSFADE_SECONDS
    return bar_beats * 60.0 / declared_bpm(bpm)


def declared_bpm(bpm: object) -> float:
    """``meta.bpm`` as a tempo: a positive finite number."""
    if isinstance(bpm, bool) or not isinstance(bpm, (int, float)) or not math.isfinite(bpm) or bpm <= 0:
        raise ValueError(f"bpm must be a positive number, got {bpm!r}")
    return float(bpm)


def with_declared(tempo: dict | None, meta: dict) -> dict | None:
    """An index ``tempo`` entry with ``declared`` taken from the spec's current ``meta.bpm``
    (``[meta]`` is in no key, so an edit of it re-indexes without re-rendering)."""
    if not isinstance(tempo, dict):
        return tempo
    bpm = meta.get("bpm")
    try:
        declared = declared_bpm(bpm) if bpm is not None else None
    except ValueError:
        declared = None
    return {**tempo, "declared": declared}


def tempo_difference(tempo: dict | None) -> float | None:
    """(measured - declared) / declared of an index ``tempo`` entry; ``None`` without both."""
    if not isinstance(tempo, dict) or not tempo.get("declared") or not tempo.get("bpm"):
        return None
    return (float(tempo["bpm"]) - float(tempo["declared"])) / float(tempo["declared"])
