"""The report's HTML: one self-contained page (inline CSS, no script, no network)."""

from __future__ import annotations

import html
import time
from typing import Any

from .. import __version__
from ..config import ProjectConfig
from ..overview import tempo_text
from .collect import Audio, TakeView, TrackView

CSS = """
body{background:#0f0f14;color:#e6e6f0;font:14px/1.45 system-ui,sans-serif;margin:0 auto;max-width:1100px;padding:24px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:18px;margin:0}a{color:#4cc9f0}
.sub{color:#8888a0;margin-bottom:20px}
section.track{background:#16161d;border:1px solid #26263a;border-radius:8px;margin:18px 0;padding:16px}
.head{display:flex;gap:12px;align-items:center;flex-wrap:wrap}
.state{border-radius:10px;font-size:12px;padding:2px 10px;font-weight:600}
.fresh{background:#1b4332;color:#95d5b2}.stale{background:#5c4400;color:#ffd166}
.failed{background:#5c0a1a;color:#ff8fa3}.removed{background:#333;color:#bbb}
.why{color:#ffd166;margin:6px 0}.error{color:#ff8fa3;white-space:pre-wrap;font-family:monospace;margin:6px 0}
dl{display:grid;grid-template-columns:max-content 1fr;gap:2px 14px;margin:10px 0}dt{color:#8888a0}dd{margin:0}
img{display:block;width:100%;border-radius:4px;margin:6px 0}
audio{width:100%;margin:4px 0}.label{color:#8888a0;font-size:12px;margin-top:8px}
.takes{display:grid;grid-template-columns:repeat(auto-fill,minmax(320px,1fr));gap:12px;margin-top:10px}
.take{background:#1d1d28;border:1px solid #2c2c40;border-radius:6px;padding:10px}
.take.pinned{border-color:#95d5b2}
code{background:#0f0f14;border:1px solid #2c2c40;border-radius:4px;padding:2px 6px;user-select:all}
"""


def render_page(config: ProjectConfig, tracks: list[TrackView]) -> str:
    counts = {state: sum(t.state == state for t in tracks) for state in ("fresh", "stale", "failed", "removed")}
    summary = ", ".join(f"{n} {state}" for state, n in counts.items() if n) or "no tracks"
    body = "\n".join(_track(t) for t in tracks)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,">
<title>trackspec report: {_e(config.root.name)}</title>
<style>{CSS}</style></head>
<body>
<h1>trackspec report: {_e(config.root.name)}</h1>
<div class="sub">{len(tracks)} track{"" if len(tracks) == 1 else "s"}: {summary}.
Written {time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())}
by trackspec {__version__}. Loop points are marked on the waveforms; "seam" plays the last seconds of the
loop flowing into the loop start (LOOPSTART), where a game jumps back to.</div>
{body}
</body></html>
"""


def _track(track: TrackView) -> str:
    title = track.name or track.spec
    parts = [
        f'<section class="track" id="{_e(title)}"><div class="head"><h2>{_e(title)}</h2>'
        f'<span class="state {_e(track.state)}">{_e(track.state)}</span>'
        f'<span class="sub">{_e(track.spec)}</span></div>'
    ]
    if track.error:
        parts.append(f'<div class="error">{_e(track.error)}</div>')
    elif track.reasons and track.state != "fresh":
        parts.append(f'<div class="why">{_e("; ".join(track.reasons))}</div>')
    if track.tempo is not None and track.tempo["warning"]:
        parts.append(
            f'<div class="why tempo-warning">measured tempo {_e(tempo_text(track.tempo))}: '
            "MusicGen did not keep the tempo asked for</div>"
        )
    if track.name is not None:
        parts.append(_facts(track))
    if track.audio is not None:
        parts.append(_audio_block(track.audio, track.name or "", with_spectrogram=True))
    elif track.name is not None:
        parts.append('<div class="label">no published audio yet: run <code>trackspec build</code></div>')
    if track.takes:
        parts.append(f'<div class="label">auditioned takes ({len(track.takes)})</div><div class="takes">')
        parts += [_take(track, take) for take in track.takes]
        parts.append("</div>")
    parts.append("</section>")
    return "\n".join(parts)


def _facts(track: TrackView) -> str:
    audio = track.audio
    loop = audio.loop if audio else None
    rows: list[tuple[str, Any]] = [
        ("duration", f"{audio.duration:.2f} s, {audio.sample_rate} Hz, {audio.channels} ch" if audio else None),
        ("loudness", f"{track.lufs:.1f} LUFS integrated" if track.lufs is not None else None),
        ("true peak", f"{track.true_peak:.1f} dBTP" if track.true_peak is not None else None),
        ("loop", _loop_text(loop, audio.sample_rate) if loop and audio else "no"),
        ("tempo", tempo_text(track.tempo) if track.tempo else "not measured"),
        ("model", track.model),
        ("seed", track.seed),
        ("licence", track.license),
        ("genre", track.genre),
    ]
    meta = track.meta or {}
    for key in sorted(meta):
        value = meta[key]
        rows.append((f"meta.{key}", ", ".join(map(str, value)) if isinstance(value, list) else value))
    items = "".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in rows if v is not None)
    return f"<dl>{items}</dl>"


def _loop_text(loop: dict[str, Any], rate: int) -> str:
    text = f"start {loop['start']} samples ({loop['start'] / rate:.3f} s), length {loop['length']} samples"
    if loop.get("bars"):
        text += f": {loop['bars']} bars at {loop['bpm']:g} BPM"
    return text


def _audio_block(audio: Audio, name: str, with_spectrogram: bool) -> str:
    parts = [f'<img src="{_e(audio.waveform)}" alt="waveform of {_e(name)}" width="1000" height="160">']
    if with_spectrogram:
        parts.append(f'<img src="{_e(audio.spectrogram)}" alt="spectrogram of {_e(name)}" width="1000" height="180">')
    parts.append(_player(audio.src, audio.duration, f"play {name}"))
    parts.append('<div class="label">loop seam: the end flowing into the loop start</div>')
    parts.append(_player(audio.seam, audio.seam_duration, f"seam of {name}"))
    return "\n".join(parts)


def _player(src: str, duration: float, label: str) -> str:
    return (
        f'<audio controls preload="metadata" src="{_e(src)}" data-expected-duration="{duration:.6f}" '
        f'aria-label="{_e(label)}"></audio>'
    )


def _take(track: TrackView, take: TakeView) -> str:
    name = track.name or ""
    pinned = " pinned" if take.pinned else ""
    facts = [f"seed {take.seed}"]
    if take.preview:
        facts.append(f"{take.seconds:g} s preview")
    if take.lufs is not None:
        facts.append(f"{take.lufs:.1f} LUFS")
    if take.true_peak is not None:
        facts.append(f"{take.true_peak:.1f} dBTP")
    parts = [
        f'<div class="take{pinned}" id="{_e(name)}-take-{take.take}"><strong>take {take.take}</strong>'
        f'{" (pinned)" if take.pinned else ""} <span class="sub">{_e(", ".join(facts))}</span>'
    ]
    if take.audio is not None:
        parts.append(_audio_block(take.audio, f"{name} take {take.take}", with_spectrogram=False))
    else:
        parts.append('<div class="why">no longer in the cache: audition again</div>')
    parts.append(f"<div>keep it: <code>trackspec pin {_e(name)} {take.take}</code></div></div>")
    return "\n".join(parts)


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)
