"""keep_freed_memory: large blocks come from the reusable heap instead of fresh kernel pages (glibc)."""

from __future__ import annotations

import ctypes

import pytest

from faa_core.allocator import M_MMAP_THRESHOLD, M_TRIM_THRESHOLD, _glibc, keep_freed_memory

libc = _glibc()
pytestmark = pytest.mark.skipif(libc is None, reason="not glibc: keep_freed_memory does nothing there")


class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
                 "keepcost")]


def _mmapped_bytes_while_holding(size: int) -> int:
    """Bytes glibc has in mmap'd blocks while a block of ``size`` bytes is allocated."""
    libc.mallinfo2.restype = MallInfo2
    libc.malloc.restype = ctypes.c_void_p
    libc.malloc.argtypes = [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    before = libc.mallinfo2().hblkhd
    block = libc.malloc(size)
    try:
        return libc.mallinfo2().hblkhd - before
    finally:
        libc.free(block)


def test_a_6_mb_block_is_mmapped_by_default_and_taken_from_the_heap_after_keep_freed_memory():
    six_mb = 6 * 1024 * 1024  # one 3072 x 500 float32 tensor
    try:
        assert libc.mallopt(M_MMAP_THRESHOLD, 128 * 1024) == 1  # glibc's initial threshold, fixed
        assert _mmapped_bytes_while_holding(six_mb) >= six_mb
        assert keep_freed_memory() is True
        assert _mmapped_bytes_while_holding(six_mb) == 0
        assert _mmapped_bytes_while_holding(64 * 1024 * 1024) >= 64 * 1024 * 1024  # above 32 MiB: still mmapped
    finally:
        keep_freed_memory()  # leave the process as the app runs it


def test_thresholds_outside_mallopts_int_are_refused():
    with pytest.raises(ValueError, match="mmap_threshold must be between 1 and 2\\*\\*31 - 1 bytes"):
        keep_freed_memory(mmap_threshold=1 << 40)  # would wrap around in mallopt's C int
    with pytest.raises(ValueError, match="trim_threshold must be between"):
        keep_freed_memory(trim_threshold=0)
    assert libc.mallopt(M_TRIM_THRESHOLD, 1 << 30) == 1
    assert keep_freed_memory() is True
