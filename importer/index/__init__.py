"""The asset index, the JSON file the game engine reads: its one owner.

- ``file``: reading and writing it (atomic, sorted keys; a broken index is an error, never a reset);
- ``entry``: the shape of an entry and where a track's files are published;
- ``transaction``: changing it while files are replaced, so that it never names a file whose
  sha256 does not match, in a few writes per batch;
- ``pending``: the journal of files unlisted but not yet deleted (replayed after a crash).
"""

from .entry import AUDIO_FACTS, index_entry, listed_paths, model_name, output_paths
from .file import (
    SCHEMA_PATH,
    SCHEMA_VERSION,
    EntryTexts,
    IndexFile,
    dump_index,
    empty_index,
    load_index,
    needs_rewrite,
    write_index,
)
from .transaction import IndexTransaction, files_intact

__all__ = [
    "AUDIO_FACTS",
    "EntryTexts",
    "IndexFile",
    "IndexTransaction",
    "needs_rewrite",
    "SCHEMA_PATH",
    "SCHEMA_VERSION",
    "dump_index",
    "empty_index",
    "files_intact",
    "index_entry",
    "listed_paths",
    "load_index",
    "model_name",
    "output_paths",
    "write_index",
]
