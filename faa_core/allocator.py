"""Keep freed memory in the process for reuse, so that each request does not fault in fresh pages.

Why: a match request allocates and frees tensors of several MB (ECAPA's
3072 x frames activations and pooling statistics are 6 MB each for 5 s of
speech). glibc's malloc serves blocks above its mmap threshold with new
pages from the kernel and hands them back on free, so every such tensor pays
page faults when first written. Raising the mmap threshold to 32 MiB (the
most glibc's own adaptive threshold reaches on 64-bit systems) and the trim
threshold keeps those blocks in the heap, where the next request reuses them.
Measured on the 2-core CPU, ECAPA in bf16 on 5 s of speech, in separate
processes alternating with and without it: 1.23x with one thread, 1.2x with
two. For the whole pipeline (``benchmarks/pipeline_latency.py`` with and
without ``--system-malloc``) the gain was within the host's noise (see the
README's speed section).

The cost: the process keeps the heap of its largest request instead of
shrinking after it (its resident size stays at its peak). This changes the
whole process, so the library never does it on its own: the app and the
benchmarks call :func:`keep_freed_memory` at start. Elsewhere than glibc (macOS,
Windows, musl) it does nothing and returns False.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
from typing import Optional

__all__ = ["keep_freed_memory"]

#: glibc's mallopt parameters (malloc.h).
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
#: Blocks up to this size come from the heap (and are reused); larger ones are mapped and unmapped.
MMAP_THRESHOLD = 32 * 1024 * 1024
#: Free memory at the top of the heap beyond this much goes back to the system.
TRIM_THRESHOLD = 1024 * 1024 * 1024


@functools.lru_cache(maxsize=1)
def _glibc() -> Optional[ctypes.CDLL]:
    """The C library when it is glibc (the one with ``mallopt`` and these parameters), else None."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name or "libc.so.6")
        libc.gnu_get_libc_version.restype = ctypes.c_char_p
        libc.gnu_get_libc_version()
        libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
        libc.mallopt.restype = ctypes.c_int
    except (OSError, AttributeError):
        return None
    return libc


def keep_freed_memory(mmap_threshold: int = MMAP_THRESHOLD, trim_threshold: int = TRIM_THRESHOLD) -> bool:
    """Make glibc keep freed blocks below ``mmap_threshold`` bytes for reuse; True when it took effect."""
    for name, value in (("mmap_threshold", mmap_threshold), ("trim_threshold", trim_threshold)):
        if not 0 < int(value) < 2**31:  # mallopt takes a C int
            raise ValueError(f"{name} must be between 1 and 2**31 - 1 bytes, got {value}")
    libc = _glibc()
    if libc is None:
        return False
    ok_mmap = libc.mallopt(M_MMAP_THRESHOLD, int(mmap_threshold)) == 1
    ok_trim = libc.mallopt(M_TRIM_THRESHOLD, int(trim_threshold)) == 1
    return ok_mmap and ok_trim
