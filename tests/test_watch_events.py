"""Which file events wake the daemon, and how they are debounced (no daemon process here)."""

from __future__ import annotations

import logging
import threading

import pytest

from importer.config import load_config
from importer.watch import events
from importer.watch.events import OverflowAlarm, Wakeups, is_relevant


@pytest.fixture
def config(tmp_path):
    (tmp_path / "trackspec.toml").write_text('specs = ["track_specs"]\n')
    (tmp_path / "track_specs").mkdir()
    return load_config(tmp_path)


@pytest.mark.parametrize(
    "name, relevant",
    [
        ("track_specs/a.trackspec", True),
        ("track_specs/deep/er/a.trackspec", True),
        ("trackspec.toml", True),
        ("track_specs/trackspec.toml", False),  # only the root's config counts
        ("track_specs/.a.trackspec.swp", False),  # vim swap
        ("track_specs/a.trackspec~", False),  # vim / emacs backup
        ("track_specs/4913", False),  # vim's write probe
        ("track_specs/a.trackspec___jb_tmp___", False),  # JetBrains safe write
        ("track_specs/a.trackspec___jb_old___", False),
        ("track_specs/.#a.trackspec", False),  # emacs lock
        ("track_specs/#a.trackspec#", False),  # emacs autosave
        ("track_specs/.goutputstream-XYZ", False),  # gedit
        ("track_specs/.hidden/a.trackspec", False),  # hidden folders are never searched
        ("other/a.trackspec", False),  # outside the spec folders
        ("assets/music/a.trackspec", False),
        (".git/a.trackspec", False),
        (".trackspec/tmp/a.trackspec", False),
    ],
)
def test_relevant_files(config, name, relevant):
    assert is_relevant(config, str(config.root / name), is_directory=False) is relevant


def test_relevant_folders(config):
    assert is_relevant(config, str(config.root / "track_specs" / "moved"), is_directory=True)
    assert not is_relevant(config, str(config.root / ".git" / "objects"), is_directory=True)
    assert not is_relevant(config, str(config.root / "assets" / "music"), is_directory=True)


class FakeClock:
    """``time`` as importer.watch.events sees it: ``monotonic`` says what the test set."""

    def __init__(self) -> None:
        self.now = 0.0

    def monotonic(self) -> float:
        return self.now


def test_changes_settle_after_the_debounce_and_come_out_once(monkeypatch):
    clock = FakeClock()
    monkeypatch.setattr(events, "time", clock)
    wakeups = Wakeups(debounce=1.0)
    waited: list = []
    waiter = threading.Thread(target=lambda: waited.append(wakeups.wait(lambda: False)))
    waiter.start()  # blocked: nothing to do yet
    for i in range(5):  # a burst, 0.25 s apart: each change restarts the debounce
        clock.now = 0.25 * i
        wakeups.changed(f"/x/{i % 2}.trackspec")
    clock.now = 1.0 + 0.75  # 0.75 s after the last change: not settled
    wakeups.poke("probe")  # wakes the waiter at once; it hands out changes only once settled
    waiter.join(10)
    assert not waiter.is_alive() and waited == [([], ["probe"])]
    clock.now = 1.0 + 1.0  # a whole debounce after the last change
    assert wakeups.wait(lambda: False) == (["/x/0.trackspec", "/x/1.trackspec"], [])  # each once
    assert wakeups.wait(lambda: True) is None  # stop requested: nothing more


def test_a_poke_wakes_at_once_and_stop_wins():
    wakeups = Wakeups(debounce=5.0)
    wakeups.changed("/x/a.trackspec")
    wakeups.poke("generation finished")
    assert wakeups.wait(lambda: False) == ([], ["generation finished"])  # the change still settles


def test_watchdogs_overflow_warning_asks_for_a_rescan():
    seen = []
    alarm = OverflowAlarm(seen.append)
    logger = logging.getLogger("watchdog")
    logger.addHandler(alarm)
    try:
        logging.getLogger("watchdog.observers.inotify_c").warning("Inotify queue overflowed; events were lost")
        logging.getLogger("watchdog.observers.inotify_c").warning("something else")
    finally:
        logger.removeHandler(alarm)
    assert len(seen) == 1 and "overflow" in seen[0]
