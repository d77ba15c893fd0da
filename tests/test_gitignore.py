"""Repo-wide spec discovery follows git's ignore rules (importer/gitignore.py), on real folders."""

from __future__ import annotations

from pathlib import Path

import pytest

from importer.gitignore import Ignores, parse_rules, path_ignored
from importer.spec import discover_specs


@pytest.mark.parametrize(
    "patterns, path, is_dir, ignored",
    [
        ("Library/\n", "Library", True, True),
        ("Library/\n", "Library", False, False),  # a trailing slash matches folders only
        ("Library/\n", "game/Library", True, True),  # no slash: any depth
        ("/Library/\n", "game/Library", True, False),  # a leading slash anchors
        ("[Ll]ibrary/\n", "library", True, True),
        ("*.tmp\n!keep.tmp\n", "a/keep.tmp", False, False),  # a later negation re-includes
        ("*.tmp\n!keep.tmp\n", "a/x.tmp", False, True),
        ("build/**/gen\n", "build/gen", True, True),  # ** matches zero folders
        ("build/**/gen\n", "build/a/b/gen", True, True),
        ("doc/*.txt\n", "doc/a/b.txt", False, False),  # * does not cross a slash
        ("# comment\n\n\\#hash\n", "#hash", False, True),
        ("a\\ \n", "a ", False, True),  # an escaped trailing space is kept
    ],
)
def test_rules_follow_git(patterns, path, is_dir, ignored):
    assert Ignores((("", parse_rules(patterns)),), None).ignored(path, is_dir) is ignored


def test_discovery_prunes_ignored_trees_and_reports_the_ignore_files_it_read(tmp_path):
    root = tmp_path
    for rel in (
        "music/boss.trackspec",
        "Library/cache/a.trackspec",
        "game/bin/b.trackspec",
        "game/levels/forest.trackspec",
        "game/levels/old.trackspec",
        "notes/x.trackspec",
        ".hidden/h.trackspec",
        "assets/music/z.trackspec",
    ):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text("")
    (root / ".gitignore").write_text("Library/\nbin/\n")
    (root / "game" / ".gitignore").write_text("old.trackspec\n")
    (root / ".git" / "info").mkdir(parents=True)
    (root / ".git" / "info" / "exclude").write_text("/notes/\n")
    walked: list[Path] = []
    found = [p.relative_to(root).as_posix() for p in discover_specs(root, [root], [root / "assets/music"], walked)]
    assert found == ["game/levels/forest.trackspec", "music/boss.trackspec"]
    assert not any(part in ("Library", "bin", "notes") for p in walked for part in p.relative_to(root).parts)
    # What the no-op record stats: every folder listed, each ignore file read, and .git/info
    # (an exclude file created later changes it).
    assert {root / ".gitignore", root / "game" / ".gitignore", root / ".git/info/exclude", root / ".git/info"} <= set(
        walked
    )
    # An explicit spec folder the repo ignores holds no sources; one it does not is searched.
    assert list(discover_specs(root, [root / "Library"], [])) == []
    assert [p.name for p in discover_specs(root, [root / "game"], [])] == ["forest.trackspec"]
    assert path_ignored(str(root), str(root / "game/bin/b.trackspec"), False)
    assert not path_ignored(str(root), str(root / "game/levels/forest.trackspec"), False)
