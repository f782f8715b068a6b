"""The small FAA model behind the ``small_checkpoint`` fixture, and random encoder-like features."""

from __future__ import annotations

import torch

SMALL_CONFIG = dict(
    face_dim=512,
    voice_dim=192,
    face_token_dim=896,
    voice_token_dim=1024,
    face_grid=(8, 8),
    d_model=64,
    n_heads=2,
    n_layers=1,
    proj_hidden=64,
    embed_dim=32,
)
SMALL_TRAINED_ON = {"data": "none (random init, tests)", "synthetic": True}


def make_small_model():
    """The small FAA model (real encoder dims, tiny fusion), random init with seed 0, eval mode.

    The same every call; the global RNG state is left as it was.
    """
    from faa_core.model import FAAConfig, FAAModel

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return FAAModel(FAAConfig(**SMALL_CONFIG)).eval()


def fake_features(b: int, t: int = 7, seed: int = 0, cfg=None):
    """Encoder-shaped random inputs: voice (B,192), face (B,512), voice tokens (B,T,1024), face tokens (B,64,896)."""
    g = torch.Generator().manual_seed(seed)
    c = dict(SMALL_CONFIG) if cfg is None else cfg
    vd = c["voice_dim"] if isinstance(c, dict) else c.voice_dim
    fd = c["face_dim"] if isinstance(c, dict) else c.face_dim
    vt = c["voice_token_dim"] if isinstance(c, dict) else c.voice_token_dim
    ft = c["face_token_dim"] if isinstance(c, dict) else c.face_token_dim
    grid = c["face_grid"] if isinstance(c, dict) else c.face_grid
    voice = torch.randn(b, vd, generator=g)
    face = torch.randn(b, fd, generator=g)
    voice_tokens = torch.randn(b, t, vt, generator=g) if vt else None
    face_tokens = torch.randn(b, grid[0] * grid[1], ft, generator=g) if ft else None
    return voice, face, voice_tokens, face_tokens
