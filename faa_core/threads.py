"""Intra-op thread counts for one Python thread, so that two encoders can share the cores.

Why: a cold match request runs the voice encoder in a worker thread beside the
photos' work (detection, face encoder). ``torch.set_num_threads`` is
process-wide, so each of the two would start as many OpenMP threads as there
are cores, and on a 2-core machine four busy threads fought over two cores.
OpenMP keeps the thread count of parallel regions per calling thread, and
PyTorch's CPU kernels (and oneDNN's) read it there, so setting it through the
OpenMP runtime PyTorch loaded changes only the calling thread. Measured on the
2-core CPU (``benchmarks/pipeline_latency.py``): see ``MatchPipeline``.

Where the runtime cannot be found (a build without OpenMP, another platform's
runtime) :func:`intra_op_threads` does nothing, which is the behaviour before.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Optional

import torch

__all__ = ["intra_op_threads", "openmp_runtime"]


@functools.lru_cache(maxsize=1)
def openmp_runtime() -> Optional[ctypes.CDLL]:
    """The OpenMP library PyTorch runs its CPU kernels on, or None when there is none to control."""
    if "OpenMP" not in torch.__config__.parallel_info().split("ATen parallel backend:")[-1]:
        return None
    candidates = sorted((Path(torch.__file__).parent / "lib").glob("libgomp*.so*"))
    candidates += [Path(p) for p in filter(None, (ctypes.util.find_library(n) for n in ("gomp", "omp", "iomp5")))]
    for path in candidates:
        try:
            lib = ctypes.CDLL(str(path))
            lib.omp_get_max_threads.restype = ctypes.c_int
            lib.omp_set_num_threads.argtypes = [ctypes.c_int]
        except (OSError, AttributeError):
            continue
        return lib
    return None


@contextmanager
def intra_op_threads(n: int) -> Iterator[None]:
    """Run the body with ``n`` intra-op threads in the calling Python thread only; others keep theirs."""
    lib = openmp_runtime()
    if lib is None or n < 1:
        yield
        return
    torch.get_num_threads()  # PyTorch sets a thread's count on its first use: let it happen before ours
    previous = int(lib.omp_get_max_threads())
    if previous == n:
        yield
        return
    lib.omp_set_num_threads(int(n))
    try:
        yield
    finally:
        lib.omp_set_num_threads(previous)
