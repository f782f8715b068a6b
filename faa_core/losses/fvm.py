"""Face-voice matching (FVM): the *fuse* stage of FAA.

The multimodal encoder is trained as a binary classifier (same person / not). Easy negatives
teach it nothing that cosine similarity does not already know, so negatives are drawn from the
contrastive similarities, ALBEF-style: the more similar a face of *another* pseudo-label is to
the voice, the likelier it is picked (docs/method.md).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ._checks import check_labels

__all__ = ["sample_hard_negatives", "fvm_loss"]


def sample_hard_negatives(
    sim: Tensor,
    labels: Tensor,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    """Draw one hard negative column per row, in proportion to ``softmax(sim[i])``.

    Only columns whose label differs from ``labels[i]`` can be drawn: same-pseudo-label
    columns get exactly zero probability, because they may well be the same person. The
    sampling runs without gradient; ``sim`` should come from the contrastive stage. Its scale
    sets the sharpness, so pass temperature-scaled logits (e.g. ``exp(logit_scale) * v @ f.T``)
    for ALBEF's behaviour, or raw cosines for a flatter draw.

    Args:
        sim: ``[B, B]``; ``sim[i, j]`` is the similarity of voice i and face j.
        labels: ``[B]`` integer pseudo-labels shared by row i and column i.
        generator: optional ``torch.Generator`` for reproducible draws (must live on
            ``sim``'s device).

    Returns:
        ``(index, valid)``: ``index[i]`` is the face column drawn for voice i (a long tensor)
        and ``valid[i]`` is False where row i has no column of another label (then
        ``index[i] == 0`` and the row must be skipped).

    Calling it with ``sim.T`` gives, for each face j, the index of a negative *voice*.
    """
    if not isinstance(sim, Tensor):
        raise ValueError(f"sim must be a torch.Tensor, got {type(sim).__name__}")
    if sim.dim() != 2 or sim.shape[0] != sim.shape[1]:
        raise ValueError(f"sim must be a square [B, B] matrix, got shape {tuple(sim.shape)}")
    if sim.shape[0] == 0:
        raise ValueError("sim must have at least one row")
    if not sim.dtype.is_floating_point:
        raise ValueError(f"sim must be a floating tensor, got dtype {sim.dtype}")
    check_labels(labels, sim.shape[0], device=sim.device)

    with torch.no_grad():
        s = sim.detach().float()
        if not bool(torch.isfinite(s).all()):
            raise ValueError("sim contains NaN or infinite values")
        allowed = labels.unsqueeze(1) != labels.unsqueeze(0)
        valid = allowed.any(dim=1)
        logits = s.masked_fill(~allowed, float("-inf"))
        # Rows without any allowed column would be all -inf (NaN softmax); give them a dummy
        # uniform row so multinomial runs, and overwrite their result below.
        logits[~valid] = 0.0
        probs = torch.softmax(logits, dim=1)
        index = torch.multinomial(probs, num_samples=1, generator=generator).squeeze(1)
        index = torch.where(valid, index, torch.zeros_like(index))
    return index.long(), valid


def fvm_loss(pos_logits: Tensor, neg_logits: Tensor) -> Tensor:
    """Cross-entropy of the 2-way match head: class 1 = same person, class 0 = not.

    Args:
        pos_logits: ``[P, 2]`` match-head logits of positive (voice, face) pairs.
        neg_logits: ``[M, 2]`` logits of negative pairs.

    Returns:
        The mean over all ``P + M`` pairs (so the positive/negative balance is the caller's
        choice, typically one positive and two negatives per pair as in ALBEF). Either set may
        be empty, not both.
    """
    for name, t in (("pos_logits", pos_logits), ("neg_logits", neg_logits)):
        if not isinstance(t, Tensor):
            raise ValueError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
        if t.dim() != 2 or t.shape[1] != 2:
            raise ValueError(f"{name} must have shape [N, 2], got {tuple(t.shape)}")
        if not t.dtype.is_floating_point:
            raise ValueError(f"{name} must be a floating tensor, got dtype {t.dtype}")
    if pos_logits.device != neg_logits.device:
        raise ValueError(f"pos_logits is on {pos_logits.device} but neg_logits is on {neg_logits.device}")
    n_pos, n_neg = pos_logits.shape[0], neg_logits.shape[0]
    if n_pos + n_neg == 0:
        raise ValueError("fvm_loss needs at least one positive or negative pair, got none")

    logits = torch.cat([pos_logits, neg_logits], dim=0)
    target = torch.cat(
        [
            torch.ones(n_pos, dtype=torch.long, device=logits.device),
            torch.zeros(n_neg, dtype=torch.long, device=logits.device),
        ]
    )
    return F.cross_entropy(logits, target)
