"""Face-voice contrastive (FVC) losses: the *align* stage of FAA and the SL baseline.

Two cross-modal objectives over pseudo-labels are offered (docs/method.md):

* :func:`fvc_infonce` — CLIP-style InfoNCE with a learnable temperature, generalised to
  several positives per anchor (every pair sharing the pseudo-label), SupCon-style.
  Pseudo-labels make same-cluster pairs in a batch common, and treating them as negatives
  would push apart exactly the items clustering says belong together.
* :func:`fvc_multi_similarity` — Self-Lifting's Multi-Similarity loss on the concatenation
  of both modalities.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from ._checks import check_embeddings, check_labels, check_pair, check_positive, zero_with_grad

__all__ = ["MAX_LOGIT_SCALE", "fvc_infonce", "multi_similarity_loss", "fvc_multi_similarity"]

#: Upper bound of ``logit_scale`` (CLIP's choice): temperature never goes below 1/100,
#: which keeps the softmax from collapsing to a hard max early in training.
MAX_LOGIT_SCALE: float = math.log(100.0)


def _multi_positive_nll(logits: Tensor, pos_mask: Tensor) -> Tensor:
    """Per-row loss: minus the mean over the row's positives of log_softmax(row)."""
    log_prob = F.log_softmax(logits, dim=1)
    n_pos = pos_mask.sum(dim=1)
    # masked_fill instead of multiplication: -inf * 0 would give NaN if a logit overflowed.
    pos_log_prob = log_prob.masked_fill(~pos_mask, 0.0).sum(dim=1)
    return -pos_log_prob / n_pos.clamp(min=1)


def fvc_infonce(voice: Tensor, face: Tensor, labels: Tensor, logit_scale: Tensor | float) -> Tensor:
    """Symmetric multi-positive InfoNCE between voice and face embeddings.

    Args:
        voice: ``[B, D]`` L2-normalised voice embeddings; row i pairs with ``face[i]``.
        face: ``[B, D]`` L2-normalised face embeddings.
        labels: ``[B]`` integer pseudo-labels of the pairs.
        logit_scale: learnable scalar, ``log(1 / temperature)``; clamped here to at most
            ``log(100)`` (gradient is zero while clamped, as in CLIP).

    Returns:
        Scalar loss: the mean of the voice→face (rows) and face→voice (columns) losses.
        For anchor i the loss is ``-mean_{j: labels[j]==labels[i]} log_softmax(logits[i])[j]``
        with ``logits = exp(logit_scale) * voice @ face.T``. With all labels distinct this is
        exactly CLIP's symmetric cross-entropy.
    """
    check_pair(voice, face)
    check_labels(labels, voice.shape[0], device=voice.device)
    if not isinstance(logit_scale, Tensor):
        logit_scale = torch.as_tensor(float(logit_scale), dtype=voice.dtype, device=voice.device)
    if logit_scale.numel() != 1:
        raise ValueError(f"logit_scale must be a scalar tensor, got shape {tuple(logit_scale.shape)}")
    if not logit_scale.dtype.is_floating_point:
        raise ValueError(f"logit_scale must be a floating tensor, got dtype {logit_scale.dtype}")

    scale = logit_scale.reshape(()).clamp(max=MAX_LOGIT_SCALE).exp()
    logits = scale * (voice @ face.t())
    pos = labels.unsqueeze(1) == labels.unsqueeze(0)  # symmetric, diagonal always True
    loss_v2f = _multi_positive_nll(logits, pos).mean()
    loss_f2v = _multi_positive_nll(logits.t(), pos.t()).mean()
    return 0.5 * (loss_v2f + loss_f2v)


def multi_similarity_loss(
    emb: Tensor,
    labels: Tensor,
    alpha: float = 2.0,
    beta: float = 50.0,
    base: float = 1.0,
) -> Tensor:
    """Multi-Similarity loss (Wang et al., CVPR 2019) on cosine similarities, without a miner.

    For anchor i with positives ``P_i`` (same label, not i) and negatives ``N_i``:
    ``(1/alpha) log(1 + sum_P exp(-alpha (s_ij - base))) + (1/beta) log(1 + sum_N exp(beta (s_ij - base)))``.
    The sums are computed as a logsumexp with an appended zero, which is the "1 +" term and
    keeps the computation stable for large ``beta``. The result is the mean over anchors with
    a positive loss (SL's reducer), so anchors without any pair do not dilute the average;
    a zero that still carries a graph is returned when no anchor has a loss.

    Args:
        emb: ``[N, D]`` embeddings (normalised inside).
        labels: ``[N]`` integer labels.
        alpha, beta: sharpness of the positive and negative terms (> 0).
        base: similarity margin the terms are centred on.
    """
    check_embeddings(emb, "emb")
    check_labels(labels, emb.shape[0], device=emb.device)
    check_positive(alpha, "alpha")
    check_positive(beta, "beta")
    if not math.isfinite(float(base)):
        raise ValueError(f"base must be finite, got {base}")

    x = F.normalize(emb, dim=1)
    sim = x @ x.t()
    n = sim.shape[0]
    same = labels.unsqueeze(1) == labels.unsqueeze(0)
    eye = torch.eye(n, dtype=torch.bool, device=emb.device)
    pos_mask = same & ~eye
    neg_mask = ~same

    zeros = sim.new_zeros(n, 1)
    pos_arg = (-alpha * (sim - base)).masked_fill(~pos_mask, float("-inf"))
    neg_arg = (beta * (sim - base)).masked_fill(~neg_mask, float("-inf"))
    pos_term = torch.logsumexp(torch.cat([pos_arg, zeros], dim=1), dim=1) / alpha
    neg_term = torch.logsumexp(torch.cat([neg_arg, zeros], dim=1), dim=1) / beta
    per_anchor = pos_term + neg_term

    active = per_anchor > 0
    if not bool(active.any()):
        return zero_with_grad(per_anchor)
    return per_anchor[active].mean()


def fvc_multi_similarity(
    voice: Tensor,
    face: Tensor,
    labels: Tensor,
    alpha: float = 2.0,
    beta: float = 50.0,
    base: float = 1.0,
) -> Tensor:
    """Self-Lifting's cross-modal loss: Multi-Similarity on both modalities together.

    The voice and face embeddings are stacked and each pair's pseudo-label is duplicated, so
    positives and negatives are mined within and across modalities (a voice's own face is
    always among its positives).
    """
    check_pair(voice, face)
    check_labels(labels, voice.shape[0], device=voice.device)
    return multi_similarity_loss(
        torch.cat([voice, face], dim=0), torch.cat([labels, labels], dim=0), alpha=alpha, beta=beta, base=base
    )
