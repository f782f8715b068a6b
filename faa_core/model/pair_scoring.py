"""Score many voice-face pairs with the multimodal encoder, doing per-item work once.

An evaluation list pairs each voice and each face with several partners, and
most of the encoder's arithmetic depends on one side only: the token
projections, the first layer's voice self-attention, and every layer's
keys and values of the face memory. :func:`encode_voices` and
:func:`encode_faces` do that work once per item; :func:`match_logits` does
the rest per pair, and in the last layer only for the [CLS] position, the
one the match head reads. The result equals ``MultimodalEncoder.forward``
in eval mode (tested); attention weights are not produced (use ``forward``
with ``need_weights`` for those).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F

from .fusion import Attention, MultimodalEncoder


@dataclass
class VoiceSide:
    """The voice sequence after the first layer's self-attention: (N, T, d), mask (N, T) or None,
    and the aligned embeddings (N, D) that the cosine-residual head reads."""

    x: torch.Tensor
    mask: Optional[torch.Tensor]
    emb: torch.Tensor

    def take(self, index: torch.Tensor) -> "VoiceSide":
        """Rows ``index``, trimmed to the longest valid sequence among them (padding is at the end)."""
        x, emb = self.x[index], self.emb[index]
        if self.mask is None:
            return VoiceSide(x, None, emb)
        mask = self.mask[index]
        t = int(mask.sum(dim=1).max())
        return VoiceSide(x[:, :t], mask[:, :t], emb)


@dataclass
class FaceSide:
    """Per layer, the cross-attention keys and values of the face memory: (N, heads, S, d_head) each,
    and the aligned embeddings (N, D)."""

    keys: list[torch.Tensor]
    values: list[torch.Tensor]
    emb: torch.Tensor

    def take(self, index: torch.Tensor) -> "FaceSide":
        return FaceSide([k[index] for k in self.keys], [v[index] for v in self.values], self.emb[index])


def _keys_values(attn: Attention, context: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    b, s, d = context.shape
    h = attn.n_heads
    k, v = attn.kv(context).view(b, s, 2, h, d // h).permute(2, 0, 3, 1, 4)
    return k, v


def _attend(attn: Attention, x: torch.Tensor, k: torch.Tensor, v: torch.Tensor, key_mask=None) -> torch.Tensor:
    b, tq, d = x.shape
    h = attn.n_heads
    q = attn.q(x).view(b, tq, h, d // h).transpose(1, 2)
    mask = None if key_mask is None else key_mask[:, None, None, :]
    y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    return attn.out(y.transpose(1, 2).reshape(b, tq, d))


@torch.inference_mode()
def encode_voices(
    enc: MultimodalEncoder, voice_emb: torch.Tensor, voice_tokens: Optional[torch.Tensor] = None,
    voice_mask: Optional[torch.Tensor] = None,
) -> VoiceSide:
    """Voice-only part of the encoder for N voices (aligned embeddings, tokens and their mask)."""
    x, mask = enc._voice_sequence(voice_emb, voice_tokens, voice_mask)
    first = enc.layers[0]
    h = first.norm_self(x)
    k, v = _keys_values(first.self_attn, h)
    x = x + _attend(first.self_attn, h, k, v, mask)
    return VoiceSide(x, mask, voice_emb)


@torch.inference_mode()
def encode_faces(enc: MultimodalEncoder, face_emb: torch.Tensor, face_tokens: Optional[torch.Tensor] = None) -> FaceSide:
    """Face-only part of the encoder for N faces: every layer's cross-attention keys and values."""
    face = enc._face_memory(face_emb, face_tokens)
    keys, values = [], []
    for layer in enc.layers:
        k, v = _keys_values(layer.cross_attn, face)
        keys.append(k)
        values.append(v)
    return FaceSide(keys, values, face_emb)


@torch.inference_mode()
def match_logits(enc: MultimodalEncoder, voice: VoiceSide, face: FaceSide) -> torch.Tensor:
    """Match logits (B, 2) of B pairs: row i of ``voice`` with row i of ``face``."""
    if enc.training:
        raise ValueError("pair scoring is for inference: call model.eval() first (dropout would differ)")
    x, mask = voice.x, voice.mask
    n = len(enc.layers)
    for i, layer in enumerate(enc.layers):
        last = i == n - 1
        if i > 0:  # the first layer's self-attention is in VoiceSide already
            h = layer.norm_self(x)
            k, v = _keys_values(layer.self_attn, h)
            if last:
                x = x[:, :1]
                h = h[:, :1]
            x = x + _attend(layer.self_attn, h, k, v, mask)
        elif last:
            x = x[:, :1]
        x = x + _attend(layer.cross_attn, layer.norm_cross(x), face.keys[i], face.values[i])
        x = x + layer.mlp(layer.norm_mlp(x))
    return enc.head_logits(x[:, 0], voice.emb, face.emb)
