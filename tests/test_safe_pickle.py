"""The restricted unpickler: data loads under every protocol, code never runs."""

from __future__ import annotations

import builtins
import collections
import os
import pickle
import subprocess
import sys

import numpy as np
import pytest

from training.ingest.safe_pickle import PickleReadError, UnsafePickleError, safe_load, safe_loads


def _data() -> dict:
    return {
        "f32": np.arange(6, dtype=np.float32).reshape(2, 3),
        "fortran": np.asfortranarray(np.ones((3, 2))),
        "strings": np.array(["a", "bc"]),
        "objects": np.array([1, "x", None], dtype=object),
        "record": np.zeros(2, dtype=[("a", "<f4"), ("b", "<i8")]),
        "scalar": np.float32(1.5),
        "int": np.int64(-3),
        "set": {"id10001/a/00001.wav", "b"},
        "frozen": frozenset({1, 2}),
        "dd": collections.defaultdict(list, {"k": [1, 2]}),
        "od": collections.OrderedDict(a=1),
        "bytes": b"\x00\xff",
        "complex": 1 + 2j,
        "nested": [("wav", "jpg", 1), {"x": [1.0, None, True]}],
    }


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_plain_data_round_trips(protocol):
    data = _data()
    got = safe_loads(pickle.dumps(data, protocol=protocol), "data.pkl")
    assert set(got) == set(data)
    for key in ("f32", "fortran", "strings", "objects", "record"):
        assert type(got[key]) is np.ndarray and got[key].dtype == data[key].dtype
        assert np.array_equal(got[key], data[key])
    assert got["fortran"].flags.f_contiguous
    assert got["scalar"] == np.float32(1.5) and got["scalar"].dtype == np.float32
    assert type(got["dd"]) is collections.defaultdict and got["dd"]["k"] == [1, 2]
    for key in ("set", "frozen", "od", "bytes", "complex", "nested", "int"):
        assert got[key] == data[key]


class _Payload:
    """Pickles as a call of ``fn(*args)``: what a hostile release would ship."""

    def __init__(self, fn, *args):
        self.fn, self.args = fn, args

    def __reduce__(self):
        return self.fn, self.args


def _payloads(marker) -> dict:
    code = f"open({str(marker)!r}, 'w').close()"
    return {
        "os.system": _Payload(os.system, f"touch {marker}"),
        "eval": _Payload(builtins.eval, code),
        "exec": _Payload(builtins.exec, code),
        "subprocess.Popen": _Payload(subprocess.Popen, ["touch", str(marker)]),
        "subprocess.check_call": _Payload(subprocess.check_call, ["touch", str(marker)]),
        "open": _Payload(builtins.open, str(marker), "w"),
        "getattr": _Payload(getattr, "text", "upper"),
        "__import__": _Payload(builtins.__import__, "os"),
        # numpy gadgets a loose "allow numpy.*" rule would let through
        "numpy.load": _Payload(np.load, str(marker)),
        "numpy.fromfile": _Payload(np.fromfile, str(marker)),
    }


@pytest.mark.parametrize("protocol", [0, 2, pickle.HIGHEST_PROTOCOL])
@pytest.mark.parametrize("what", list(_payloads("m")))
def test_code_in_a_pickle_is_refused_and_never_runs(tmp_path, protocol, what):
    marker = tmp_path / "pwned"
    payload = _payloads(marker)[what]
    module = payload.fn.__module__ or "builtins"
    path = tmp_path / "face_input.pkl"
    # hidden inside ordinary data, as it would be in a real release
    path.write_bytes(pickle.dumps({"Name/1.6/yt/0001.jpg": np.zeros(4), "evil": [payload]}, protocol=protocol))
    with pytest.raises(UnsafePickleError) as info:
        safe_load(path)
    assert str(info.value) == (
        f"face_input.pkl wants {module}.{payload.fn.__name__}; "
        "only containers, strings, numbers and numpy arrays are allowed"
    )
    assert not marker.exists()


def test_error_message_names_the_global_exactly():
    blob = pickle.dumps(_Payload(os.system, "true"), protocol=2)
    with pytest.raises(UnsafePickleError, match=r"^voice_input\.pkl wants (posix|os|nt)\.system; only containers"):
        safe_loads(blob, "voice_input.pkl")


def test_allowed_names_cannot_be_misused():
    # numpy.ndarray is only a token for _reconstruct: calling it directly is refused
    direct = b"\x80\x02cnumpy\nndarray\nK\x03\x85R."
    with pytest.raises(PickleReadError):
        safe_loads(direct, "x.pkl")
    # _reconstruct builds plain ndarrays only, not a subclass named by the pickle
    sub = b"\x80\x02cnumpy._core.multiarray\n_reconstruct\ncbuiltins\nset\nK\x00\x85C\x01b\x87R."
    with pytest.raises(UnsafePickleError, match="only build numpy.ndarray"):
        safe_loads(sub, "x.pkl")
    # _codecs.encode only as protocol 0-2 bytes use it
    rot = b"\x80\x02c_codecs\nencode\nX\x03\x00\x00\x00abcX\x06\x00\x00\x00rot_13\x86R."
    with pytest.raises(UnsafePickleError, match="latin1"):
        safe_loads(rot, "x.pkl")
    # BUILD cannot set attributes on the helpers handed to the pickle
    build = b"\x80\x02cnumpy._core.multiarray\n_reconstruct\nN}X\x03\x00\x00\x00_fnX\x01\x00\x00\x00x\x86\x86b."
    with pytest.raises(PickleReadError):
        safe_loads(build, "x.pkl")
    # persistent ids are not data
    with pytest.raises(UnsafePickleError, match="persistent id"):
        safe_loads(b"\x80\x02X\x01\x00\x00\x00pQ.", "x.pkl")


def test_python2_names_and_corrupt_files(tmp_path):
    old = pickle.dumps({"a"}, protocol=0)
    assert b"__builtin__" in old and safe_loads(old, "py2.pkl") == {"a"}
    blob = pickle.dumps({"a": np.ones(3)}, protocol=4)
    with pytest.raises(PickleReadError, match=r"^cut\.pkl: not a readable data pickle"):
        safe_loads(blob[: len(blob) // 2], "cut.pkl")
    with pytest.raises(FileNotFoundError, match="missing.pkl"):
        safe_load(tmp_path / "missing.pkl")


# --------------------------------------------------------------------------- bounded expansion ("billion laughs")


def _laughs(levels: int = 4, width: int = 100) -> bytes:
    """A ~1.5 kB pickle whose shared memo references expand to width**levels floats (10^8 by default)."""
    x: object = [0.5] * width
    for _ in range(levels - 1):
        x = [x] * width
    return pickle.dumps({"id10001/a/00001.wav": x}, protocol=4)


def test_billion_laughs_is_refused_in_bounded_memory():
    """It took 813 MB and was accepted as a 10^8-d embedding (np.asarray expands the shared parts)."""
    from training.ingest.safe_pickle import PickleTooLargeError

    data = _laughs()
    assert len(data) < 2000
    with pytest.raises(PickleTooLargeError, match="voice_input.pkl: expands to more than 1,00.,... values"):
        safe_loads(data, "voice_input.pkl")
    code = (
        "import resource, sys\n"
        "from training.ingest.safe_pickle import safe_loads, PickleTooLargeError\n"
        "data = sys.stdin.buffer.read()\n"
        "base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "try:\n"
        "    safe_loads(data)\n"
        "except PickleTooLargeError:\n"
        "    print('refused')\n"
        "print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) // 1024)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], input=data, capture_output=True, timeout=120)
    lines = out.stdout.decode().split()
    assert lines[0] == "refused" and int(lines[1]) < 50, out.stderr.decode()


def test_allocations_while_loading_are_bounded():
    from training.ingest.safe_pickle import PickleTooLargeError

    bytearray_bomb = b"\x80\x04cbuiltins\nbytearray\nJ\x00\xe1\xf5\x05\x85R."  # bytearray(100_000_000), 37 bytes
    with pytest.raises(PickleTooLargeError, match="a bytearray \\(100,000,000 bytes\\)"):
        safe_loads(bytearray_bomb)
    array_bomb = b"cnumpy._core.multiarray\n_reconstruct\n(cnumpy\nndarray\n(I100000000\ntS'f8'\ntR."
    with pytest.raises(PickleTooLargeError, match="an array \\(800,000,000 bytes\\)"):
        safe_loads(array_bomb)
    assert len(safe_loads(pickle.dumps(bytearray(1000), protocol=3))) == 1000


def test_deep_nesting_is_refused():
    from training.ingest.safe_pickle import PickleTooLargeError

    x: object = 1.0
    for _ in range(100):
        x = [x]
    with pytest.raises(PickleTooLargeError, match="nests deeper than 64 levels"):
        safe_loads(pickle.dumps(x))
    for _ in range(100_000 - 100):
        x = [x]
    with pytest.raises(PickleReadError):  # deeper than pickle.dumps can write: build the opcodes directly
        safe_loads(b"\x80\x04" + b"(" * 100_000 + b"K\x01" + b"l" * 100_000 + b".")


def test_release_shaped_data_passes(tmp_path):
    """SL-like files (paths -> float32 vectors; lists reusing memoised path strings) stay well inside the bounds."""
    rng = np.random.default_rng(0)
    faces = {f"Name_{i % 50}/1.6/yt{i % 300}/{i:07d}.jpg": rng.standard_normal(512).astype(np.float32) for i in range(3000)}
    wavs = [f"id{10001 + i % 50}/yt{i % 300}/{i:05d}.wav" for i in range(3000)]
    trials = {"list": [(wavs[i % 3000], list(faces)[(7 * i) % 3000], i % 2) for i in range(30_000)]}
    floats = [float(v) for v in rng.standard_normal(200_000)]
    for obj in (faces, trials, floats):
        path = tmp_path / "f.pkl"
        path.write_bytes(pickle.dumps(obj, protocol=4))
        back = safe_load(path)
        assert type(back) is type(obj) and len(back) == len(obj)
    assert back == floats
