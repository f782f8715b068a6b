"""Which torch device a process uses: one rule for the app, the CLI, training and extraction.

Under ``torchrun`` every process of a node must take its own GPU: ``auto`` and
``cuda`` mean ``cuda:LOCAL_RANK`` (modulo the GPUs present, so more processes
than GPUs share them round-robin instead of failing). ``cuda:N`` is taken as
given. A choice the machine cannot honour raises :class:`DeviceError` with a
one-line message; command lines print it as their error.
"""

from __future__ import annotations

import os
import re
from typing import Mapping, Optional

import torch

from .errors import FAAError

__all__ = ["DeviceError", "DEVICE_CHOICES", "local_rank_from_env", "pick_device"]

#: What ``--device`` accepts, for help texts.
DEVICE_CHOICES = "auto (cuda:LOCAL_RANK when CUDA is available, else cpu), cpu, cuda (= cuda:LOCAL_RANK) or cuda:N"
_CUDA_N = re.compile(r"^cuda:(\d+)$")


class DeviceError(FAAError, ValueError):
    """The requested device is unknown or not present on this machine."""


def local_rank_from_env(env: Optional[Mapping[str, str]] = None) -> int:
    """``LOCAL_RANK`` as torchrun sets it (0 for a plain single process)."""
    value = (os.environ if env is None else env).get("LOCAL_RANK", "0")
    try:
        rank = int(value)
    except ValueError:
        raise DeviceError(f"LOCAL_RANK must be a whole number, got {value!r}") from None
    if rank < 0:
        raise DeviceError(f"LOCAL_RANK must be >= 0, got {rank}")
    return rank


def pick_device(choice: str = "auto", local_rank: Optional[int] = None) -> torch.device:
    """The device for ``--device choice`` on this process; ``local_rank`` None reads ``LOCAL_RANK``.

    Why rank-aware: a bare ``cuda`` means the current device, which is GPU 0 in
    every fresh process, so all torchrun ranks would pile onto one GPU.
    """
    text = str(choice).strip().lower()
    if text == "cpu":
        return torch.device("cpu")
    if text not in ("auto", "cuda") and not _CUDA_N.match(text):
        raise DeviceError(f"--device must be auto, cpu, cuda or cuda:N, got {choice!r}")
    available = torch.cuda.is_available()
    if text == "auto" and not available:
        return torch.device("cpu")
    if not available:
        raise DeviceError(f"--device {choice}: CUDA is not available on this machine (use --device cpu or auto)")
    count = torch.cuda.device_count()
    match = _CUDA_N.match(text)
    if match:
        index = int(match.group(1))
        if index >= count:
            raise DeviceError(f"--device {choice}: this machine has {count} GPU(s) (cuda:0 to cuda:{count - 1})")
        return torch.device("cuda", index)
    rank = local_rank_from_env() if local_rank is None else int(local_rank)
    if rank < 0:
        raise DeviceError(f"local rank must be >= 0, got {rank}")
    return torch.device("cuda", rank % count)
