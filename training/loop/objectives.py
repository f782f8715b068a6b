"""The training objectives as one table: what each learns from, with which loss, and what it adds to the model.

The trainer asks this table every objective-specific question (which labels,
which batch loss, whether the match head is trained and fusion scores
validation, what to cluster, which extra parameters) instead of comparing
objective names. Adding an objective is a row of :data:`OBJECTIVES` plus its
batch loss in :data:`LOSSES` (and, if it has its own parameters or state, a
:class:`Parts` subclass).

The config's ``loss.fvc``, ``loss.fvm`` and ``clustering.space`` default to
``null``, meaning "the objective's own" (its row's ``loss``, ``trains_fvm``
and ``clustering_space``); :func:`training.config.load_config` writes the
resolved values into the config, so a run folder records what was used.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping, Optional

import numpy as np
import torch
import torch.nn.functional as F

from faa_core.losses import IdentityReweighter, fvc_infonce, fvc_multi_similarity, wen_variant_loss
from training.loop.wen2021 import Wen2021Parts


# -- what an objective adds to the model ------------------------------------------------------------
class Parts:
    """An objective's own trainable parameters and state beside the FAA model (none by default).

    ``parameters`` go into the trainer's ``extra`` ParameterDict (so the
    optimiser, DDP and ``state.pt`` see them); ``state_dict`` holds what is not
    a parameter (e.g. running statistics) for resuming.
    """

    def __init__(self, cfg: Mapping[str, Any], identities: np.ndarray, embed_dim: int, device: torch.device) -> None:
        self.parameters: dict[str, torch.nn.Parameter] = {}

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        pass


class WenParts(Parts):
    """The project's Wen variant: a shared identity classifier (trained) and the variant's reweighter (state)."""

    def __init__(self, cfg: Mapping[str, Any], identities: np.ndarray, embed_dim: int, device: torch.device) -> None:
        super().__init__(cfg, identities, embed_dim, device)
        n_id = int(identities.max()) + 1
        self.parameters["classifier"] = torch.nn.Parameter((torch.randn(n_id, embed_dim) * 0.01).to(device))
        self.reweighter = IdentityReweighter(n_id, drop_fraction=cfg["loss"]["reweight_drop_fraction"])

    def state_dict(self) -> dict[str, Any]:
        return {"reweighter": self.reweighter.state_dict()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.reweighter.load_state_dict(state["reweighter"])


# -- batch losses -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LossInput:
    """What a batch loss may use besides the two modalities' embeddings and the labels."""

    model: Any  # FAAModel
    loss_cfg: Mapping[str, Any]  # the config's loss section
    extra: torch.nn.ParameterDict  # the objective's parameters (Parts.parameters, as trained)
    parts: Parts
    rnd: int


def _infonce(v: torch.Tensor, f: torch.Tensor, labels: torch.Tensor, x: LossInput) -> torch.Tensor:
    return fvc_infonce(v, f, labels, x.model.logit_scale)


def _multi_similarity(v: torch.Tensor, f: torch.Tensor, labels: torch.Tensor, x: LossInput) -> torch.Tensor:
    c = x.loss_cfg
    return fvc_multi_similarity(v, f, labels, c["ms_alpha"], c["ms_beta"], c["ms_base"])


def _wen_two_level(v: torch.Tensor, f: torch.Tensor, labels: torch.Tensor, x: LossInput) -> torch.Tensor:
    c, reweighter = x.loss_cfg, x.parts.reweighter  # type: ignore[attr-defined]
    weights = reweighter.weights().to(v.device) if x.rnd >= c["reweight_start_round"] else None
    classifier = F.normalize(x.extra["classifier"], dim=1)
    loss = wen_variant_loss(v, f, labels, classifier, sample_weight=weights,
                              local_weight=c["wen_local_weight"], scale=c["wen_scale"])
    with torch.no_grad():
        ce = lambda e: F.cross_entropy(c["wen_scale"] * e @ classifier.T, labels, reduction="none")  # noqa: E731
        reweighter.update(labels.cpu(), ((ce(v) + ce(f)) / 2).cpu())
    return loss


def _wen2021(v: torch.Tensor, f: torch.Tensor, labels: torch.Tensor, x: LossInput) -> torch.Tensor:
    return x.parts.loss(v, f, labels, x.extra)  # type: ignore[attr-defined]


def _fitted(v: torch.Tensor, f: torch.Tensor, labels: torch.Tensor, x: LossInput) -> torch.Tensor:
    raise RuntimeError("a fitted objective (cca, cca_supervised) takes no optimiser steps")


@dataclass(frozen=True)
class BatchLoss:
    """A batch-global loss on the aligned embeddings of one step."""

    fn: Callable[[torch.Tensor, torch.Tensor, torch.Tensor, LossInput], torch.Tensor]
    log: str  # the name its value is logged under in metrics.jsonl
    uses_logit_scale: bool  # whether its gradient reaches the model's logit scale (DDP must know unused ones)


LOSSES: dict[str, BatchLoss] = {
    "infonce": BatchLoss(_infonce, "fvc", True),
    "multi_similarity": BatchLoss(_multi_similarity, "fvc", False),
    "wen_two_level": BatchLoss(_wen_two_level, "wen", False),  # the project's variant of Wen 2021 (wen_variant_loss)
    "wen2021": BatchLoss(_wen2021, "wen", False),  # Wen 2021 as their code computes it (training/loop/wen2021.py)
    "cca": BatchLoss(_fitted, "cca", False),  # the linear baselines are fitted, not stepped
}


# -- the table ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Objective:
    """One training objective.

    ``supervised``: labels are the true identities (every training video needs
    one); otherwise per-round k-means pseudo-labels on ``clustering_space``
    (``input``: the frozen features; ``learned``: the current embeddings), with
    the progressive cluster schedule. ``loss`` is the default batch loss and
    ``losses`` those ``loss.fvc`` may choose instead. ``trains_fvm``: the match
    head is trained (FVM) unless ``loss.fvm=false``, and then fusion scores
    validation; objectives without it refuse ``loss.fvm=true``.
    ``raw_embeddings``: the batch loss gets the projection heads' outputs before
    L2 normalisation (Wen's classifier). ``fitted``: no optimiser steps; the
    round's labels are used once to fit the heads in closed form
    (``training/loop/linear_fit.py``), validated, and the run ends.
    """

    name: str
    summary: str
    supervised: bool
    loss: str
    losses: tuple[str, ...]
    trains_fvm: bool
    clustering_space: Optional[str] = None
    parts: type[Parts] = Parts
    raw_embeddings: bool = False
    fitted: bool = False


OBJECTIVES: dict[str, Objective] = {o.name: o for o in (
    Objective("faa", "FAA: pseudo-labels from k-means, contrastive alignment (FVC) + match head (FVM)",
              supervised=False, loss="multi_similarity", losses=("multi_similarity", "infonce"), trains_fvm=True,
              clustering_space="input"),
    Objective("sl", "Self-Lifting: Multi-Similarity on k-means pseudo-labels of the learned embeddings, cosine scoring",
              supervised=False, loss="multi_similarity", losses=("multi_similarity", "infonce"), trains_fvm=False,
              clustering_space="learned"),
    Objective("faa_supervised", "FAA with the true identities instead of pseudo-labels (its ceiling)",
              supervised=True, loss="infonce", losses=("infonce", "multi_similarity"), trains_fvm=True),
    Objective("wen2021", "Wen et al. 2021 as their code trains it: shared classifier + cross logit, curriculum "
              "reweighting stage then a main stage with frozen weights (supervised)",
              supervised=True, loss="wen2021", losses=("wen2021",), trains_fvm=False, parts=Wen2021Parts,  # type: ignore[arg-type]
              raw_embeddings=True),
    Objective("wen2021_variant", "this project's variant of Wen 2021: scaled cosine classifier + multi-positive "
              "InfoNCE, hard identities weighted up (supervised)",
              supervised=True, loss="wen_two_level", losses=("wen_two_level",), trains_fvm=False, parts=WenParts),
    Objective("cca_supervised", "linear baseline: regularised CCA on identity-mean frozen features, cosine scoring",
              supervised=True, loss="cca", losses=("cca",), trains_fvm=False, fitted=True),
    Objective("cca", "linear baseline: regularised CCA on pseudo-identity means (FAA's first clustering), cosine scoring",
              supervised=False, loss="cca", losses=("cca",), trains_fvm=False, clustering_space="input", fitted=True),
)}


def objective(name: str) -> Objective:
    """The row of ``name`` (KeyError names the known ones)."""
    try:
        return OBJECTIVES[name]
    except KeyError:
        raise KeyError(f"unknown objective {name!r}; known: {', '.join(OBJECTIVES)}") from None
