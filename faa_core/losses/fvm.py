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

__all__ = ["sample_hard_negatives", "sample_negatives", "likely_same_person", "fvm_loss"]


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
    return sample_negatives(sim, labels, generator)


def sample_negatives(
    sim: Tensor,
    labels: Tensor,
    generator: torch.Generator | None = None,
    groups: Tensor | None = None,
    exclude: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """One negative column per row, drawn by ``softmax(sim[i])`` among the allowed columns.

    Why the options: a negative only teaches the match head what separates it from the
    anchor. Negatives of another coarse group (e.g. the other gender-like group) are told apart
    by that one trait, so drawing them *within* the anchor's coarse group forces the head to
    use the other traits; and a "negative" that is really the anchor's own person (a pseudo-
    identity split over two clusters) teaches the opposite of the truth, so columns flagged as
    likely the same person are left out.

    Allowed columns of row i: ``labels[j] != labels[i]`` and not ``exclude[i, j]``; with
    ``groups``, only those with ``groups[j] == groups[i]`` when row i has any (else all its
    allowed columns). A zero ``sim`` gives a uniform draw. Same return as
    :func:`sample_hard_negatives` (which is this function without ``groups`` / ``exclude``);
    ``valid[i]`` is False where row i has no allowed column at all.

    Args:
        sim: ``[B, B]`` scaled similarities (voice i, face j).
        labels: ``[B]`` integer pseudo-labels.
        generator: optional ``torch.Generator`` on ``sim``'s device.
        groups: optional ``[B]`` integer coarse groups.
        exclude: optional ``[B, B]`` bool, True where column j must not be row i's negative.
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
    if groups is not None:
        check_labels(groups, sim.shape[0], name="groups", device=sim.device)
    if exclude is not None:
        if not isinstance(exclude, Tensor) or exclude.dtype != torch.bool or exclude.shape != sim.shape:
            got = (tuple(exclude.shape), exclude.dtype) if isinstance(exclude, Tensor) else type(exclude).__name__
            raise ValueError(f"exclude must be a bool tensor of shape {tuple(sim.shape)}, got {got}")
        if exclude.device != sim.device:
            raise ValueError(f"exclude is on {exclude.device} but sim is on {sim.device}")

    with torch.no_grad():
        s = sim.detach().float()
        if not bool(torch.isfinite(s).all()):
            raise ValueError("sim contains NaN or infinite values")
        allowed = labels.unsqueeze(1) != labels.unsqueeze(0)
        if exclude is not None:
            allowed &= ~exclude
        if groups is not None:
            in_group = allowed & (groups.unsqueeze(1) == groups.unsqueeze(0))
            has = in_group.any(dim=1, keepdim=True)
            allowed = torch.where(has, in_group, allowed)
        valid = allowed.any(dim=1)
        logits = s.masked_fill(~allowed, float("-inf"))
        # Rows without any allowed column would be all -inf (NaN softmax); give them a dummy
        # uniform row so multinomial runs, and overwrite their result below.
        logits[~valid] = 0.0
        probs = torch.softmax(logits, dim=1)
        index = torch.multinomial(probs, num_samples=1, generator=generator).squeeze(1)
        index = torch.where(valid, index, torch.zeros_like(index))
    return index.long(), valid


def likely_same_person(frozen_voice: Tensor, frozen_face: Tensor, z: float = 3.0) -> Tensor:
    """``[B, B]`` bool: pairs (i, j) whose frozen-feature similarity is an outlier of row i.

    Why: pseudo-identities split one person over several clusters, and the contrastive
    stage then ranks that person's other clusters *first* among the negatives. The frozen
    encoders still carry the person's own (private) traits, so the same person stands out in
    frozen similarity. Pair (i, j) is scored ``cos(voice_i, voice_j) + cos(face_i, face_j)`` on
    the frozen global features (row i and column j are each one voice-face pair of the batch);
    it is flagged where that score exceeds the row's median over ``j != i`` by more than ``z``
    robust standard deviations (1.4826 x the median absolute deviation: a mean and standard
    deviation would be pulled up by the very outliers they should find). The diagonal is never
    flagged (it is never a negative).
    """
    for name, t in (("frozen_voice", frozen_voice), ("frozen_face", frozen_face)):
        if not isinstance(t, Tensor) or t.dim() != 2 or not t.dtype.is_floating_point:
            raise ValueError(f"{name} must be a floating [B, D] tensor")
    if frozen_voice.shape[0] != frozen_face.shape[0]:
        raise ValueError(f"frozen_voice has {frozen_voice.shape[0]} rows but frozen_face has {frozen_face.shape[0]}")
    if not (float(z) > 0 and float(z) < float("inf")):
        raise ValueError(f"z must be a finite number > 0, got {z}")
    b = frozen_voice.shape[0]
    with torch.no_grad():
        v = F.normalize(frozen_voice.detach().double(), dim=1)
        f = F.normalize(frozen_face.detach().double(), dim=1)
        score = v @ v.T + f @ f.T
        off = ~torch.eye(b, dtype=torch.bool, device=score.device)
        if b < 3:
            return torch.zeros(b, b, dtype=torch.bool, device=score.device)
        vals = score.masked_select(off).view(b, b - 1)
        med = vals.median(dim=1, keepdim=True).values
        spread = 1.4826 * (vals - med).abs().median(dim=1, keepdim=True).values  # robust standard deviation
        return (score > med + float(z) * spread) & off


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
