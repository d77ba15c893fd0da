"""What the game repo's ``.gitignore`` files leave out, for spec discovery and ``watch``.

Engines keep large generated trees in the repo folder (Unity's ``Library/``, Godot's
``.godot/``, build output) that their ``.gitignore`` names; trackspec never searches them
for specs. Git's rules, for the files git itself reads in the work tree: every
``.gitignore`` from the repo root down to a folder, and ``.git/info/exclude``. A pattern
without a slash matches a name at any depth below its file, one with a slash is anchored to
its file's folder, a trailing slash matches folders only, ``!`` re-includes, ``*``, ``?``,
``[...]`` and ``**`` work as in git, and a later match (a deeper file, a later line) wins.
A folder that is ignored is not searched, so nothing under it can be re-included (git's
rule too). The user's global ``core.excludesFile`` is not read: what it names is personal.

Standard library only (``os``, ``re``); files are read once per walk.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

IGNORE_FILE = ".gitignore"
#: The repo's own exclude file (not committed), relative to the root.
EXCLUDE_FILE = os.path.join(".git", "info", "exclude")


@dataclass(frozen=True)
class Rule:
    regex: re.Pattern
    negate: bool
    dir_only: bool


def _translate(pattern: str) -> str:
    """A gitignore glob (no leading ``!``, no trailing ``/``) as a regex over a relative path."""
    anchored = "/" in pattern
    pattern = pattern.lstrip("/")
    out: list[str] = []
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        if c == "*" and pattern.startswith("**", i) and (i == 0 or pattern[i - 1] == "/"):
            end = i + 2
            if end == n:  # trailing "**": everything inside
                out.append(".*")
                i = end
                continue
            if pattern[end] == "/":  # "**/": zero or more folders
                out.append("(?:.*/)?")
                i = end + 1
                continue
        if c == "*":
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "[":
            close = pattern.find("]", i + 2 if pattern[i + 1 : i + 2] in ("!", "^", "]") else i + 1)
            if close == -1:
                out.append(re.escape(c))
            else:
                body = pattern[i + 1 : close]
                if body[:1] in ("!", "^"):
                    body = "^" + body[1:]
                out.append("[" + body.replace("\\", "\\\\") + "]")
                i = close
        elif c == "\\" and i + 1 < n:
            i += 1
            out.append(re.escape(pattern[i]))
        else:
            out.append(re.escape(c))
        i += 1
    body = "".join(out)
    return body if anchored else "(?:.*/)?" + body


def parse_rules(text: str) -> list[Rule]:
    """The rules of one ignore file, in order."""
    rules = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        stripped = line.rstrip(" ")
        if stripped.endswith("\\") and len(stripped) < len(line):
            stripped += " "  # "foo\ " keeps its escaped space
        line = stripped
        negate = line.startswith("!")
        if negate:
            line = line[1:]
        elif line.startswith("\\!") or line.startswith("\\#"):
            line = line[1:]
        dir_only = line.endswith("/")
        line = line.rstrip("/")
        if not line:
            continue
        try:
            rules.append(Rule(re.compile(_translate(line), re.DOTALL), negate, dir_only))
        except re.error:
            continue  # git skips what it cannot use as well
    return rules


def read_rules(path: str, read: list[str] | None = None) -> list[Rule]:
    """The rules in ``path`` (none if it cannot be read); ``read`` receives the path if it exists."""
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            text = fh.read()
    except OSError:
        return []
    if read is not None:
        read.append(path)
    return parse_rules(text)


class Ignores:
    """The ignore rules in force in one folder: its parents' and its own ``.gitignore``.

    ``read`` (shared down the tree) receives every ignore file read and the ``.git/info``
    folder: their stat says whether the rules can have changed (the no-op record).
    """

    def __init__(self, levels: tuple[tuple[str, list[Rule]], ...], read: list[str] | None):
        self.levels = levels
        self.read = read

    @classmethod
    def at_root(cls, root: str, read: list[str] | None = None) -> Ignores:
        info = os.path.join(root, os.path.dirname(EXCLUDE_FILE))
        if read is not None and os.path.isdir(info):
            read.append(info)  # an exclude file created later changes this folder
        rules = read_rules(os.path.join(root, EXCLUDE_FILE), read)
        rules += read_rules(os.path.join(root, IGNORE_FILE), read)
        return cls((("", rules),) if rules else (), read)

    @classmethod
    def for_folder(cls, root: str, folder: str, read: list[str] | None = None) -> Ignores:
        """The rules in force inside ``folder`` (a folder under ``root``), reading each level."""
        ignores = cls.at_root(root, read)
        rel = os.path.relpath(folder, root)
        if rel == ".":
            return ignores
        here = ""
        for part in rel.split(os.sep):
            here = f"{here}/{part}" if here else part
            ignores = ignores.descend(here, os.path.join(root, here), has_file=None)
        return ignores

    def descend(self, rel_folder: str, folder: str, has_file: bool | None) -> Ignores:
        """The rules inside ``rel_folder`` (relative to the root, ``/``-separated): these plus its
        ``.gitignore``. ``has_file``: whether the folder lists one (``None``: look)."""
        if has_file is False:
            return self
        rules = read_rules(os.path.join(folder, IGNORE_FILE), self.read)
        if not rules:
            return self
        return Ignores((*self.levels, (rel_folder, rules)), self.read)

    def ignored(self, rel_path: str, is_dir: bool) -> bool:
        """Is ``rel_path`` (relative to the root, ``/``-separated) ignored by these rules?

        Only the path itself is matched: callers do not descend into ignored folders.
        """
        verdict = False
        for base, rules in self.levels:
            if base:
                if not rel_path.startswith(base + "/"):
                    continue
                sub = rel_path[len(base) + 1 :]
            else:
                sub = rel_path
            for rule in rules:
                if rule.dir_only and not is_dir:
                    continue
                if rule.regex.fullmatch(sub):
                    verdict = not rule.negate
        return verdict


def path_ignored(root: str, path: str, is_dir: bool) -> bool:
    """Is ``path`` (under ``root``) in an ignored tree: itself or any folder above it ignored?"""
    rel = os.path.relpath(path, root)
    if rel == "." or rel.startswith(".." + os.sep) or rel == "..":
        return False
    parts = rel.split(os.sep)
    ignores = Ignores.at_root(root)
    here = ""
    for i, part in enumerate(parts):
        here = f"{here}/{part}" if here else part
        last = i == len(parts) - 1
        if ignores.ignored(here, is_dir or not last):
            return True
        if not last:
            ignores = ignores.descend(here, os.path.join(root, here), has_file=None)
    return False
