"""Sizes of the FAA model, as plain data that travels inside checkpoints."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any


@dataclass
class FAAConfig:
    """Everything needed to rebuild an FAA model.

    Feature dimensions describe the frozen encoders' outputs; ``face_token_dim``
    or ``voice_token_dim`` of 0 means global-only mode for that modality (the
    multimodal encoder sees only the aligned global embedding, as when training
    on precomputed per-file embeddings such as Self-Lifting's).
    """

    face_dim: int = 512
    voice_dim: int = 192
    face_token_dim: int = 896
    voice_token_dim: int = 1024
    face_grid: tuple[int, int] = (8, 8)
    # Align: Self-Lifting's projection heads.
    proj_hidden: int = 256
    embed_dim: int = 128
    proj_dropout: float = 0.5
    init_temperature: float = 0.07
    # Fuse: the multimodal encoder.
    d_model: int = 256
    n_heads: int = 4
    n_layers: int = 2
    mlp_ratio: float = 4.0
    dropout: float = 0.1
    # The match head's same-person logit starts from the aligned cosine times a learned gain, so the
    # fuse stage corrects the align stage instead of having to rediscover the similarity it holds.
    # False (the default, the original design, and every checkpoint written before this field) = head
    # only: on the evaluation suite the residual rescued heads at chance and cost working ones (README).
    cosine_residual: bool = False

    def __post_init__(self) -> None:
        self.face_grid = tuple(int(v) for v in self.face_grid)  # JSON gives lists
        for name in ("face_dim", "voice_dim", "proj_hidden", "embed_dim", "d_model", "n_heads", "n_layers"):
            if int(getattr(self, name)) <= 0:
                raise ValueError(f"FAAConfig.{name} must be positive, got {getattr(self, name)}")
        if self.face_token_dim < 0 or self.voice_token_dim < 0:
            raise ValueError("token dimensions must be >= 0 (0 = global-only)")
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model {self.d_model} is not divisible by n_heads {self.n_heads}")
        if self.d_model % 2:
            raise ValueError(f"d_model must be even (sinusoidal voice positions), got {self.d_model}")
        for name in ("dropout", "proj_dropout"):
            if not 0.0 <= float(getattr(self, name)) < 1.0:
                raise ValueError(f"FAAConfig.{name} must be in [0, 1), got {getattr(self, name)}")
        if self.mlp_ratio <= 0:
            raise ValueError(f"FAAConfig.mlp_ratio must be positive, got {self.mlp_ratio}")
        if len(self.face_grid) != 2 or min(self.face_grid) <= 0:
            raise ValueError(f"face_grid must be two positive ints, got {self.face_grid}")
        if not isinstance(self.cosine_residual, bool):
            raise ValueError(f"FAAConfig.cosine_residual must be true or false, got {self.cosine_residual!r}")
        if not 0 < self.init_temperature < 1:
            raise ValueError(f"init_temperature must be in (0, 1), got {self.init_temperature}")

    @property
    def global_only(self) -> bool:
        return self.face_token_dim == 0 and self.voice_token_dim == 0

    @property
    def face_tokens(self) -> int:
        return self.face_grid[0] * self.face_grid[1] if self.face_token_dim else 0

    @property
    def init_logit_scale(self) -> float:
        return math.log(1.0 / self.init_temperature)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["face_grid"] = list(self.face_grid)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "FAAConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown FAAConfig fields: {unknown}")
        return cls(**d)
