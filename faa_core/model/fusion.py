"""Fuse: the multimodal encoder that decides "same person or not" for a voice-face pair.

ALBEF-style: a [CLS] token, the voice's aligned embedding and its frame tokens
attend to each other (self-attention) and then to the face's aligned embedding
and its spatial tokens (cross-attention). The [CLS] output feeds a 2-way match
head. The attention of [CLS] is kept so that a demo can show which face
regions and which moments of speech drove the decision.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from .config import FAAConfig


class Attention(nn.Module):
    """Multi-head attention that can hand back its weights (PyTorch's fast path cannot)."""

    def __init__(self, d_model: int, n_heads: int, dropout: float) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.q = nn.Linear(d_model, d_model)
        self.kv = nn.Linear(d_model, 2 * d_model)
        self.out = nn.Linear(d_model, d_model)
        self.dropout = dropout

    def forward(
        self, x: torch.Tensor, context: torch.Tensor, key_mask: Optional[torch.Tensor] = None, need_weights: bool = False
    ) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        b, tq, d = x.shape
        h, dh = self.n_heads, d // self.n_heads
        q = self.q(x).view(b, tq, h, dh).transpose(1, 2)
        k, v = self.kv(context).view(b, -1, 2, h, dh).permute(2, 0, 3, 1, 4)
        mask = None if key_mask is None else key_mask[:, None, None, :]
        p = self.dropout if self.training else 0.0
        if not need_weights:
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p)
            weights = None
        else:
            scores = (q @ k.transpose(-1, -2)) / math.sqrt(dh)
            if mask is not None:
                scores = scores.masked_fill(~mask, float("-inf"))
            weights = scores.softmax(dim=-1)
            y = F.dropout(weights, p, self.training) @ v
        return self.out(y.transpose(1, 2).reshape(b, tq, d)), weights


class FusionLayer(nn.Module):
    """Pre-norm block: self-attention over the voice side, cross-attention to the face, MLP."""

    def __init__(self, cfg: FAAConfig) -> None:
        super().__init__()
        d = cfg.d_model
        self.norm_self = nn.LayerNorm(d)
        self.self_attn = Attention(d, cfg.n_heads, cfg.dropout)
        self.norm_cross = nn.LayerNorm(d)
        self.cross_attn = Attention(d, cfg.n_heads, cfg.dropout)
        self.norm_mlp = nn.LayerNorm(d)
        hidden = int(d * cfg.mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(d, hidden), nn.GELU(), nn.Linear(hidden, d))
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x, face, voice_mask=None, need_weights=False):
        y, self_w = self.self_attn(self.norm_self(x), self.norm_self(x), voice_mask, need_weights)
        x = x + self.drop(y)
        y, cross_w = self.cross_attn(self.norm_cross(x), face, None, need_weights)
        x = x + self.drop(y)
        x = x + self.drop(self.mlp(self.norm_mlp(x)))
        return x, self_w, cross_w


def sinusoid(positions: int, dim: int, device: torch.device) -> torch.Tensor:
    """Fixed sinusoidal position codes, so recordings of any length have positions."""
    pos = torch.arange(positions, device=device, dtype=torch.float32)[:, None]
    freq = torch.exp(torch.arange(0, dim, 2, device=device, dtype=torch.float32) * (-math.log(10000.0) / dim))
    out = torch.zeros(positions, dim, device=device)
    out[:, 0::2] = torch.sin(pos * freq)
    out[:, 1::2] = torch.cos(pos * freq)
    return out


@dataclass
class FusionOutput:
    """Match logits and, when asked for, where the [CLS] token looked."""

    logits: torch.Tensor  # (B, 2); class 1 = same person
    face_attention: Optional[torch.Tensor] = None  # (B, gh, gw), sums to 1 per pair
    voice_attention: Optional[torch.Tensor] = None  # (B, T), sums to 1 over valid tokens


class MultimodalEncoder(nn.Module):
    """Voice side as queries, face side as memory; the match head reads [CLS]."""

    def __init__(self, cfg: FAAConfig) -> None:
        super().__init__()
        d = cfg.d_model
        self.cfg = cfg
        self.voice_global_in = nn.Linear(cfg.embed_dim, d)
        self.face_global_in = nn.Linear(cfg.embed_dim, d)
        self.voice_tokens_in = (
            nn.Sequential(nn.Linear(cfg.voice_token_dim, d), nn.LayerNorm(d)) if cfg.voice_token_dim else None
        )
        self.face_tokens_in = (
            nn.Sequential(nn.Linear(cfg.face_token_dim, d), nn.LayerNorm(d)) if cfg.face_token_dim else None
        )
        self.cls = nn.Parameter(torch.zeros(1, 1, d))
        self.voice_type = nn.Parameter(torch.zeros(3, d))  # [CLS], global, frame token
        self.face_pos = nn.Parameter(torch.zeros(1 + cfg.face_tokens, d))  # global, then the grid
        self.face_norm = nn.LayerNorm(d)
        self.layers = nn.ModuleList(FusionLayer(cfg) for _ in range(cfg.n_layers))
        self.norm = nn.LayerNorm(d)
        self.match_head = nn.Linear(d, 2)
        # cosine_residual: same-person logit += gain * cos(voice, face); the gain starts at the
        # contrastive stage's initial scale (1 / temperature), so an untrained head scores like the cosine
        self.cosine_gain = nn.Parameter(torch.tensor(1.0 / cfg.init_temperature)) if cfg.cosine_residual else None
        nn.init.normal_(self.cls, std=0.02)
        nn.init.normal_(self.voice_type, std=0.02)
        nn.init.normal_(self.face_pos, std=0.02)

    def _voice_sequence(self, voice_emb, voice_tokens, voice_mask, rows=None):
        b = voice_emb.shape[0]
        parts = [
            self.cls.expand(b, -1, -1) + self.voice_type[0],
            self.voice_global_in(voice_emb)[:, None] + self.voice_type[1],
        ]
        mask = None
        if self.voice_tokens_in is not None:
            if voice_tokens is None:
                raise ValueError("this model was built with voice tokens; pass voice_tokens")
            t = voice_tokens.shape[1]
            frames = self.voice_tokens_in(voice_tokens)
            if rows is not None:  # tokens given once per item, projected once, then gathered per pair
                frames = frames.index_select(0, rows)  # (index_select: deterministic backward on CPU)
                voice_mask = None if voice_mask is None else voice_mask[rows]
            frames = frames + self.voice_type[2]
            parts.append(frames + sinusoid(t, frames.shape[-1], frames.device))
            if voice_mask is not None:
                valid = voice_mask.bool()
                mask = torch.cat([torch.ones(b, 2, dtype=torch.bool, device=valid.device), valid], dim=1)
        return torch.cat(parts, dim=1), mask

    def _face_memory(self, face_emb, face_tokens, rows=None):
        parts = [self.face_global_in(face_emb)[:, None]]
        if self.face_tokens_in is not None:
            if face_tokens is None:
                raise ValueError("this model was built with face tokens; pass face_tokens")
            if face_tokens.shape[1] != self.cfg.face_tokens:
                raise ValueError(f"expected {self.cfg.face_tokens} face tokens, got {face_tokens.shape[1]}")
            projected = self.face_tokens_in(face_tokens)
            parts.append(projected if rows is None else projected.index_select(0, rows))
        return self.face_norm(torch.cat(parts, dim=1) + self.face_pos)

    def forward(
        self,
        voice_emb: torch.Tensor,
        face_emb: torch.Tensor,
        voice_tokens: Optional[torch.Tensor] = None,
        face_tokens: Optional[torch.Tensor] = None,
        voice_mask: Optional[torch.Tensor] = None,
        need_weights: bool = False,
        voice_rows: Optional[torch.Tensor] = None,
        face_rows: Optional[torch.Tensor] = None,
    ) -> FusionOutput:
        """Logits of B pairs (row i of the voice inputs with row i of the face inputs).

        With ``voice_rows`` / ``face_rows`` (B indices) the tokens (and voice
        mask) are given once per item and pair i uses item ``rows[i]``: the token
        projections then run once per item, which training uses when the same
        items appear in several pairs (positives and hard negatives).
        """
        x, mask = self._voice_sequence(voice_emb, voice_tokens, voice_mask, voice_rows)
        face = self._face_memory(face_emb, face_tokens, face_rows)
        self_ws, cross_ws = [], []
        for layer in self.layers:
            x, sw, cw = layer(x, face, mask, need_weights)
            self_ws.append(sw)
            cross_ws.append(cw)
        logits = self.head_logits(x[:, 0], voice_emb, face_emb)
        if not need_weights:
            return FusionOutput(logits)
        return FusionOutput(logits, self._face_map(cross_ws), self._voice_curve(self_ws))

    def head_logits(self, cls_out: torch.Tensor, voice_emb: torch.Tensor, face_emb: torch.Tensor) -> torch.Tensor:
        """Match logits from the [CLS] output; with ``cosine_residual`` plus gain x aligned cosine on class 1."""
        logits = self.match_head(self.norm(cls_out))
        if self.cosine_gain is None:
            return logits
        cos = (voice_emb * face_emb).sum(dim=-1)
        return logits + torch.stack([torch.zeros_like(cos), self.cosine_gain * cos], dim=-1)

    def _face_map(self, cross_ws):
        """[CLS] cross-attention over the face grid, averaged over heads and layers."""
        if self.face_tokens_in is None:
            return None
        w = torch.stack([cw[:, :, 0, 1:] for cw in cross_ws]).mean(dim=(0, 2))
        w = w / w.sum(dim=-1, keepdim=True).clamp_min(1e-12)
        return w.view(-1, *self.cfg.face_grid)

    def _voice_curve(self, self_ws):
        """[CLS] self-attention over the voice frame tokens, averaged over heads and layers."""
        if self.voice_tokens_in is None:
            return None
        w = torch.stack([sw[:, :, 0, 2:] for sw in self_ws]).mean(dim=(0, 2))
        return w / w.sum(dim=-1, keepdim=True).clamp_min(1e-12)
