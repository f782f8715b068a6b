"""The oracle: the best any model can do in a synthetic world.

A model sees features; the features of item k are made from its observed
shared traits s~_k plus things that carry no cross-modal identity information
(private traits, nuisance, noise, extra corruption). So a scorer that knows
s~ of both items and the exact prior is the Bayes ceiling: it returns the
log-likelihood ratio

    LLR(x, y) = log p(x, y | same identity) - log p(x) p(y)

of x = s~_voice, y = s~_face under the generative model (independent dims;
discrete prior for the gender- and age-like traits, Gaussian for the
continuous ones; observation noise ``noise.item`` on both sides; when traits
correlate with gender, the exact two-component mixture over gender). Its AUC,
matching accuracy and mAP are the ceilings reported in ``truth/oracle.json``,
beside the reachable ceiling of :mod:`training.synth.probe` (the same LLR of
traits predicted from the features).

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
        same = _lse_outer(lx, ly)
        return same - logsumexp(lx, axis=1)[:, None] - logsumexp(ly + logp, axis=1)[None, :]
    return logsumexp(lx + ly, axis=1) - logsumexp(lx, axis=1) - logsumexp(ly + logp, axis=1)


def _lse_outer(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(n, m) log sum_j exp(a[i, j] + b[k, j]) as one matrix product of shifted exponentials.

    Why: the (n, m, J) array of the direct form made retrieval matrices slow;
    each row's max is taken out first, so the exponentials are <= 1.
    """
    ma, mb = a.max(axis=1, keepdims=True), b.max(axis=1, keepdims=True)
    prod = np.exp(a - ma) @ np.exp(b - mb).T
    return np.log(np.maximum(prod, 1e-300)) + ma + mb.T


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
    x: np.ndarray, y: np.ndarray, prior: Any, noise: float | Sequence[float], matrix: bool = False, chunk: int = 512
) -> np.ndarray:
    """LLR of observed shared traits x (n, d) vs y (n or m, d); pairs, or an (n, m) matrix.

    ``prior`` is :meth:`LatentModel.shared_prior`'s (per-dim list, or a gender
    mixture); ``noise`` the observation std, one for all dims or one per dim.
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    var = np.broadcast_to(np.asarray(noise, dtype=np.float64) ** 2, (x.shape[1],))
    block = _mixture_block if _is_mixture(prior) else _llr_block
    if matrix:
        out = np.empty((x.shape[0], y.shape[0]), dtype=np.float32)
        for lo in range(0, x.shape[0], chunk):
            out[lo : lo + chunk] = block(x[lo : lo + chunk], y, prior, var, True)
        return out
    if x.shape != y.shape:
        raise ValueError(f"pairwise oracle needs equal shapes, got {x.shape} and {y.shape}")
    return block(x, y, prior, var, False)


def _is_mixture(prior: Any) -> bool:
    return isinstance(prior, tuple) and len(prior) == 2 and prior[0] == "mixture"


def _llr_block(x: np.ndarray, y: np.ndarray, prior: Sequence[tuple[str, Any]], var: np.ndarray, matrix: bool) -> np.ndarray:
    total: np.ndarray | float = 0.0
    for d, (kind, params) in enumerate(prior):
        if kind == "discrete":
            values, probs = params
            total = total + _discrete_terms(x[:, d], y[:, d], np.asarray(values), np.asarray(probs), float(var[d]), matrix)
        else:
            total = total + _gaussian_terms(x[:, d], y[:, d], float(params), float(var[d]), matrix)
    return np.asarray(total)


def _log_normal(x: np.ndarray, mean: float | np.ndarray, var: float) -> np.ndarray:
    return -0.5 * (x - mean) ** 2 / var - 0.5 * math.log(2 * math.pi * var)


def _dim_logs(x: np.ndarray, y: np.ndarray, kind: str, params: Any, var: float, matrix: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One dim of one mixture component: log p(x, y | same), log p(x), log p(y) (full densities)."""
    if kind == "discrete":
        values, probs = (np.asarray(p, dtype=np.float64) for p in params)
        lp = np.log(probs)
        lx = _log_normal(x[:, None], values[None, :], var)  # (n, J)
        ly = _log_normal(y[:, None], values[None, :], var)
        joint = _lse_outer(lx + lp, ly) if matrix else logsumexp(lx + ly + lp, axis=1)
        return joint, logsumexp(lx + lp, axis=1), logsumexp(ly + lp, axis=1)
    mean, tau = params if kind == "normal" else (0.0, params)
    t2 = float(tau) ** 2
    v = t2 + var
    det = v * v - t2 * t2
    a, b = x - mean, y - mean
    if matrix:
        q = (v * (a * a)[:, None] + v * (b * b)[None, :] - 2 * t2 * np.outer(a, b)) / det
    else:
        q = (v * a * a + v * b * b - 2 * t2 * a * b) / det
    joint = -0.5 * q - 0.5 * math.log(det) - math.log(2 * math.pi)
    return joint, _log_normal(x, mean, v), _log_normal(y, mean, v)


def _mixture_block(x: np.ndarray, y: np.ndarray, prior: Any, var: np.ndarray, matrix: bool) -> np.ndarray:
    """LLR under a mixture prior: log sum_c w_c p(x, y | c) - log sum_c w_c p(x | c) - log sum_c w_c p(y | c)."""
    joints, mxs, mys = [], [], []
    for weight, dims in prior[1]:
        j: np.ndarray | float = math.log(weight)
        mx: np.ndarray | float = math.log(weight)
        my: np.ndarray | float = math.log(weight)
        for d, (kind, params) in enumerate(dims):
            a, b, c = _dim_logs(x[:, d], y[:, d], kind, params, float(var[d]), matrix)
            j, mx, my = j + a, mx + b, my + c
        joints.append(j)
        mxs.append(mx)
        mys.append(my)
    joint = logsumexp(np.stack(joints), axis=0)
    lx, ly = logsumexp(np.stack(mxs), axis=0), logsumexp(np.stack(mys), axis=0)
    return joint - (lx[:, None] + ly[None, :] if matrix else lx + ly)


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


def oracle_report(world: Any, max_retrieval_pairs: int = 50_000_000, probes: bool = True) -> dict[str, dict[str, Any]]:
    """Oracle AUC / 1:2 accuracy / mAP on every list of the world's protocol folder.

    With ``probes`` each list also holds ``probe_global`` and ``probe_tokens``
    (the same metrics of :mod:`training.synth.probe`'s reachable ceiling; a
    probe that cannot be fitted, e.g. no training items, is left out).
    Retrieval lists larger than ``max_retrieval_pairs`` voice-face pairs are
    skipped (the full score matrix would not fit comfortably in memory).
    """
    from faa_core.protocols import read_protocol

    from .probe import SOURCES, get_probe

    w = _as_world(world)
    proto = read_protocol(w.protocol_name, w.protocol_dir)
    report = _list_report(proto, lambda v, f, matrix=False: oracle_scores(w, v, f, matrix=matrix), max_retrieval_pairs)
    if probes:
        for source in SOURCES:
            try:
                probe = get_probe(w, source)
            except ValueError:
                continue
            for name, metrics in _list_report(proto, probe.scores, max_retrieval_pairs).items():
                report.setdefault(name, {})[f"probe_{source}"] = metrics
    return report


def _list_report(proto: Any, score: Any, max_retrieval_pairs: int) -> dict[str, dict[str, Any]]:
    """Metrics of one scorer (``score(voice_ids, face_ids, matrix=False)``) on every list of ``proto``."""
    from faa_core.metrics import matching_accuracy, retrieval_map, verification_auc

    report: dict[str, dict[str, Any]] = {}
    last: dict[tuple[bytes, bytes], np.ndarray] = {}  # the v2f and f2v retrieval lists share their items
    for name, lst in proto.verification.items():
        if 0 < lst.labels.sum() < len(lst.labels):
            report[name] = {"auc": verification_auc(score(lst.voices, lst.faces), lst.labels), "pairs": float(len(lst))}
    for name, m in proto.matching.items():
        if m.direction == "v2f":
            pos = score(m.queries, m.positives)
            neg = score(m.queries, m.negatives)
        else:
            pos = score(m.positives, m.queries)
            neg = score(m.negatives, m.queries)
        report[name] = {"accuracy": matching_accuracy(pos, neg), "triplets": float(len(m))}
    for name, r in proto.retrieval.items():
        if len(r.voices) * len(r.faces) > max_retrieval_pairs:
            continue
        key = (np.asarray(r.voices).tobytes(), np.asarray(r.faces).tobytes())
        if key not in last:
            last.clear()
            last[key] = score(r.voices, r.faces, matrix=True)
        sim = last[key]
        report[name] = {
            "map_v2f": retrieval_map(sim, r.voice_identities, r.face_identities),
            "map_f2v": retrieval_map(sim.T, r.face_identities, r.voice_identities),
            "voices": float(len(r.voices)),
            "faces": float(len(r.faces)),
        }
    return report
