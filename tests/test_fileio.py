"""faa_core.fileio: atomic writes that leave no torn or stray files and give the mode a plain open() gives."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import numpy as np
import pytest
import torch

from faa_core.fileio import (
    atomic_save_npy,
    atomic_torch_save,
    atomic_write,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
)

pytestmark = pytest.mark.skipif(os.name != "posix", reason="file modes are POSIX")


@pytest.fixture
def umask():
    old = os.umask(0o022)
    yield os.umask
    os.umask(old)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


WRITERS = {
    "text": lambda p: atomic_write_text(p, "héllo\r\n"),
    "json": lambda p: atomic_write_json(p, {"b": 1, "a": [1, 2]}),
    "bytes": lambda p: atomic_write_bytes(p, b"\x00\x01"),
    "npy": lambda p: atomic_save_npy(p, np.arange(3, dtype=np.int64)),
    "torch": lambda p: atomic_torch_save({"x": torch.ones(2)}, p),
}


@pytest.mark.parametrize("mask, expected", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
@pytest.mark.parametrize("kind", sorted(WRITERS))
def test_mode_follows_the_umask_like_open(tmp_path, umask, kind, mask, expected):
    umask(mask)
    target = tmp_path / "sub" / f"f.{kind}"
    WRITERS[kind](target)
    plain = tmp_path / "plain"
    with open(plain, "w"):
        pass
    assert _mode(target) == expected == _mode(plain)
    assert sorted(p.name for p in target.parent.iterdir()) == [target.name]  # no temporary file left


def test_contents(tmp_path):
    atomic_write_text(tmp_path / "t", "héllo\r\n")
    assert (tmp_path / "t").read_bytes() == "héllo\r\n".encode()  # no newline translation
    atomic_write_json(tmp_path / "j", {"b": 1, "a": [1, 2]})
    assert (tmp_path / "j").read_text() == json.dumps({"b": 1, "a": [1, 2]}, indent=2) + "\n"
    atomic_save_npy(tmp_path / "a.npy", np.arange(3))
    assert np.load(tmp_path / "a.npy").tolist() == [0, 1, 2]
    atomic_torch_save({"x": torch.arange(2)}, tmp_path / "s.pt")
    assert torch.load(tmp_path / "s.pt")["x"].tolist() == [0, 1]


def test_failure_keeps_the_old_file_and_removes_the_temporary(tmp_path):
    target = tmp_path / "f.txt"
    atomic_write_text(target, "old")

    def broken(tmp: Path) -> None:
        tmp.write_text("half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(target, broken)
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["f.txt"]


def test_replacing_keeps_readers_of_the_old_file_whole(tmp_path):
    target = tmp_path / "f.bin"
    atomic_write_bytes(target, b"a" * 1000)
    with open(target, "rb") as reader:
        atomic_write_bytes(target, b"b" * 10)
        assert reader.read() == b"a" * 1000  # the old inode, never a mix
    assert target.read_bytes() == b"b" * 10


def test_checkpoint_and_store_files_are_shared_under_umask_022(tmp_path, umask, small_checkpoint):
    """Checkpoints and feature stores were 0600 (mkstemp) while manifests were 0644."""
    from faa_core.checkpoint import load_checkpoint, save_checkpoint
    from training.features import FeatureStoreWriter

    umask(0o022)
    model, _ = load_checkpoint(small_checkpoint)
    out = save_checkpoint(tmp_path / "ckpt", model, trained_on={"data": "test", "synthetic": True})
    w = FeatureStoreWriter(tmp_path / "store", {"face": (4, 0)})
    w.add("face", "a", "v", "i", "train", np.ones(4))
    w.close()
    files = [p for p in (*out.iterdir(), *(tmp_path / "store").rglob("*")) if p.is_file()]
    assert len(files) >= 5
    assert {p.name: _mode(p) for p in files} == {p.name: 0o644 for p in files}


def test_read_json_document(tmp_path):
    from faa_core.fileio import read_json_document
    from training.features import FeatureStore

    good = tmp_path / "good.json"
    atomic_write_json(good, {"format": "x", "version": 2, "a": 1})
    assert read_json_document(good, "x", 2)["a"] == 1
    with pytest.raises(ValueError, match=r"good.json: format is 'x', expected 'y'"):
        read_json_document(good, "y")
    with pytest.raises(ValueError, match=r"good.json: version 2 is newer than this reader \(1\)"):
        read_json_document(good, "x", 1)
    (tmp_path / "store").mkdir()
    (tmp_path / "store" / "store.json").write_text('{"format": "faa-feat')  # a torn write of older code
    with pytest.raises(ValueError, match=r"store.json: cannot be read as JSON"):
        FeatureStore(tmp_path / "store")
    (tmp_path / "list.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match=r"list.json: format is None, expected 'x'"):
        read_json_document(tmp_path / "list.json", "x")
