"""The FAA model: align (projection heads + temperature) then fuse (multimodal encoder)."""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from .config import FAAConfig
from .fusion import FusionOutput, MultimodalEncoder
from .heads import ProjectionHeads


class FAAModel(nn.Module):
    """Trainable part of FAA on top of frozen encoder features.

    ``embed_voice`` / ``embed_face`` give the aligned, L2-normalised embeddings
    whose cosine is the contrastive score; ``match`` runs the multimodal encoder
    on voice-face pairs and gives match logits (and attention on request).
    """

    def __init__(self, config: FAAConfig) -> None:
        super().__init__()
        self.config = config
        self.heads = ProjectionHeads(
            config.face_dim, config.voice_dim, config.proj_hidden, config.embed_dim, config.proj_dropout
        )
        self.logit_scale = nn.Parameter(torch.tensor(float(config.init_logit_scale)))
        self.fusion = MultimodalEncoder(config)

    def embed_voice(self, voice_global: torch.Tensor) -> torch.Tensor:
        return self.heads.voice(voice_global)

    def embed_face(self, face_global: torch.Tensor) -> torch.Tensor:
        return self.heads.face(face_global)

    def match(
        self,
        voice_global: torch.Tensor,
        face_global: torch.Tensor,
        voice_tokens: Optional[torch.Tensor] = None,
        face_tokens: Optional[torch.Tensor] = None,
        voice_mask: Optional[torch.Tensor] = None,
        need_weights: bool = False,
        voice_emb: Optional[torch.Tensor] = None,
        face_emb: Optional[torch.Tensor] = None,
        voice_rows: Optional[torch.Tensor] = None,
        face_rows: Optional[torch.Tensor] = None,
    ) -> FusionOutput:
        """Score B voice-face pairs (row i with row i).

        Already computed aligned embeddings can be passed as ``voice_emb`` /
        ``face_emb`` to skip the projection heads; ``voice_rows`` / ``face_rows``
        let tokens be given once per item (see ``MultimodalEncoder.forward``).
        """
        if voice_emb is None:
            voice_emb = self.embed_voice(voice_global)
        if face_emb is None:
            face_emb = self.embed_face(face_global)
        if voice_emb.shape[0] != face_emb.shape[0]:
            raise ValueError(f"pair count differs: {voice_emb.shape[0]} voices, {face_emb.shape[0]} faces")
        return self.fusion(voice_emb, face_emb, voice_tokens, face_tokens, voice_mask, need_weights, voice_rows, face_rows)

    forward = match

    @staticmethod
    def match_probability(logits: torch.Tensor) -> torch.Tensor:
        """P(same person) from the 2-way match logits."""
        return logits.float().softmax(dim=-1)[..., 1]
