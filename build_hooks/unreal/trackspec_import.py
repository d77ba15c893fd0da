"""Import the music trackspec builds into an Unreal Engine 5 project, as SoundWave assets.

Runs inside the Unreal Editor's Python (the Python Editor Script Plugin):

* in the editor: Tools > Execute Python Script..., or the Output Log's Python console:
  ``py "C:/game/build_hooks/unreal/trackspec_import.py"``
* headless (CI, a build machine)::

      UnrealEditor-Cmd MyGame.uproject -run=pythonscript
          -script="C:/game/build_hooks/unreal/trackspec_import.py --index C:/game/Audio/Music/index.json"

Every file the asset index lists (``trackspec build`` writes it; ``trackspec init --engine
unreal`` puts lossless WAV files in ``Audio/Music/``, outside ``Content/``) is imported or
re-imported with ``unreal.AssetImportTask`` (automated: no dialogs; replace existing; saved)
to ``<content>/<genre>/<name>`` (``--content``, default ``/Game/Music``), and the SoundWave's
``looping`` is set from the index (a track built with ``[output] loop = true`` loops).
Files whose sha256 is unchanged since the last import and whose asset still exists are
skipped; assets this script imported for tracks no longer listed are deleted. What it
imported is remembered in ``Saved/trackspec_import.json`` under the project folder.

Settings: ``--index PATH`` (or ``TRACKSPEC_INDEX``; default ``Audio/Music/index.json`` under
the project folder), ``--root PATH`` (the folder with trackspec.toml, which index paths are
relative to; or ``TRACKSPEC_ROOT``; default the index's folder's trackspec root, found by
walking up to trackspec.toml), ``--content /Game/Music``.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys

#: File formats Unreal imports as SoundWave, best first (it re-encodes them all).
FORMATS = ("wav", "flac", "ogg")
STATE_NAME = "trackspec_import.json"


def find_root(start: str) -> str | None:
    folder = os.path.abspath(start)
    while True:
        if os.path.isfile(os.path.join(folder, "trackspec.toml")):
            return folder
        parent = os.path.dirname(folder)
        if parent == folder:
            return None
        folder = parent


def parse_args(argv: list[str], project_dir: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="trackspec_import.py", description=__doc__.splitlines()[0])
    parser.add_argument("--index", default=os.environ.get("TRACKSPEC_INDEX")
                        or os.path.join(project_dir, "Audio", "Music", "index.json"))
    parser.add_argument("--root", default=os.environ.get("TRACKSPEC_ROOT"))
    parser.add_argument("--content", default="/Game/Music")
    if len(argv) == 1 and " " in argv[0]:  # -script="file.py --index ..." may arrive as one string
        argv = shlex.split(argv[0])
    return parser.parse_args(argv)


def pick_file(entry: dict) -> tuple[str, dict] | None:
    files = entry.get("files", {})
    for fmt in FORMATS:
        if fmt in files:
            return fmt, files[fmt]
    return None


def load_state(path: str) -> dict:
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def main(argv: list[str] | None = None, unreal=None) -> int:
    """Import the index's files; return the number of tracks imported (``unreal``: the module)."""
    if unreal is None:
        import unreal  # noqa: PLC0415 (only inside the editor)
    project_dir = os.path.abspath(unreal.Paths.convert_relative_path_to_full(unreal.Paths.project_dir()))
    args = parse_args(sys.argv[1:] if argv is None else argv, project_dir)
    index_path = os.path.abspath(args.index)
    try:
        with open(index_path, encoding="utf-8") as fh:
            index = json.load(fh)
    except (OSError, ValueError) as exc:
        unreal.log_error(f"trackspec: cannot read the music index {index_path}: {exc} (run trackspec build)")
        return -1
    root = os.path.abspath(args.root) if args.root else find_root(os.path.dirname(index_path))
    if root is None:
        unreal.log_error(f"trackspec: no trackspec.toml at or above {index_path}; pass --root")
        return -1
    content = args.content.rstrip("/")
    state_path = os.path.join(project_dir, "Saved", STATE_NAME)
    state = load_state(state_path)
    assets = unreal.EditorAssetLibrary

    tasks, wanted = [], {}
    for name, entry in sorted(index.get("tracks", {}).items()):
        picked = pick_file(entry)
        if picked is None:
            unreal.log_warning(f"trackspec: {name} has no {'/'.join(FORMATS)} file; skipped")
            continue
        _fmt, info = picked
        asset_path = f"{content}/{entry['genre']}/{name}"
        looping = isinstance(entry.get("loop"), dict)
        wanted[asset_path] = {"sha256": info["sha256"], "looping": looping}
        known = state.get(asset_path, {})
        if known == wanted[asset_path] and assets.does_asset_exist(asset_path):
            continue
        task = unreal.AssetImportTask()
        task.set_editor_property("filename", os.path.join(root, *info["path"].split("/")))
        task.set_editor_property("destination_path", f"{content}/{entry['genre']}")
        task.set_editor_property("destination_name", name)
        task.set_editor_property("automated", True)
        task.set_editor_property("replace_existing", True)
        task.set_editor_property("replace_existing_settings", False)  # keep what was set in the editor
        task.set_editor_property("save", True)
        tasks.append((asset_path, looping, task))

    if tasks:
        unreal.AssetToolsHelpers.get_asset_tools().import_asset_tasks([t for _, _, t in tasks])
    imported = 0
    for asset_path, looping, task in tasks:
        paths = list(task.get_editor_property("imported_object_paths") or [])
        wave = next((w for w in (assets.load_asset(p) for p in paths) if isinstance(w, unreal.SoundWave)), None)
        if wave is None:
            unreal.log_error(f"trackspec: importing {task.get_editor_property('filename')} made no SoundWave")
            wanted.pop(asset_path, None)
            continue
        wave.set_editor_property("looping", looping)
        assets.save_loaded_asset(wave, False)
        imported += 1
    for asset_path in sorted(set(state) - set(wanted)):  # tracks removed from the index
        if assets.does_asset_exist(asset_path):
            assets.delete_asset(asset_path)
    os.makedirs(os.path.dirname(state_path), exist_ok=True)
    with open(state_path, "w", encoding="utf-8") as fh:
        json.dump(wanted, fh, indent=1, sort_keys=True)
    unreal.log(f"trackspec: {imported} imported, {len(wanted) - imported} unchanged, from {index_path}")
    return imported


if __name__ == "__main__":
    main()
