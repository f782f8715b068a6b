"""Align: projection heads into the shared voice-face space (Self-Lifting's design)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ProjectionHeads(nn.Module):
    """Per modality Dropout -> Linear -> ReLU, then a shared Linear -> ReLU -> Linear.

    The shared top is what makes the two modalities land in one space; the
    outputs are L2-normalised so that a dot product is a cosine.
    """

    def __init__(self, face_dim: int, voice_dim: int, hidden: int, embed_dim: int, dropout: float) -> None:
        super().__init__()
        self.face_in = nn.Sequential(nn.Dropout(dropout), nn.Linear(face_dim, hidden), nn.ReLU())
        self.voice_in = nn.Sequential(nn.Dropout(dropout), nn.Linear(voice_dim, hidden), nn.ReLU())
        self.shared = nn.Sequential(nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, embed_dim))

    def face(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.shared(self.face_in(x)), dim=-1)

    def voice(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.shared(self.voice_in(x)), dim=-1)
