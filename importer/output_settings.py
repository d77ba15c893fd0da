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


def default_crossfade(bpm: float | None) -> float:
    """One bar of 4/4 when the tempo is known (a bar-long fade hides the seam inside the
    music's own phrase), else ``DEFAULT_CROSSFADE_SECONDS``."""
    if bpm is None:
        return DEFAULT_CROSSFADE_SECONDS
    if isinstance(bpm, bool) or not isinstance(bpm, (int, float)) or not math.isfinite(bpm) or bpm <= 0:
        raise ValueError(f"bpm must be a positive number, got {bpm!r}")
    return BEATS_PER_BAR * 60.0 / bpm
