"""Wen et al. 2021, "Seeking the Shape of Sound" — the supervised baseline (docs/method.md).

The paper's summary gives the structure but not the formulas, so this module is the project's
reading of it:

* **Global level** (:func:`wen_global_loss`): identity classification with ONE linear classifier
  shared by voice and face embeddings. Sharing the class weights forces both modalities of an
  identity towards the same class vector, which aligns them and separates identities globally.
* **Local level** (:func:`wen_local_loss`): a pairwise cross-modal loss within the batch. We use
  a symmetric multi-positive InfoNCE on cosine similarities (positives = same identity) with an
  optional additive margin on the positives — simple, batch-local, and it directly ranks the
  matching face above other identities' faces.
* **Dynamic identity reweighting** (:class:`IdentityReweighter`): a running loss per identity;
  harder identities get larger weights (softmax of the running loss), and the hardest tail
  (top ``drop_fraction``), taken to be unlearnable (noisy labels, bad media), gets weight 0.

A weight of exactly 0 removes an identity from a batch entirely: its samples are neither anchors
nor candidates, so their gradient is exactly zero ("filters out unlearnable ones").
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from ._checks import check_labels, check_pair, check_positive, zero_with_grad

__all__ = ["wen_global_loss", "wen_local_loss", "wen_two_level_loss", "IdentityReweighter"]


def _sample_weights(identity: Tensor, sample_weight: Tensor | None, num_classes: int | None) -> Tensor:
    """Per-sample weights ``sample_weight[identity]`` (ones when no weights are given)."""
    if sample_weight is None:
        if num_classes is not None and identity.numel() and int(identity.max()) >= num_classes:
            raise ValueError(f"identity values must be < {num_classes}, got max {int(identity.max())}")
        return torch.ones(identity.shape[0], device=identity.device)
    if not isinstance(sample_weight, Tensor):
        raise ValueError(f"sample_weight must be a torch.Tensor or None, got {type(sample_weight).__name__}")
    if sample_weight.dim() != 1:
        raise ValueError(f"sample_weight must be 1-D [C], got shape {tuple(sample_weight.shape)}")
    if num_classes is not None and sample_weight.shape[0] != num_classes:
        raise ValueError(
            f"sample_weight has {sample_weight.shape[0]} entries but the classifier has {num_classes} classes"
        )
    if not sample_weight.dtype.is_floating_point:
        raise ValueError(f"sample_weight must be a floating tensor, got dtype {sample_weight.dtype}")
    if sample_weight.device != identity.device:
        raise ValueError(f"sample_weight is on {sample_weight.device} but identity is on {identity.device}")
    if not bool(torch.isfinite(sample_weight).all()) or bool((sample_weight < 0).any()):
        raise ValueError("sample_weight must be finite and non-negative")
    if identity.numel() and int(identity.max()) >= sample_weight.shape[0]:
        raise ValueError(
            f"identity values must be < len(sample_weight) = {sample_weight.shape[0]}, got max {int(identity.max())}"
        )
    # Weights are a schedule, not something to differentiate through.
    return sample_weight.detach()[identity]


def _check_identity(identity: Tensor, n: int, device: torch.device) -> None:
    check_labels(identity, n, name="identity", device=device)
    if identity.numel() and int(identity.min()) < 0:
        raise ValueError(f"identity values must be >= 0, got min {int(identity.min())}")


def wen_global_loss(
    voice: Tensor,
    face: Tensor,
    identity: Tensor,
    classifier_weight: Tensor,
    sample_weight: Tensor | None = None,
    scale: float = 1.0,
) -> Tensor:
    """Global level: weighted identity classification with one classifier for both modalities.

    Args:
        voice, face: ``[B, D]`` embeddings; row i of each belongs to ``identity[i]``.
        identity: ``[B]`` integer identity labels in ``[0, C)``.
        classifier_weight: ``[C, D]`` shared class vectors (pass row-normalised weights and
            normalised embeddings with ``scale`` > 1 for a cosine classifier).
        sample_weight: optional ``[C]`` non-negative per-identity weights (default all 1).
        scale: multiplies the logits ``emb @ W.T``.

    Returns:
        ``sum_k w_k CE_k / sum_k w_k`` over the 2B voice and face samples, with
        ``w_k = sample_weight[identity_k]``; a zero carrying a graph if all weights are 0.
    """
    check_pair(voice, face)
    _check_identity(identity, voice.shape[0], voice.device)
    if not isinstance(classifier_weight, Tensor) or classifier_weight.dim() != 2:
        shape = tuple(classifier_weight.shape) if isinstance(classifier_weight, Tensor) else type(classifier_weight)
        raise ValueError(f"classifier_weight must be a 2-D tensor [C, D], got {shape}")
    if classifier_weight.shape[1] != voice.shape[1]:
        raise ValueError(
            f"classifier_weight has dimension {classifier_weight.shape[1]} but embeddings have {voice.shape[1]}"
        )
    if classifier_weight.device != voice.device:
        raise ValueError(f"classifier_weight is on {classifier_weight.device} but embeddings are on {voice.device}")
    check_positive(scale, "scale")
    num_classes = classifier_weight.shape[0]
    w = _sample_weights(identity, sample_weight, num_classes).to(voice.dtype)

    emb = torch.cat([voice, face], dim=0)
    target = torch.cat([identity, identity], dim=0).long()
    weights = torch.cat([w, w], dim=0)
    logits = scale * (emb @ classifier_weight.t())
    ce = F.cross_entropy(logits, target, reduction="none")
    total = weights.sum()
    if float(total) <= 0.0:
        return zero_with_grad(emb, classifier_weight)
    return (weights * ce).sum() / total


def wen_local_loss(
    voice: Tensor,
    face: Tensor,
    identity: Tensor,
    sample_weight: Tensor | None = None,
    margin: float = 0.0,
    scale: float = 10.0,
) -> Tensor:
    """Local level: weighted symmetric cross-modal InfoNCE with identity positives.

    Cosine similarities ``s = norm(voice) @ norm(face).T``; positives of voice i are the faces
    of the same identity (always including face i). Logits are ``scale * (s - margin * [positive])``,
    so a margin > 0 asks positives to win by at least ``margin`` in cosine. Per anchor the loss
    is minus the mean log-softmax over its positives, in both directions; anchors are weighted by
    ``sample_weight[identity]`` and the sum is normalised by the total weight. Samples whose
    weight is 0 are removed before the softmax, so they do not act as negatives either.

    Args:
        voice, face: ``[B, D]`` embeddings (normalised inside).
        identity: ``[B]`` integer identity labels.
        sample_weight: optional ``[C]`` non-negative per-identity weights.
        margin: additive cosine margin for the positives (>= 0).
        scale: inverse temperature (> 0).
    """
    check_pair(voice, face)
    _check_identity(identity, voice.shape[0], voice.device)
    check_positive(scale, "scale")
    if not (math.isfinite(float(margin)) and float(margin) >= 0.0):
        raise ValueError(f"margin must be a finite number >= 0, got {margin}")
    w = _sample_weights(identity, sample_weight, None).to(voice.dtype)

    keep = w > 0
    if not bool(keep.any()):
        return zero_with_grad(voice, face)
    v = F.normalize(voice[keep], dim=1)
    f = F.normalize(face[keep], dim=1)
    ids = identity[keep]
    w = w[keep]

    pos = ids.unsqueeze(1) == ids.unsqueeze(0)
    logits = scale * (v @ f.t() - margin * pos.to(v.dtype))

    def per_anchor(lg: Tensor, pm: Tensor) -> Tensor:
        log_prob = F.log_softmax(lg, dim=1)
        return -log_prob.masked_fill(~pm, 0.0).sum(dim=1) / pm.sum(dim=1)

    loss_v = per_anchor(logits, pos)
    loss_f = per_anchor(logits.t(), pos.t())
    return 0.5 * ((w * loss_v).sum() + (w * loss_f).sum()) / w.sum()


def wen_two_level_loss(
    voice: Tensor,
    face: Tensor,
    identity: Tensor,
    classifier_weight: Tensor,
    sample_weight: Tensor | None = None,
    local_weight: float = 1.0,
    scale: float = 1.0,
    local_scale: float = 10.0,
    margin: float = 0.0,
) -> Tensor:
    """Wen et al.'s two-level modality alignment loss: ``global + local_weight * local``.

    ``scale`` is the global classifier's logit scale, ``local_scale`` and ``margin`` those of
    the local loss (see :func:`wen_global_loss` and :func:`wen_local_loss`).
    """
    if not (math.isfinite(float(local_weight)) and float(local_weight) >= 0.0):
        raise ValueError(f"local_weight must be a finite number >= 0, got {local_weight}")
    g = wen_global_loss(voice, face, identity, classifier_weight, sample_weight=sample_weight, scale=scale)
    loc = wen_local_loss(voice, face, identity, sample_weight=sample_weight, margin=margin, scale=local_scale)
    return g + local_weight * loc


class IdentityReweighter:
    """Dynamic identity reweighting: emphasise hard-but-learnable identities, drop unlearnable ones.

    Keeps an exponential moving average of each identity's loss. :meth:`weights` returns
    per-identity weights for the Wen losses:

    * identities never seen by :meth:`update` get weight 1;
    * among seen identities, the ``floor(drop_fraction * n_seen)`` with the highest running loss
      get weight 0 (taken to be unlearnable: label noise, unusable media);
    * the remaining seen identities get ``softmax(running_loss / temperature)`` rescaled to mean 1,
      so harder identities weigh more while the overall loss scale is unchanged.

    This is the project's reading of the paper: its summary states the intent ("emphasises hard
    but learnable identities and filters out unlearnable ones") but not the formula.
    """

    def __init__(
        self,
        num_identities: int,
        momentum: float = 0.9,
        temperature: float = 1.0,
        drop_fraction: float = 0.05,
    ) -> None:
        if isinstance(num_identities, bool) or not isinstance(num_identities, int) or num_identities < 1:
            raise ValueError(f"num_identities must be a positive int, got {num_identities!r}")
        if not (0.0 <= float(momentum) < 1.0):
            raise ValueError(f"momentum must be in [0, 1), got {momentum}")
        check_positive(temperature, "temperature")
        if not (0.0 <= float(drop_fraction) < 1.0):
            raise ValueError(f"drop_fraction must be in [0, 1), got {drop_fraction}")
        self.num_identities = num_identities
        self.momentum = float(momentum)
        self.temperature = float(temperature)
        self.drop_fraction = float(drop_fraction)
        self.running_loss = torch.zeros(num_identities, dtype=torch.float64)
        self.seen = torch.zeros(num_identities, dtype=torch.bool)

    def update(self, identity: Tensor, per_sample_loss: Tensor) -> None:
        """Fold a batch's per-sample losses into the identities' running losses.

        Samples of the same identity are averaged first; an identity's first batch sets its
        running loss directly (no bias towards the initial zero).
        """
        if not isinstance(identity, Tensor) or identity.dim() != 1:
            shape = tuple(identity.shape) if isinstance(identity, Tensor) else type(identity)
            raise ValueError(f"identity must be a 1-D integer tensor [B], got {shape}")
        check_labels(identity, identity.shape[0], name="identity")
        if not isinstance(per_sample_loss, Tensor) or per_sample_loss.dim() != 1:
            shape = tuple(per_sample_loss.shape) if isinstance(per_sample_loss, Tensor) else type(per_sample_loss)
            raise ValueError(f"per_sample_loss must be a 1-D tensor [B], got {shape}")
        if per_sample_loss.shape[0] != identity.shape[0]:
            raise ValueError(
                f"per_sample_loss has {per_sample_loss.shape[0]} entries but identity has {identity.shape[0]}"
            )
        if identity.numel() == 0:
            return
        ids = identity.detach().cpu().long()
        if int(ids.min()) < 0 or int(ids.max()) >= self.num_identities:
            raise ValueError(
                f"identity values must be in [0, {self.num_identities}), got range "
                f"[{int(ids.min())}, {int(ids.max())}]"
            )
        loss = per_sample_loss.detach().cpu().to(torch.float64)
        if not bool(torch.isfinite(loss).all()):
            raise ValueError("per_sample_loss contains NaN or infinite values")

        sums = torch.zeros(self.num_identities, dtype=torch.float64).index_add_(0, ids, loss)
        counts = torch.zeros(self.num_identities, dtype=torch.float64).index_add_(
            0, ids, torch.ones_like(loss)
        )
        present = counts > 0
        batch_mean = sums[present] / counts[present]
        old = self.running_loss[present]
        was_seen = self.seen[present]
        self.running_loss[present] = torch.where(
            was_seen, self.momentum * old + (1.0 - self.momentum) * batch_mean, batch_mean
        )
        self.seen |= present

    def dropped(self) -> Tensor:
        """``[C]`` bool: identities currently filtered out as unlearnable."""
        out = torch.zeros(self.num_identities, dtype=torch.bool)
        seen_idx = self.seen.nonzero().squeeze(1)
        n_drop = int(math.floor(self.drop_fraction * seen_idx.numel()))
        if n_drop > 0:
            order = torch.argsort(self.running_loss[seen_idx], descending=True, stable=True)
            out[seen_idx[order[:n_drop]]] = True
        return out

    def weights(self) -> Tensor:
        """``[C]`` float32 per-identity weights (CPU); pass as ``sample_weight`` to the Wen losses."""
        w = torch.ones(self.num_identities, dtype=torch.float64)
        drop = self.dropped()
        kept = self.seen & ~drop
        if bool(kept.any()):
            z = self.running_loss[kept] / self.temperature
            w[kept] = torch.softmax(z, dim=0) * kept.sum()
        w[drop] = 0.0
        return w.to(torch.float32)

    def state_dict(self) -> dict[str, object]:
        """State for checkpoints, so a resumed run keeps its weights."""
        return {
            "num_identities": self.num_identities,
            "momentum": self.momentum,
            "temperature": self.temperature,
            "drop_fraction": self.drop_fraction,
            "running_loss": self.running_loss.clone(),
            "seen": self.seen.clone(),
        }

    def load_state_dict(self, state: dict[str, object]) -> None:
        """Restore :meth:`state_dict` output; the identity count must match."""
        if int(state["num_identities"]) != self.num_identities:  # type: ignore[arg-type]
            raise ValueError(
                f"state has {state['num_identities']} identities but this reweighter has {self.num_identities}"
            )
        running = torch.as_tensor(state["running_loss"], dtype=torch.float64)
        seen = torch.as_tensor(state["seen"], dtype=torch.bool)
        if running.shape != (self.num_identities,) or seen.shape != (self.num_identities,):
            raise ValueError("state running_loss and seen must both have shape [num_identities]")
        self.momentum = float(state["momentum"])  # type: ignore[arg-type]
        self.temperature = float(state["temperature"])  # type: ignore[arg-type]
        self.drop_fraction = float(state["drop_fraction"])  # type: ignore[arg-type]
        self.running_loss = running.clone()
        self.seen = seen.clone()
