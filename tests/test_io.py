"""influence.io: atomic writes (mode from the umask, nothing left behind on failure) and stable formats."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import numpy as np
import pytest

from influence import io


def test_atomic_write_gives_the_umask_mode_not_0600(tmp_path):
    old = os.umask(0o022)
    try:
        p = io.atomic_write(tmp_path / "sub" / "a.bin", b"x")
    finally:
        os.umask(old)
    assert p.read_bytes() == b"x"
    assert (p.stat().st_mode & 0o777) == 0o644
    old = os.umask(0o077)
    try:
        q = io.save_text(tmp_path / "b.txt", "y")
    finally:
        os.umask(old)
    assert (q.stat().st_mode & 0o777) == 0o600


def test_failed_write_leaves_neither_file_nor_temporary(tmp_path):
    target = tmp_path / "out.npz"
    target.write_bytes(b"old")

    def boom(f):
        f.write(b"partial")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        io.atomic_write(target, boom)
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.npz"]


def test_next_write_removes_the_stale_temporaries_of_a_killed_write_only(tmp_path, monkeypatch):
    target = tmp_path / "run.pt"
    stale = tmp_path / ".run.pt.ab3_x9zq.tmp"  # what a SIGKILL mid-write of run.pt leaves
    fresh = tmp_path / ".run.pt.k2j4h5g6.tmp"  # a write of run.pt still in progress
    other = tmp_path / ".run.pt.json.ab3_x9zq.tmp"  # another target's temporary
    unrelated = tmp_path / ".run.pt.notes.tmp"
    for p in (stale, fresh, other, unrelated):
        p.write_bytes(b"partial")
    old = time.time() - 2 * io.STALE_TMP_AGE_S
    for p in (stale, other, unrelated):
        os.utime(p, (old, old))
    io.atomic_write(target, b"x")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in (target, fresh, other, unrelated))
    monkeypatch.setattr(io, "STALE_TMP_AGE_S", -1.0)
    io.atomic_write(target, b"y")
    assert not fresh.exists() and other.exists() and target.read_bytes() == b"y"


def test_json_format_and_numpy_values(tmp_path):
    p = io.save_json(tmp_path / "r.json", {"b": np.float64(0.5), "a": np.arange(2), "c": np.int64(3)})
    assert p.read_text() == '{\n "a": [\n  0,\n  1\n ],\n "b": 0.5,\n "c": 3\n}\n'
    assert io.read_json(p) == {"a": [0, 1], "b": 0.5, "c": 3}
    with pytest.raises(TypeError, match="cannot write object"):
        io.save_json(tmp_path / "bad.json", {"x": object()})
    assert not (tmp_path / "bad.json").exists()


def test_npz_and_npy_round_trip_without_pickles(tmp_path):
    io.save_npz(tmp_path / "a.npz", x=np.arange(3.0), name=np.array("run"))
    with np.load(tmp_path / "a.npz", allow_pickle=False) as z:
        np.testing.assert_array_equal(z["x"], np.arange(3.0))
        assert str(z["name"]) == "run"
    with pytest.raises(TypeError, match="dtype object"):
        io.save_npz(tmp_path / "b.npz", x=np.array([{}], dtype=object))
    io.save_npy(tmp_path / "c.npy", [1.5, 2.5])
    np.testing.assert_array_equal(np.load(tmp_path / "c.npy", allow_pickle=False), [1.5, 2.5])


def test_config_hash_ignores_key_order_and_sees_values():
    a = io.config_hash({"x": 1, "y": {"b": 2, "a": [1, 2]}})
    assert a == io.config_hash({"y": {"a": [1, 2], "b": 2}, "x": 1})
    assert a != io.config_hash({"x": 1, "y": {"b": 3, "a": [1, 2]}})
    assert len(a) == 12 and int(a, 16) >= 0


def test_io_imports_neither_torch_nor_pandas():
    code = "import sys, influence.io; print('torch' in sys.modules, 'pandas' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]
