"""`trackspec report` end to end, looked at in real headless Chromium (Debian's package,
driven by Playwright): the page loads from disk with no console error and no failed or
remote request, every track and take has its pictures and a playable <audio> whose
duration is the track's, and the states say what `status` says."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from helpers import sha256
from test_watch import daemons  # noqa: F401  (the fixture: a real `trackspec watch --json`)

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
#: Chromium's flags as the issue gives them (Playwright adds --headless and the user data dir).
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
#: Chromium reads an Ogg Vorbis file's duration from its last granule position: a few ms over.
DURATION_TOLERANCE = 0.02

LOOPED = """\
prompt = "calm synth pad"
duration = 2.0
seed = 11

[output]
loop = true
loop_crossfade = 0.5

[meta]
bpm = 90
key = "D minor"
tags = ["calm", "space"]
"""

PLAIN = """\
prompt = "driving bass"
duration = 1.5
seed = 12
"""

BROKEN = """\
prompt = "never built"
duration = "long"
"""


@pytest.fixture
def repo(game_repo, tiny_model):
    game_repo.env["TRACKSPEC_MODEL"] = str(tiny_model)
    game_repo.write_spec("calm", LOOPED)
    game_repo.write_spec("drive", PLAIN)
    return game_repo


@pytest.fixture
def browser_page(tmp_path):
    """A fresh headless Chromium page, with what it logged and requested collected."""
    if CHROMIUM is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed: .ci/install should have installed it")
        pytest.skip("chromium is not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"), executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS
        )
        page = context.new_page()
        page.problems, page.requests = [], []
        page.on("console", lambda m: m.type in ("error", "warning") and page.problems.append(f"{m.type}: {m.text}"))
        page.on("pageerror", lambda e: page.problems.append(f"page error: {e}"))
        page.on("requestfailed", lambda r: page.problems.append(f"failed: {r.url} {r.failure}"))
        page.on("request", lambda r: page.requests.append(r.url))
        try:
            yield page
        finally:
            context.close()


def open_report(page, path: Path) -> None:
    page.goto(path.as_uri())
    page.wait_for_function(
        "Array.from(document.querySelectorAll('audio')).every(a => a.readyState >= 1 || a.error)"
        " && Array.from(document.images).every(i => i.complete)",
        timeout=30000,
    )


def players(page, selector: str = "body") -> list[dict]:
    return page.eval_on_selector(
        selector,
        """root => Array.from(root.querySelectorAll('audio')).map(a => ({
        src: a.getAttribute('src'), duration: a.duration, expected: parseFloat(a.dataset.expectedDuration),
        error: a.error && a.error.code, ready: a.readyState}))""",
    )


def facts(page, selector: str) -> dict[str, str]:
    """The track's facts list (<dt>name</dt><dd>value</dd>) as a dict."""
    return page.eval_on_selector(
        selector,
        """root => Object.fromEntries(Array.from(root.querySelectorAll(':scope > dl dt'))
        .map(dt => [dt.textContent, dt.nextElementSibling.textContent]))""",
    )


def images(page, selector: str = "body") -> list[dict]:
    return page.eval_on_selector(
        selector,
        """root => Array.from(root.querySelectorAll('img')).map(i => ({
        src: i.getAttribute('src'), width: i.naturalWidth, height: i.naturalHeight}))""",
    )


def test_the_report_loads_cleanly_and_every_track_and_take_can_be_seen_and_played(repo, browser_page, tmp_path):
    repo.run("build", check_rc=0)
    takes = repo.run("audition", "calm", "--takes", "2", "--json", check_rc=0).json()["takes"]
    repo.write_spec("drive", PLAIN.replace("driving bass", "driving bass, faster"))  # now stale
    repo.write_spec("broken", BROKEN)
    index = repo.index()["tracks"]

    result = repo.run("report", check_rc=1)  # a spec has an error: the page still shows everything
    page_path = Path(result.stdout.strip())
    assert page_path == repo.root / "assets/music/.report/index.html" and page_path.is_file()
    assert "torch" not in result.imported

    page = browser_page
    open_report(page, page_path)
    assert page.problems == []
    assert all(url.startswith(("file://", "data:")) for url in page.requests), page.requests  # no network

    calm, drive, broken = "section#calm", "section#drive", "section[id='track_specs/broken.trackspec']"
    assert page.inner_text(f"{calm} .state") == "fresh"
    assert page.inner_text(f"{drive} .state") == "stale"
    assert "prompt changed" in page.inner_text(f"{drive} .why")
    assert page.inner_text(f"{broken} .state") == "failed"
    assert "duration" in page.inner_text(f"{broken} .error")

    for section, name in ((calm, "calm"), (drive, "drive")):
        entry = index[name]
        shown = facts(page, section)
        assert (
            shown["loudness"]
            == f"{min(f['integrated'] for f in entry['loudness']['files'].values()):.1f} LUFS integrated"
        )
        assert shown["true peak"] == f"{max(f['true_peak'] for f in entry['loudness']['files'].values()):.1f} dBTP"
        assert shown["seed"] == str(entry["seed"]) and shown["licence"] == entry["license"]
        assert shown["duration"].startswith(f"{entry['duration']:.2f} s, 44100 Hz")
        main, seam = players(page, section)[:2]
        assert main["src"] == f"../synthwave/{name}.ogg"
        assert main["expected"] == pytest.approx(entry["duration"])
    calm_facts = facts(page, calm)
    loop = index["calm"]["loop"]
    assert (
        calm_facts["loop"].startswith(f"start {loop['start']} samples")
        and f"length {loop['length']}" in calm_facts["loop"]
    )
    assert calm_facts["meta.tags"] == "calm, space" and calm_facts["meta.key"] == "D minor"
    assert facts(page, drive)["loop"] == "no"

    every_player = players(page)
    # calm: track + seam, 2 takes x (take + seam); drive: track + seam.
    assert len(every_player) == 2 + 2 * 2 + 2
    for player in every_player:
        assert player["error"] is None and player["ready"] >= 1, player
        assert abs(player["duration"] - player["expected"]) <= DURATION_TOLERANCE, player
    seams = [p for p in every_player if p["src"].endswith("-seam.ogg")]
    # A track under 4 s: the seam clip takes half the loop from each side of the wrap.
    assert len(seams) == 4 and all(p["expected"] == pytest.approx(1.5) for p in seams)
    pictures = images(page)
    assert len(pictures) == 2 + 2 + 2  # calm and drive: waveform + spectrogram; one waveform per take
    assert all(p["width"] > 0 and p["height"] > 0 for p in pictures)

    for take in takes:
        card = f"[id='calm-take-{take['take']}']"
        [player, _seam] = players(page, card)
        assert player["expected"] == pytest.approx(take["duration"])
        copy = page_path.parent / player["src"]
        assert sha256(copy) == take["files"]["ogg"]["sha256"]  # the take's own file, copied beside the page
        assert f"trackspec pin calm {take['take']}" in page.inner_text(card)

    screenshot = tmp_path / "report.png"
    page.screenshot(path=str(screenshot), full_page=True)
    assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and screenshot.stat().st_size > 20_000


def test_the_report_is_ignored_by_git_and_redraws_only_what_changed(repo):
    repo.run("build", check_rc=0)
    repo.run("report", check_rc=0)
    folder = repo.root / "assets/music/.report"
    drawn = {p.name: p.stat().st_mtime_ns for p in (folder / "img").iterdir()}
    assert len(drawn) == 4

    repo.run("report", check_rc=0)
    assert {p.name: p.stat().st_mtime_ns for p in (folder / "img").iterdir()} == drawn

    repo.write_spec("drive", PLAIN.replace("seed = 12", "seed = 13"))
    repo.run("build", check_rc=0)
    repo.run("report", check_rc=0)
    now = {p.name: p.stat().st_mtime_ns for p in (folder / "img").iterdir()}
    assert len(now) == 4 and len(set(now) & set(drawn)) == 2  # calm's kept, drive's old ones removed

    subprocess.run(["git", "init", "-q"], cwd=repo.root, check=True)
    status = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=all"],
        cwd=repo.root,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "assets/music/index.json" in status and ".report" not in status


def test_watch_report_keeps_the_page_current(repo, daemons):  # noqa: F811
    daemon = daemons(repo, "--report")
    page = repo.root / "assets/music/.report/index.html"
    try:
        daemon.wait_for(lambda e: e["event"] == "note" and "report written" in e["message"])
        assert 'id="calm"' in page.read_text() and 'id="lead"' not in page.read_text()
        mark = daemon.mark()
        repo.write_spec("lead", PLAIN.replace("seed = 12", "seed = 14"))
        published = daemon.finished("lead", after=mark, ok=True)
        daemon.wait_for(
            lambda e: e["event"] == "note" and "report written" in e["message"], after=daemon.events.index(published)
        )
        assert 'id="lead"' in page.read_text()
    finally:
        assert daemon.stop() == 0


def test_open_hands_the_page_to_the_default_browser(repo, tmp_path):
    opened = tmp_path / "opened.txt"
    browser = tmp_path / "fake-browser"
    browser.write_text(f'#!/bin/sh\necho "$1" > {opened}\n')
    browser.chmod(0o755)
    repo.env["BROWSER"] = f"{browser} %s"  # Python's webbrowser honours $BROWSER, as xdg-open does
    result = repo.run("report", "--open", check_rc=0)
    page = Path(result.stdout.strip())
    assert opened.read_text().strip() == page.as_uri()


def test_a_repo_never_built_gets_a_page_that_says_so(repo):
    result = repo.run("report", check_rc=0)
    assert "torch" not in result.imported and "numpy" not in result.imported  # nothing to draw
    page = Path(result.stdout.strip()).read_text()
    assert page.count('<span class="state stale">stale</span>') == 2
    assert page.count("no published audio yet") == 2 and "<audio" not in page
    assert not (repo.root / "assets/music/.report/img").exists()
