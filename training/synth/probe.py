"""A reachable ceiling: the true shared traits read linearly from the features a model sees.

The oracle (:mod:`training.synth.oracle`) knows every item's observed shared
traits s~ exactly, which no model can: the features bury them under other
components, extra noise and (in the ``nonlinear`` variant) a random network.
The probe is what a simple read-out reaches when it is *given* the truth to
learn from: per modality, a ridge regression from the item's features to its
identity's true shared vector s_i, fitted on the world's training items, then
test pairs scored exactly as the oracle scores them (its LLR and prior), with
the read-out's own error as the noise. Two feature kinds:

* ``global``: the L2-normalised global embedding;
* ``tokens``: the mean of the item's informative tokens (face: the truth's
  region mask; voice: its voiced tokens), i.e. the best a model that attends
  perfectly and then reads linearly could see.

Calibration: ridge shrinks the predictions, so each predicted trait is mapped
back to the trait's scale with its own linear fit (s_hat = beta s + c on the
training items) before scoring; the per-dim noise is the RMS of the
calibrated residual on the training items, averaged over the two modalities
(the oracle's model has one noise for both sides).

A model that beats the probe has learned more than a linear read-out of
perfectly attended features; one far below it leaves reachable signal unused.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .oracle import oracle_llr

SOURCES = ("global", "tokens")
__all__ = ["SOURCES", "TraitProbe", "get_probe", "probe_scores"]


class TraitProbe:
    """Ridge read-outs of the true shared traits from one feature kind of a loaded world."""

    def __init__(self, world: Any, source: str = "global", alpha: float = 1.0, max_fit_items: int = 12_000,
                 chunk: int = 1024) -> None:
        if source not in SOURCES:
            raise ValueError(f"probe source must be one of {SOURCES}, got {source!r}")
        if source == "tokens" and not (world.face.has_tokens and world.voice.has_tokens):
            raise ValueError("the token probe needs face and voice tokens (this world has token_dim 0)")
        self.world = world
        self.source = source
        self.alpha = float(alpha)
        self.chunk = int(chunk)
        self._pred: dict[str, np.ndarray] = {}
        self._done: dict[str, np.ndarray] = {}
        self.weights: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}  # W, x mean, y mean
        self.calibration: dict[str, tuple[np.ndarray, np.ndarray]] = {}  # beta, c per dim
        residual_var = []
        for m in ("face", "voice"):
            src = world[m]
            train = np.flatnonzero(src.splits == "train")
            if train.size < 2:
                raise ValueError(f"the probe needs training items to fit on; {m} has {train.size}")
            if train.size > max_fit_items:  # fixed subsample: procedural worlds generate every item they read
                train = np.sort(np.random.default_rng(0).choice(train, max_fit_items, replace=False))
            x = self.features(m, train)
            y = self._targets(m, train)
            xm, ym = x.mean(0), y.mean(0)
            xc, yc = x - xm, y - ym
            w = np.linalg.solve(xc.T @ xc + self.alpha * np.eye(x.shape[1]), xc.T @ yc)
            self.weights[m] = (w, xm, ym)
            raw = xc @ w + ym
            beta, c = _calibration(raw, y)
            self.calibration[m] = (beta, c)
            residual_var.append(((raw - c) / beta - y) ** 2)
        # per shared dim; floored so that a trait constant on the training items cannot divide by zero
        self.noise = np.maximum(np.sqrt(np.mean(np.concatenate(residual_var), axis=0)), 1e-3)
        for m in ("face", "voice"):
            n, d = len(world[m]), self.noise.shape[0]
            self._pred[m] = np.zeros((n, d), dtype=np.float64)
            self._done[m] = np.zeros(n, dtype=bool)

    def _targets(self, modality: str, idx: np.ndarray) -> np.ndarray:
        """The true shared vector of each item's identity."""
        truth = self.world.truth
        return truth.identities["shared"][truth.items(modality)["identity"][idx]].astype(np.float64)

    def features(self, modality: str, idx: np.ndarray) -> np.ndarray:
        """(n, D) what the probe reads: globals, or the mean of the informative tokens."""
        src = self.world[modality]
        out = []
        for lo in range(0, idx.shape[0], self.chunk):
            part = idx[lo : lo + self.chunk]
            if self.source == "global":
                out.append(np.asarray(src.globals(part), dtype=np.float64))
                continue
            tok, mask = src.tokens(part)
            if modality == "face":
                use = np.broadcast_to(self.world.truth.face_mask.reshape(-1)[None, :], mask.shape) & mask
            else:
                use = np.zeros_like(mask)
                for j, k in enumerate(part.tolist()):
                    v = self.world.truth.voiced(int(k))
                    use[j, : v.shape[0]] = v
                use &= mask
            w = use.astype(np.float64)
            out.append(np.einsum("nt,ntc->nc", w, tok.astype(np.float64)) / np.maximum(w.sum(1, keepdims=True), 1.0))
        return np.concatenate(out) if out else np.zeros((0, src.global_dim), dtype=np.float64)

    def predict(self, modality: str, idx: Any) -> np.ndarray:
        """Calibrated predicted shared traits (n, d_s) of items (indices); cached per item."""
        idx = np.asarray(idx, dtype=np.int64).reshape(-1)
        todo = np.unique(idx[~self._done[modality][idx]])
        if todo.size:
            w, xm, ym = self.weights[modality]
            beta, c = self.calibration[modality]
            raw = (self.features(modality, todo) - xm) @ w + ym
            self._pred[modality][todo] = (raw - c) / beta
            self._done[modality][todo] = True
        return self._pred[modality][idx]

    def scores(self, voice_ids: Sequence[str], face_ids: Sequence[str], matrix: bool = False) -> np.ndarray:
        """The oracle's LLR of the predicted traits (pairs, or a matrix as in :func:`oracle_scores`)."""
        x = self.predict("voice", self.world.voice.index(voice_ids))
        y = self.predict("face", self.world.face.index(face_ids))
        return oracle_llr(x, y, self.world.model.shared_prior(), self.noise, matrix=matrix)


def _calibration(pred: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per dim beta, c of pred ~ beta * y + c; beta = 1, c = 0 where y does not vary or pred does not follow it."""
    yc = y - y.mean(0)
    var = (yc**2).mean(0)
    cov = (yc * (pred - pred.mean(0))).mean(0)
    ok = var > 1e-12
    beta = np.where(ok, cov / np.where(ok, var, 1.0), 1.0)
    beta = np.where(beta > 1e-3, beta, 1.0)
    return beta, pred.mean(0) - beta * y.mean(0)


def get_probe(world: Any, source: str = "global") -> TraitProbe:
    """The world's probe of that source, fitted once per loaded world (cached on it)."""
    cache = world.__dict__.setdefault("_trait_probes", {})
    if source not in cache:
        cache[source] = TraitProbe(world, source)
    return cache[source]


def probe_scores(world: Any, voice_ids: Sequence[str], face_ids: Sequence[str], matrix: bool = False,
                 source: str = "global") -> np.ndarray:
    """Probe score (LLR, higher = same person) of voice/face item ids: :func:`oracle_scores`' interface.

    ``world`` is a loaded world or its folder; ``source`` "global" or "tokens".
    """
    if isinstance(world, (str, Path)):
        from .worlddir import load_world

        world = load_world(world)
    return get_probe(world, source).scores(voice_ids, face_ids, matrix=matrix)
