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

__all__ = ["DeviceError", "DEVICE_CHOICES", "PRECISION_CHOICES", "local_rank_from_env", "native_bf16", "pick_device",
           "pick_precision"]

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


#: What ``--precision`` accepts, for help texts.
PRECISION_CHOICES = "auto (bf16 where the device computes it natively, else fp32), fp32 or bf16"


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` computes bfloat16 convolutions and matrix products in hardware.

    On CPU that is oneDNN's check for AVX512-BF16 / AMX; without it bf16 is
    emulated and slower than fp32.
    """
    if device.type == "cuda":
        return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    if device.type == "cpu":
        try:
            return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
        except (AttributeError, RuntimeError):
            return False
    return False


def pick_precision(choice: str, device: torch.device | str) -> torch.dtype:
    """The dtype the frozen encoders compute in for ``--precision choice`` on ``device``.

    Why: the face and voice encoders are most of a match request's arithmetic, and
    where bf16 is native they ran 1.6-1.9x faster in it (``benchmarks/cpu_paths.py``,
    one and two threads), for embeddings within 1e-4 of fp32 in cosine (tested).
    ``auto`` takes bf16 only there; ``bf16`` where it is not native is refused
    (it would be slower than fp32).
    """
    text = str(choice).strip().lower()
    device = torch.device(device)
    if text in ("fp32", "float32"):
        return torch.float32
    if text not in ("auto", "bf16", "bfloat16"):
        raise DeviceError(f"--precision must be auto, fp32 or bf16, got {choice!r}")
    native = native_bf16(device)
    if text == "auto":
        return torch.bfloat16 if native else torch.float32
    if not native:
        raise DeviceError(f"--precision bf16: {device} has no native bf16 arithmetic, so it would be slower "
                          "than fp32 (use --precision fp32 or auto)")
    return torch.bfloat16
