"""Wen et al. 2021, "Seeking the Shape of Sound": the supervised baseline, and this project's variant.

Two things live here.

**Wen 2021 as the authors' public code computes it** (objective ``wen2021``). The facts and
constants below were read from their repository (KID-7391/seeking-the-shape-of-sound); the
code is this project's own.

* Global level (:func:`wen_global_loss`): ONE linear classifier ``W`` (``[C, D]``, no bias)
  shared by both modalities, applied to the *unnormalised* embeddings; the face cross-entropy
  and the voice cross-entropy (each a batch mean) are summed.
* Local level (:func:`wen_cross_logit_loss`): their pairwise "cross logit". For an anchor ``a``
  (unnormalised) and the other modality's L2-normalised embeddings ``n_j`` of the batch, with
  ``d_j = <a, n_j>`` and ``i`` the anchor's own pair,
  ``loss = log(1 + 1 + 3.4 + sum_{j != i} exp(d_j - d_i))`` (the diagonal enters the sum as
  ``exp(0) = 1``; 3.4 is their constant). Voice anchors against faces and face anchors against
  voices, averaged.
* Weights (:class:`WenCurriculum`): a per-identity moving average of ``CE_face + CE_voice``
  (start 14.0, momentum 0.9). In the *reweighting stage* the first update keeps only the
  easiest half of the identities, each later update adds the easiest 2.4% of those not yet in,
  weights already in decay by 0.99 per update, and updates stop once 90% are in (so the hardest
  ~10% end at weight 0). Weights are divided by their mean over all identities. The *main
  stage* starts a fresh network and uses the final weights, frozen.
* How weights enter: each sample's local loss is multiplied by its identity's weight (then the
  batch mean); the global loss is multiplied by the batch's *mean* weight (their code scales
  the batch-mean cross-entropy by the weights and averages, which is this). A batch whose
  weights sum below 1e-3 gets every weight + 1.

**The project's variant** (objective ``wen2021_variant``; :func:`wen_variant_loss`,
:class:`IdentityReweighter`): the project's earlier reading of the paper's summary, kept
because it is a different, measured method: a scaled classifier on normalised embeddings, a
symmetric multi-positive InfoNCE with an optional margin, and softmax-of-loss reweighting that
favours *hard* identities and drops the hardest tail. A weight of exactly 0 removes an identity
from its batch entirely (neither anchor nor candidate).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from ._checks import check_labels, check_pair, check_positive, zero_with_grad

__all__ = [
    "CROSS_LOGIT_OFFSET",
    "wen_global_loss",
    "wen_cross_logit_loss",
    "wen2021_loss",
    "WenCurriculum",
    "wen_variant_global_loss",
    "wen_variant_local_loss",
    "wen_variant_loss",
    "IdentityReweighter",
]

# the constant inside the log of Wen's cross logit
CROSS_LOGIT_OFFSET = 3.4


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


# ------------------------------------------------------------------------------------------------
# Wen 2021 as their code does it
# ------------------------------------------------------------------------------------------------


def _check_classifier(classifier_weight: Tensor, dim: int, device: torch.device) -> None:
    if not isinstance(classifier_weight, Tensor) or classifier_weight.dim() != 2:
        shape = tuple(classifier_weight.shape) if isinstance(classifier_weight, Tensor) else type(classifier_weight)
        raise ValueError(f"classifier_weight must be a 2-D tensor [C, D], got {shape}")
    if classifier_weight.shape[1] != dim:
        raise ValueError(f"classifier_weight has dimension {classifier_weight.shape[1]} but embeddings have {dim}")
    if classifier_weight.device != device:
        raise ValueError(f"classifier_weight is on {classifier_weight.device} but embeddings are on {device}")


def _batch_weights(identity: Tensor, sample_weight: Tensor | None, num_classes: int | None, dtype: torch.dtype) -> Tensor:
    """Per-sample weights as Wen's code takes them: ``sample_weight[identity]``, + 1 if they sum below 1e-3."""
    w = _sample_weights(identity, sample_weight, num_classes).to(dtype)
    if float(w.sum()) < 1e-3:
        w = w + 1.0
    return w


def wen_global_loss(
    voice: Tensor,
    face: Tensor,
    identity: Tensor,
    classifier_weight: Tensor,
    sample_weight: Tensor | None = None,
) -> Tensor:
    """Wen's global level: ``(CE(voice @ W.T) + CE(face @ W.T)) * mean_i w_i``.

    Why one classifier for both: sharing the class vectors pulls a person's voice and face to the
    same vector, which aligns the modalities and separates identities at once.

    Args:
        voice, face: ``[B, D]`` *unnormalised* embeddings; row i of each belongs to ``identity[i]``.
        identity: ``[B]`` integer identity labels in ``[0, C)``.
        classifier_weight: ``[C, D]`` the shared class vectors (logits are plain dot products).
        sample_weight: optional ``[C]`` per-identity weights (:meth:`WenCurriculum.weights`).
    """
    check_pair(voice, face)
    _check_identity(identity, voice.shape[0], voice.device)
    _check_classifier(classifier_weight, voice.shape[1], voice.device)
    w = _batch_weights(identity, sample_weight, classifier_weight.shape[0], voice.dtype)
    target = identity.long()
    ce = F.cross_entropy(face @ classifier_weight.t(), target) + F.cross_entropy(voice @ classifier_weight.t(), target)
    return ce * w.mean()


def _cross_logit(anchor: Tensor, other: Tensor, identity: Tensor) -> Tensor:
    """Per anchor ``log(2 + 3.4 + sum_{j != i} exp(<a_i, n_j> - <a_i, n_i>))``; other same-identity columns left out."""
    d = anchor @ F.normalize(other, dim=1).t()
    diff = d - d.diagonal().unsqueeze(1)
    # Wen's batches hold distinct identities; here a batch may repeat one, and a column of the
    # anchor's own identity is no negative, so it is left out (identical when identities are distinct).
    negative = identity.unsqueeze(1) != identity.unsqueeze(0)
    terms = diff.masked_fill(~negative, float("-inf"))
    const = torch.full((d.shape[0], 1), math.log(2.0 + CROSS_LOGIT_OFFSET), dtype=d.dtype, device=d.device)
    return torch.logsumexp(torch.cat([const, terms], dim=1), dim=1)


def wen_cross_logit_loss(
    voice: Tensor,
    face: Tensor,
    identity: Tensor,
    sample_weight: Tensor | None = None,
    reduction: str = "mean",
) -> Tensor:
    """Wen's local level, the pairwise "cross logit", weighted per sample.

    Why: the global classifier only sees class vectors; this term ranks a person's own face
    above the batch's other faces (and the voice likewise) directly, pair by pair.

    Per sample i: ``0.5 * (L(voice_i vs normalised faces) + L(face_i vs normalised voices))``
    with ``L`` the cross logit of the module docstring; the result is ``mean_i w_i * loss_i``
    (``reduction="none"`` gives the weighted ``[B]`` values).
    """
    check_pair(voice, face)
    _check_identity(identity, voice.shape[0], voice.device)
    if reduction not in ("mean", "none"):
        raise ValueError(f"reduction must be 'mean' or 'none', got {reduction!r}")
    w = _batch_weights(identity, sample_weight, None, voice.dtype)
    per = 0.5 * _cross_logit(voice, face, identity) + 0.5 * _cross_logit(face, voice, identity)
    per = w * per
    return per if reduction == "none" else per.mean()


def wen2021_loss(
    voice: Tensor,
    face: Tensor,
    identity: Tensor,
    classifier_weight: Tensor,
    sample_weight: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """Wen's two-level loss (global + local, weights 1 and 1) and what the curriculum tracks.

    Returns:
        ``(loss, per_sample)``: the loss to back-propagate, and the detached ``[B]`` values
        ``CE_face_i + CE_voice_i`` (unweighted) for :meth:`WenCurriculum.observe`.
    """
    loss = wen_global_loss(voice, face, identity, classifier_weight, sample_weight) + wen_cross_logit_loss(
        voice, face, identity, sample_weight
    )
    with torch.no_grad():
        target = identity.long()
        per_sample = F.cross_entropy(face @ classifier_weight.t(), target, reduction="none") + F.cross_entropy(
            voice @ classifier_weight.t(), target, reduction="none"
        )
    return loss, per_sample.detach()


class WenCurriculum:
    """Wen's identity weights: a curriculum from the easiest identities, then frozen.

    Why: identities whose voice and face do not agree (label noise, unusable media) stay hard
    for ever; starting from the easy half and adding the next-easiest a little at a time, and
    never the hardest ~10%, keeps them from steering the embedding.

    Use: :meth:`observe` after every step of the reweighting stage; :meth:`update` at the steps
    :meth:`due` says (every ``update_every`` steps from ``warmup_steps`` on; before the first
    update every weight is 1); :meth:`freeze` at the end of the stage; :meth:`weights` as the
    losses' ``sample_weight``. Defaults are the constants of Wen's code.
    """

    def __init__(
        self,
        num_identities: int,
        initial_loss: float = 14.0,
        momentum: float = 0.9,
        start_fraction: float = 0.5,
        add_fraction: float = 0.024,
        stop_fraction: float = 0.9,
        decay: float = 0.99,
        warmup_steps: int = 500,
        update_every: int = 100,
    ) -> None:
        if isinstance(num_identities, bool) or not isinstance(num_identities, int) or num_identities < 1:
            raise ValueError(f"num_identities must be a positive int, got {num_identities!r}")
        if not (0.0 <= float(momentum) < 1.0):
            raise ValueError(f"momentum must be in [0, 1), got {momentum}")
        for name, v in (("start_fraction", start_fraction), ("add_fraction", add_fraction),
                        ("stop_fraction", stop_fraction), ("decay", decay)):
            if not (0.0 < float(v) <= 1.0):
                raise ValueError(f"{name} must be in (0, 1], got {v}")
        if not math.isfinite(float(initial_loss)):
            raise ValueError(f"initial_loss must be finite, got {initial_loss}")
        for name, v in (("warmup_steps", warmup_steps), ("update_every", update_every)):
            if isinstance(v, bool) or not isinstance(v, int) or v < (0 if name == "warmup_steps" else 1):
                raise ValueError(f"{name} must be an int >= {0 if name == 'warmup_steps' else 1}, got {v!r}")
        self.num_identities = num_identities
        self.initial_loss = float(initial_loss)
        self.momentum = float(momentum)
        self.start_fraction = float(start_fraction)
        self.add_fraction = float(add_fraction)
        self.stop_fraction = float(stop_fraction)
        self.decay = float(decay)
        self.warmup_steps = warmup_steps
        self.update_every = update_every
        self.running_loss = torch.full((num_identities,), self.initial_loss, dtype=torch.float64)
        self.weight = torch.ones(num_identities, dtype=torch.float64)
        self.ratio = -1.0  # share of identities with weight > 0; -1 before the first update
        self.frozen = False

    def due(self, step: int) -> bool:
        """Whether :meth:`update` runs before (0-based) step ``step`` of the reweighting stage."""
        return (not self.frozen) and step >= self.warmup_steps and step % self.update_every == 0

    def observe(self, identity: Tensor, per_sample_loss: Tensor) -> None:
        """Fold a batch's per-sample ``CE_face + CE_voice`` into the moving averages (duplicates averaged first)."""
        if not isinstance(identity, Tensor) or identity.dim() != 1:
            shape = tuple(identity.shape) if isinstance(identity, Tensor) else type(identity)
            raise ValueError(f"identity must be a 1-D integer tensor [B], got {shape}")
        check_labels(identity, identity.shape[0], name="identity")
        if not isinstance(per_sample_loss, Tensor) or per_sample_loss.shape != identity.shape:
            shape = tuple(per_sample_loss.shape) if isinstance(per_sample_loss, Tensor) else type(per_sample_loss)
            raise ValueError(f"per_sample_loss must be a tensor of shape {tuple(identity.shape)}, got {shape}")
        if identity.numel() == 0:
            return
        ids = identity.detach().cpu().long()
        if int(ids.min()) < 0 or int(ids.max()) >= self.num_identities:
            raise ValueError(f"identity values must be in [0, {self.num_identities}), got "
                             f"[{int(ids.min())}, {int(ids.max())}]")
        loss = per_sample_loss.detach().cpu().to(torch.float64)
        if not bool(torch.isfinite(loss).all()):
            raise ValueError("per_sample_loss contains NaN or infinite values")
        sums = torch.zeros(self.num_identities, dtype=torch.float64).index_add_(0, ids, loss)
        counts = torch.zeros(self.num_identities, dtype=torch.float64).index_add_(0, ids, torch.ones_like(loss))
        seen = counts > 0
        self.running_loss[seen] = self.momentum * self.running_loss[seen] + (1.0 - self.momentum) * (sums[seen] / counts[seen])

    def update(self) -> bool:
        """One curriculum update; False (nothing changed) once frozen or once ``stop_fraction`` is reached."""
        if self.frozen:
            return False
        if self.ratio < 0:
            self.weight.zero_()
            add = self.start_fraction
        else:
            add = self.add_fraction
        if self.ratio >= self.stop_fraction:
            return False
        n = int(add * self.num_identities)
        # the easiest identities not yet in (those already in sort after all others)
        key = self.running_loss + torch.where(self.weight > 0, 1e6, 0.0)
        top = torch.argsort(key, stable=True)[:n]
        self.weight *= self.decay
        self.weight[top] = 1.0
        self.ratio = float((self.weight > 0).double().mean())
        return True

    def freeze(self) -> None:
        """End of the reweighting stage: the weights stay as they are from now on."""
        self.frozen = True

    def weights(self) -> Tensor:
        """``[C]`` float32 weights divided by their mean over all identities (all 1 before the first update)."""
        return (self.weight * self.num_identities / self.weight.sum()).to(torch.float32)

    def state_dict(self) -> dict[str, object]:
        """Everything, so a resumed run continues the same curriculum."""
        return {
            "num_identities": self.num_identities, "running_loss": self.running_loss.clone(),
            "weight": self.weight.clone(), "ratio": self.ratio, "frozen": self.frozen,
        }

    def load_state_dict(self, state: dict[str, object]) -> None:
        """Restore :meth:`state_dict` output; the identity count must match."""
        if int(state["num_identities"]) != self.num_identities:  # type: ignore[arg-type]
            raise ValueError(f"state has {state['num_identities']} identities but this curriculum has {self.num_identities}")
        running = torch.as_tensor(state["running_loss"], dtype=torch.float64)
        weight = torch.as_tensor(state["weight"], dtype=torch.float64)
        if running.shape != (self.num_identities,) or weight.shape != (self.num_identities,):
            raise ValueError("state running_loss and weight must both have shape [num_identities]")
        self.running_loss, self.weight = running.clone(), weight.clone()
        self.ratio = float(state["ratio"])  # type: ignore[arg-type]
        self.frozen = bool(state["frozen"])


# ------------------------------------------------------------------------------------------------
# The project's variant (objective wen2021_variant)
# ------------------------------------------------------------------------------------------------


def wen_variant_global_loss(
    voice: Tensor,
    face: Tensor,
    identity: Tensor,
    classifier_weight: Tensor,
    sample_weight: Tensor | None = None,
    scale: float = 1.0,
) -> Tensor:
    """Variant, global level: weighted identity classification with one classifier for both modalities.

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


def wen_variant_local_loss(
    voice: Tensor,
    face: Tensor,
    identity: Tensor,
    sample_weight: Tensor | None = None,
    margin: float = 0.0,
    scale: float = 10.0,
) -> Tensor:
    """Variant, local level: weighted symmetric cross-modal InfoNCE with identity positives.

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


def wen_variant_loss(
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
    """The variant's two-level loss: ``global + local_weight * local``.

    ``scale`` is the global classifier's logit scale, ``local_scale`` and ``margin`` those of
    the local loss (see :func:`wen_variant_global_loss` and :func:`wen_variant_local_loss`).
    """
    if not (math.isfinite(float(local_weight)) and float(local_weight) >= 0.0):
        raise ValueError(f"local_weight must be a finite number >= 0, got {local_weight}")
    g = wen_variant_global_loss(voice, face, identity, classifier_weight, sample_weight=sample_weight, scale=scale)
    loc = wen_variant_local_loss(voice, face, identity, sample_weight=sample_weight, margin=margin, scale=local_scale)
    return g + local_weight * loc


class IdentityReweighter:
    """The variant's identity reweighting: emphasise hard-but-learnable identities, drop unlearnable ones.

    Keeps an exponential moving average of each identity's loss. :meth:`weights` returns
    per-identity weights for the variant's losses:

    * identities never seen by :meth:`update` get weight 1;
    * among seen identities, the ``floor(drop_fraction * n_seen)`` with the highest running loss
      get weight 0 (taken to be unlearnable: label noise, unusable media);
    * the remaining seen identities get ``softmax(running_loss / temperature)`` rescaled to mean 1,
      so harder identities weigh more while the overall loss scale is unchanged.

    This is the project's reading of the paper's summary, not Wen's code (see :class:`WenCurriculum`
    for that): harder identities weigh *more* here, while Wen's curriculum starts from the easiest.
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
        """``[C]`` float32 per-identity weights (CPU); pass as ``sample_weight`` to the variant's losses."""
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


# the trainer's old name for the variant's loss, until the objectives table names it
wen_two_level_loss = wen_variant_loss
