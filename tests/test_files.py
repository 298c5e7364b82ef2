"""solo_lib.files.write_text_atomically: the old file or the new one, never half of one."""

import os

import pytest

from solo_lib import files


def test_writes_creates_the_folder_and_replaces(tmp_path):
    path = tmp_path / "new" / "results.json"
    assert files.write_text_atomically(path, "[1]\n") == path and path.read_text() == "[1]\n"
    files.write_text_atomically(str(path), "[2, \u00e9]\n")  # a str path too; UTF-8
    assert path.read_text(encoding="utf-8") == "[2, \u00e9]\n"
    assert sorted(p.name for p in path.parent.iterdir()) == ["results.json"]  # no temporary left


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path, monkeypatch):
    path = tmp_path / "coco.json"
    path.write_text("old")

    def disk_full(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", disk_full)
    with pytest.raises(OSError, match="No space left"):
        files.write_text_atomically(path, "new")
    assert path.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["coco.json"]
