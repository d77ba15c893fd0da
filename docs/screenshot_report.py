"""Make docs/report.png: the bundled example's report, with three auditioned takes.

Run from the project root (takes about a minute on a 2-core CPU with the tiny model):
    .venv/bin/trackspec model tiny models/tiny   # once
    .venv/bin/python docs/screenshot_report.py
It works on a copy of the example repo in a temp folder, so nothing here changes.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TRACK = "phase1_calm_improved"


def trackspec(repo: Path, *args: str) -> str:
    cmd = [sys.executable, "-m", "importer", *args, "--model", str(ROOT / "models/tiny")]
    return subprocess.run(cmd, cwd=repo, check=args[0] != "report", capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}).stdout


def main() -> None:
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as tmp:
        repo = Path(tmp) / "game"
        repo.mkdir()
        shutil.copy(ROOT / "trackspec.toml", repo)
        shutil.copytree(ROOT / "track_specs", repo / "track_specs")
        trackspec(repo, "build", "-q")
        trackspec(repo, "audition", TRACK, "--takes", "3", "--seconds", "10")
        page_path = Path(trackspec(repo, "report").strip())
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=shutil.which("chromium"), args=[
                "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync"])
            page = browser.new_page(viewport={"width": 1150, "height": 900})
            page.goto(page_path.as_uri())
            page.wait_for_function("Array.from(document.querySelectorAll('audio')).every(a => a.readyState >= 1)")
            page.screenshot(path=str(ROOT / "docs/report.png"), full_page=True)
            browser.close()
    print(ROOT / "docs/report.png")


if __name__ == "__main__":
    main()
