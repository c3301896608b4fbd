"""Atomic writes: all or nothing, no temporary files left, the usual file mode."""

from __future__ import annotations

import os

import pytest

from ctsurv.atomic import atomic_folder, atomic_path, atomic_write


def test_success_replaces_the_file_with_the_usual_mode(tmp_path):
    target = tmp_path / "sub" / "f.bin"
    atomic_write(target, lambda fh: fh.write(b"new"))
    assert target.read_bytes() == b"new"
    umask = os.umask(0)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask
    assert sorted(p.name for p in target.parent.iterdir()) == ["f.bin"]


def test_failure_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "f.txt"
    target.write_text("old", encoding="utf-8")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half", encoding="utf-8")
            raise RuntimeError("killed")
    assert target.read_text(encoding="utf-8") == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["f.txt"]


def test_atomic_folder_replaces_an_old_folder_whole_with_mode_0755(tmp_path):
    target = tmp_path / "sub" / "store"
    target.mkdir(parents=True)
    (target / "old.npy").write_bytes(b"old")
    with atomic_folder(target) as tmp:
        assert tmp.parent == target.parent and tmp.name.startswith(".store.") and not any(tmp.iterdir())
        (tmp / "new.npy").write_bytes(b"new")
        assert (target / "old.npy").read_bytes() == b"old"  # the old folder stands until the block ends
    assert sorted(p.name for p in target.iterdir()) == ["new.npy"]
    assert target.stat().st_mode & 0o777 == 0o755
    assert sorted(p.name for p in target.parent.iterdir()) == ["store"]


def test_atomic_folder_failure_keeps_the_old_folder_and_leaves_nothing(tmp_path):
    target = tmp_path / "store"
    target.mkdir()
    (target / "old.npy").write_bytes(b"old")
    with pytest.raises(RuntimeError, match="disk full"):
        with atomic_folder(target) as tmp:
            (tmp / "half.npy").write_bytes(b"ha")
            raise RuntimeError("disk full")
    assert sorted(p.name for p in target.iterdir()) == ["old.npy"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["store"]
