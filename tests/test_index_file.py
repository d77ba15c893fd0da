"""The index file: its bytes are the same whether entries are serialised anew or reused
(``EntryTexts``, the daemon's cache), and ``IndexFile`` reads it again whenever it changed."""

from __future__ import annotations

import json

from importer.index import EntryTexts, IndexFile, dump_index, empty_index, write_index


def sample(n: int) -> dict:
    index = empty_index()
    for i in range(n):
        index["tracks"][f"t{i:03d}-é"] = {
            "spec": 'specs/ü "' + str(i) + '".trackspec',
            "files": {"ogg": {"path": f"a/{i}.ogg", "sha256": "0" * 64, "bytes": i}},
            "meta": {"nested": {"list": [1, 2.5, None, {"x": []}], "empty": {}}, "text": "line\nbreak"},
            "loop": None,
            "duration": 1.5,
        }
    return index


def test_reused_entry_texts_give_the_same_bytes():
    texts = EntryTexts()
    for n in (0, 1, 7):
        index = sample(n)
        full = (json.dumps(index, sort_keys=True, indent=2, ensure_ascii=False) + "\n").encode()
        assert dump_index(index, texts) == full == dump_index(index)
        assert dump_index(index, texts) == full  # every entry from the cache this time
    index = sample(7)
    dump_index(index, texts)
    index["tracks"]["t003-é"] = {**index["tracks"]["t003-é"], "duration": 2.0}  # replaced, not mutated
    del index["tracks"]["t005-é"]
    assert dump_index(index, texts) == dump_index(index)
    assert json.loads(dump_index(index, texts))["tracks"]["t003-é"]["duration"] == 2.0


def test_index_file_rereads_what_another_process_wrote(tmp_path):
    path = tmp_path / "index.json"
    write_index(path, empty_index())
    cached = IndexFile(path)
    first = cached.load()
    cached.keep(first)
    assert cached.load() is first  # unchanged on disk: the same object, not parsed again
    path.write_text('{"schema_version": 1, "tracks": {}, "x": 1}')  # another process writes it (a new inode)
    again = cached.load()
    assert again is not first and again["x"] == 1
    cached.keep(again)
    cached.forget()
    assert cached.load() is not again


def test_a_write_skips_only_what_the_file_on_disk_already_says(tmp_path):
    path = tmp_path / "index.json"
    texts = EntryTexts()
    index = sample(3)
    assert write_index(path, index, texts=texts) is True
    assert write_index(path, index, texts=texts) is False  # as this process left it: compared in memory
    write_index(path, empty_index())  # another process rewrites it (a new file renamed into place)
    assert write_index(path, index, texts=texts) is True  # not fooled by what it wrote before
    assert json.loads(path.read_bytes()) == index
    path.write_bytes(b"{}")  # edited in place (same inode): the stat differs, so the file is read
    assert write_index(path, index, texts=texts) is True
    assert path.read_bytes() == dump_index(index)
