"""The oracle: the best any model can do in a synthetic world.

A model sees features; the features of item k are made from its observed
shared traits s~_k plus things that carry no cross-modal identity information
(private traits, nuisance, noise, extra corruption). So a scorer that knows
s~ of both items and the exact prior is the Bayes ceiling: it returns the
log-likelihood ratio

    LLR(x, y) = log p(x, y | same identity) - log p(x) p(y)

of x = s~_voice, y = s~_face under the generative model (independent dims;
discrete prior for the gender- and age-like traits, Gaussian for the
continuous ones; observation noise ``noise.item`` on both sides). Its AUC,
matching accuracy and mAP are the ceilings reported in ``truth/oracle.json``.

The ceiling holds for pairs from different videos, which is every evaluation
pair of a world laid out here and of the Wen 2021 binding. When a face and a
voice of one video are paired (possible in nagrani2018 lists), a model could
also exploit their shared nuisance; the oracle deliberately ignores it.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from scipy.special import logsumexp

__all__ = ["oracle_scores", "oracle_llr", "oracle_report"]


def _discrete_terms(x: np.ndarray, y: np.ndarray, values: np.ndarray, probs: np.ndarray, var: float, matrix: bool) -> np.ndarray:
    logp = np.log(probs)
    lx = -((x[:, None] - values[None, :]) ** 2) / (2 * var) + logp  # (n, J)
    ly = -((y[:, None] - values[None, :]) ** 2) / (2 * var)  # (m, J)
    if matrix:
        same = logsumexp(lx[:, None, :] + ly[None, :, :], axis=2)
        return same - logsumexp(lx, axis=1)[:, None] - logsumexp(ly + logp, axis=1)[None, :]
    return logsumexp(lx + ly, axis=1) - logsumexp(lx, axis=1) - logsumexp(ly + logp, axis=1)


def _gaussian_terms(x: np.ndarray, y: np.ndarray, tau: float, var: float, matrix: bool) -> np.ndarray:
    t2 = tau * tau
    v = t2 + var
    det = v * v - t2 * t2
    if matrix:
        q = (v * (x * x)[:, None] + v * (y * y)[None, :] - 2 * t2 * np.outer(x, y)) / det
        marg = ((x * x)[:, None] + (y * y)[None, :]) / v
    else:
        q = (v * x * x + v * y * y - 2 * t2 * x * y) / det
        marg = (x * x + y * y) / v
    return -0.5 * q - 0.5 * math.log(det) + 0.5 * marg + math.log(v)


def oracle_llr(
    x: np.ndarray, y: np.ndarray, prior: Sequence[tuple[str, Any]], noise: float, matrix: bool = False, chunk: int = 512
) -> np.ndarray:
    """LLR of observed shared traits x (n, d) vs y (n or m, d); pairs, or an (n, m) matrix."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    var = float(noise) ** 2
    if matrix:
        out = np.empty((x.shape[0], y.shape[0]), dtype=np.float32)
        for lo in range(0, x.shape[0], chunk):
            out[lo : lo + chunk] = _llr_block(x[lo : lo + chunk], y, prior, var, True)
        return out
    if x.shape != y.shape:
        raise ValueError(f"pairwise oracle needs equal shapes, got {x.shape} and {y.shape}")
    return _llr_block(x, y, prior, var, False)


def _llr_block(x: np.ndarray, y: np.ndarray, prior: Sequence[tuple[str, Any]], var: float, matrix: bool) -> np.ndarray:
    total: np.ndarray | float = 0.0
    for d, (kind, params) in enumerate(prior):
        if kind == "discrete":
            values, probs = params
            total = total + _discrete_terms(x[:, d], y[:, d], np.asarray(values), np.asarray(probs), var, matrix)
        else:
            total = total + _gaussian_terms(x[:, d], y[:, d], float(params), var, matrix)
    return np.asarray(total)


def _as_world(world: Any) -> Any:
    if isinstance(world, (str, Path)):
        from .worlddir import load_world

        return load_world(world)
    return world


def oracle_scores(world: Any, voice_ids: Sequence[str], face_ids: Sequence[str], matrix: bool = False) -> np.ndarray:
    """Oracle score (LLR, higher = same person) of voice/face item ids of a world.

    Pairs ``(voice_ids[k], face_ids[k])`` by default; ``matrix=True`` scores
    every voice against every face, shape (len(voice_ids), len(face_ids)).
    ``world`` is a loaded world or its folder.
    """
    w = _as_world(world)
    vi = w.voice.index(voice_ids)
    fi = w.face.index(face_ids)
    x = w.truth.shared_observed("voice")[vi]
    y = w.truth.shared_observed("face")[fi]
    return oracle_llr(x, y, w.model.shared_prior(), w.spec.noise.item, matrix=matrix)


def oracle_report(world: Any, max_retrieval_pairs: int = 50_000_000) -> dict[str, dict[str, float]]:
    """Oracle AUC / 1:2 accuracy / mAP on every list of the world's protocol folder.

    Retrieval lists larger than ``max_retrieval_pairs`` voice-face pairs are
    skipped (the full score matrix would not fit comfortably in memory).
    """
    from faa_core.metrics import matching_accuracy, retrieval_map, verification_auc
    from faa_core.protocols import read_protocol

    w = _as_world(world)
    proto = read_protocol(w.protocol_name, w.protocol_dir)
    report: dict[str, dict[str, float]] = {}
    for name, lst in proto.verification.items():
        s = oracle_scores(w, lst.voices, lst.faces)
        if 0 < lst.labels.sum() < len(lst.labels):
            report[name] = {"auc": verification_auc(s, lst.labels), "pairs": float(len(lst))}
    for name, m in proto.matching.items():
        if m.direction == "v2f":
            pos = oracle_scores(w, m.queries, m.positives)
            neg = oracle_scores(w, m.queries, m.negatives)
        else:
            pos = oracle_scores(w, m.positives, m.queries)
            neg = oracle_scores(w, m.negatives, m.queries)
        report[name] = {"accuracy": matching_accuracy(pos, neg), "triplets": float(len(m))}
    for name, r in proto.retrieval.items():
        if len(r.voices) * len(r.faces) > max_retrieval_pairs:
            continue
        sim = oracle_scores(w, r.voices, r.faces, matrix=True)
        report[name] = {
            "map_v2f": retrieval_map(sim, r.voice_identities, r.face_identities),
            "map_f2v": retrieval_map(sim.T, r.face_identities, r.voice_identities),
            "voices": float(len(r.voices)),
            "faces": float(len(r.faces)),
        }
    return report
