"""FVM's negatives: how the trainer picks a negative face per voice and a negative voice per face.

``pairs.negatives`` selects the mode:

* ``uniform``: any column of another pseudo-label, uniformly;
* ``hard``: the same columns, drawn by ``softmax(exp(logit_scale) * cosine)`` (ALBEF);
* ``group`` / ``group_hard``: as ``uniform`` / ``hard``, but for a share ``pairs.group_share``
  of the anchors only among columns of the anchor's own *coarse group* -- k-means with
  ``pairs.groups`` clusters (default 2) on the pooled aligned embeddings of the training videos,
  recomputed every round. Why: measured on synthetic worlds with their truth
  (``benchmarks/negatives_audit.py``), the aligned space's coarsest split follows the
  gender-like trait (2 groups: >95% purity), and uniform / hard negatives share the anchor's
  gender-like trait only about half / two thirds of the time, so the match head can separate most
  negatives by that one trait. Negatives of the anchor's group make it use the other traits;
  the rest of the anchors keep an unrestricted negative so that it still learns the coarse
  trait itself.

Every draw uses the trainer's CPU generator, so the pairs do not depend on the device.
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np
import torch

from faa_core.clustering import dual_modality_pooling, kmeans
from faa_core.losses import sample_negatives

NEGATIVES = ("uniform", "hard", "group", "group_hard")


def uses_groups(mode: str) -> bool:
    return mode.startswith("group")


def coarse_groups(model: Any, voice: Any, face: Any, index: Any, k: int, seed: int) -> np.ndarray:
    """Per training video, its coarse group: k-means (``k`` small) on pooled aligned embeddings (-1: none)."""
    from training.eval.scoring import embed_items

    was = model.training
    model.eval()
    v = embed_items(model, voice, index.voice_video_items, "voice").cpu().numpy()
    f = embed_items(model, face, index.face_video_items, "face").cpu().numpy()
    model.train(was)
    keys, pooled = dual_modality_pooling(v, index.voice_video, f, index.face_video)
    out = np.full(len(index), -1, dtype=np.int64)
    out[np.asarray(keys, dtype=np.int64)] = kmeans(pooled, k, niter=20, seed=seed).labels
    return out


def draw_negatives(
    mode: str, sim: torch.Tensor, labels: torch.Tensor, gen: torch.Generator,
    groups: Optional[torch.Tensor] = None, group_share: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(a negative face per voice, its validity, a negative voice per face, its validity).

    ``sim`` is the scaled voice-face similarity (used by the ``*hard`` modes only), ``groups``
    the batch rows' coarse groups (``group*`` modes). ``uniform`` and ``hard`` draw exactly as
    the trainer always has.
    """
    if mode not in NEGATIVES:
        raise ValueError(f"pairs.negatives must be one of {', '.join(NEGATIVES)}, got {mode!r}")
    s = sim if mode.endswith("hard") else torch.zeros_like(sim)
    if not uses_groups(mode):
        neg_f, ok_f = sample_negatives(s, labels, gen)
        neg_v, ok_v = sample_negatives(s.T, labels, gen)
        return neg_f, ok_f, neg_v, ok_v
    if groups is None:
        raise ValueError(f"pairs.negatives={mode} needs the rows' coarse groups")
    out = []
    for m in (s, s.T):
        neg, ok = sample_negatives(m, labels, gen, groups=groups)
        if group_share < 1.0:
            free, free_ok = sample_negatives(m, labels, gen)
            keep = torch.rand(len(labels), generator=gen) < group_share
            neg, ok = torch.where(keep, neg, free), torch.where(keep, ok, free_ok)
        out += [neg, ok]
    return out[0], out[1], out[2], out[3]
