"""faa_core.threads: intra-op thread counts set for the calling Python thread only."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
import torch

import faa_core.threads as threads_mod
from faa_core.threads import intra_op_threads, openmp_runtime


@pytest.fixture
def two_threads():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


@pytest.mark.skipif(openmp_runtime() is None, reason="this torch build runs its CPU kernels without OpenMP")
def test_count_changes_in_the_calling_thread_only_and_comes_back(two_threads):
    with ThreadPoolExecutor(1) as pool, intra_op_threads(1):
        assert torch.get_num_threads() == 1
        assert pool.submit(torch.get_num_threads).result() == 2  # another thread keeps its count
    assert torch.get_num_threads() == 2
    with pytest.raises(RuntimeError, match="inside"):
        with intra_op_threads(1):
            raise RuntimeError("inside")
    assert torch.get_num_threads() == 2  # restored after an error too


def test_without_an_openmp_runtime_nothing_changes(two_threads, monkeypatch):
    monkeypatch.setattr(threads_mod, "openmp_runtime", lambda: None)
    with intra_op_threads(1):
        assert torch.get_num_threads() == 2
    with intra_op_threads(0):  # 0: keep the thread's count
        assert torch.get_num_threads() == 2
