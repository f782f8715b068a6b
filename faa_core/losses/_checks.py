"""Shared input validation for the loss functions.

Losses are called from training loops with tensors assembled from several
sources (samplers, clustering, encoders); a clear ``ValueError`` naming the bad
argument is much cheaper to debug than a broadcasting error deep inside autograd.
"""

from __future__ import annotations

import torch
from torch import Tensor


def is_integer_dtype(dtype: torch.dtype) -> bool:
    """True for integer (non-bool) dtypes, which is what labels must be."""
    return not dtype.is_floating_point and not dtype.is_complex and dtype != torch.bool


def check_embeddings(x: Tensor, name: str, *, allow_empty: bool = False) -> None:
    """An embedding matrix must be a 2-D floating tensor with at least one row."""
    if not isinstance(x, Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() != 2:
        raise ValueError(f"{name} must be 2-D [N, D], got shape {tuple(x.shape)}")
    if not x.dtype.is_floating_point:
        raise ValueError(f"{name} must be a floating tensor, got dtype {x.dtype}")
    if not allow_empty and x.shape[0] == 0:
        raise ValueError(f"{name} must have at least one row, got shape {tuple(x.shape)}")


def check_pair(voice: Tensor, face: Tensor) -> None:
    """Voice and face embeddings of B pairs must share shape and device."""
    check_embeddings(voice, "voice")
    check_embeddings(face, "face")
    if voice.shape != face.shape:
        raise ValueError(
            f"voice and face must have the same shape [B, D], got {tuple(voice.shape)} "
            f"and {tuple(face.shape)}"
        )
    if voice.device != face.device:
        raise ValueError(f"voice is on {voice.device} but face is on {face.device}")


def check_labels(labels: Tensor, n: int, name: str = "labels", device: torch.device | None = None) -> None:
    """Labels must be a 1-D integer tensor with one entry per row."""
    if not isinstance(labels, Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(labels).__name__}")
    if labels.dim() != 1:
        raise ValueError(f"{name} must be 1-D [N], got shape {tuple(labels.shape)}")
    if not is_integer_dtype(labels.dtype):
        raise ValueError(f"{name} must be an integer tensor, got dtype {labels.dtype}")
    if labels.shape[0] != n:
        raise ValueError(f"{name} has {labels.shape[0]} entries but {n} were expected")
    if device is not None and labels.device != device:
        raise ValueError(f"{name} is on {labels.device} but the embeddings are on {device}")


def check_positive(value: float, name: str) -> None:
    """Scalar hyper-parameters such as temperatures must be finite and > 0."""
    v = float(value)
    if not (v > 0.0 and v < float("inf")):
        raise ValueError(f"{name} must be a finite number > 0, got {value}")


def zero_with_grad(*tensors: Tensor) -> Tensor:
    """A scalar 0 connected to the inputs' graphs, so ``.backward()`` still works."""
    out = tensors[0].sum() * 0.0
    for t in tensors[1:]:
        out = out + t.sum() * 0.0
    return out
