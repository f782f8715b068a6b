"""Linear baseline: regularised CCA between face and voice global embeddings.

Why it is here: a ten-line linear method is the bar any deep method must clear. Canonical
correlation analysis finds the directions in which a person's face and voice features vary
*together*; cosine in that space is a cross-modal score with no training loop.

Recipe (:func:`fit_cca`): per modality, centre the per-identity (or per-pseudo-identity) mean
embeddings and keep their top ``pca_dims`` principal components; in those coordinates solve
ridge-regularised CCA (each covariance gets ``reg`` times its mean eigenvalue added to the
diagonal); keep the first ``n_components`` canonical directions. A face ``x`` maps to
``(x - mean_f) @ face_proj`` and a voice ``y`` to ``(y - mean_v) @ voice_proj``; the score is
their cosine.

A fitted map is exactly a checkpoint (:func:`load_cca_into_heads`): the projection heads'
layers are set so that ``heads.face(x)`` / ``heads.voice(y)`` return the L2-normalised
canonical coordinates, so evaluation and the app score it like any other model (cosine).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from .clustering import dual_modality_pooling
from .errors import InputError

__all__ = ["CCAMaps", "label_means", "fit_cca", "load_cca_into_heads"]


@dataclass(frozen=True)
class CCAMaps:
    """A fitted CCA: per modality a mean and a ``[D, k]`` projection; ``correlations`` ``[k]``, descending."""

    face_mean: np.ndarray
    face_proj: np.ndarray
    voice_mean: np.ndarray
    voice_proj: np.ndarray
    correlations: np.ndarray

    @property
    def n_components(self) -> int:
        return int(self.face_proj.shape[1])

    def face(self, x: Any) -> np.ndarray:
        """Canonical coordinates ``[N, k]`` of face features ``[N, Df]``."""
        return (np.asarray(x, dtype=np.float64) - self.face_mean) @ self.face_proj

    def voice(self, y: Any) -> np.ndarray:
        """Canonical coordinates ``[N, k]`` of voice features ``[N, Dv]``."""
        return (np.asarray(y, dtype=np.float64) - self.voice_mean) @ self.voice_proj


def label_means(
    voice: Any, voice_labels: Any, face: Any, face_labels: Any
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-label mean voice and mean face embeddings, each L2-normalised (labels with both modalities only).

    This is dual-modality pooling with the label as the key, so it shares its owner
    (``faa_core.clustering.dual_modality_pooling``).

    Returns:
        ``(labels, voice_means [L, Dv], face_means [L, Df])``.
    """
    v = np.asarray(voice, dtype=np.float32)
    keys, pooled = dual_modality_pooling(v, voice_labels, np.asarray(face, dtype=np.float32), face_labels)
    dv = v.shape[1]
    return keys, pooled[:, :dv].astype(np.float64), pooled[:, dv:].astype(np.float64)


def _pca(x: np.ndarray, dims: int) -> tuple[np.ndarray, np.ndarray]:
    """(mean, ``[D, dims]`` orthonormal basis of the top principal directions)."""
    mean = x.mean(axis=0)
    _, _, vt = np.linalg.svd(x - mean, full_matrices=False)
    basis = vt[:dims].T
    # a fixed sign per direction (largest entry positive), so the fit does not depend on LAPACK's choice
    signs = np.sign(basis[np.abs(basis).argmax(axis=0), np.arange(basis.shape[1])])
    return mean, basis * np.where(signs == 0, 1.0, signs)


def _inv_sqrt(c: np.ndarray) -> np.ndarray:
    vals, vecs = np.linalg.eigh(c)
    return (vecs / np.sqrt(vals)) @ vecs.T


def fit_cca(
    face_means: Any, voice_means: Any, pca_dims: int = 64, n_components: int = 8, reg: float = 0.1
) -> CCAMaps:
    """Fit regularised CCA on paired rows (row i of both = one identity or pseudo-identity).

    Args:
        face_means: ``[N, Df]``; voice_means: ``[N, Dv]``.
        pca_dims: principal components kept per modality (capped at ``N - 1`` and the width).
        n_components: canonical directions kept (capped at the PCA dimensions).
        reg: ridge on each covariance, as a fraction of its mean eigenvalue (> 0).
    """
    fx = np.asarray(face_means, dtype=np.float64)
    vy = np.asarray(voice_means, dtype=np.float64)
    if fx.ndim != 2 or vy.ndim != 2 or fx.shape[0] != vy.shape[0]:
        raise InputError(f"face_means and voice_means must be [N, D] with the same N, got {fx.shape} and {vy.shape}")
    n = fx.shape[0]
    if n < 3:
        raise InputError(f"CCA needs at least 3 paired (pseudo-)identities, got {n}")
    if not (np.isfinite(fx).all() and np.isfinite(vy).all()):
        raise InputError("face_means and voice_means must be finite")
    for name, v in (("pca_dims", pca_dims), ("n_components", n_components)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise InputError(f"{name} must be a positive int, got {v!r}")
    if not (float(reg) > 0 and np.isfinite(float(reg))):
        raise InputError(f"reg must be a finite number > 0, got {reg}")

    p = min(pca_dims, n - 1, fx.shape[1], vy.shape[1])
    k = min(n_components, p)
    mf, bf = _pca(fx, p)
    mv, bv = _pca(vy, p)
    a, b = (fx - mf) @ bf, (vy - mv) @ bv
    caa, cbb, cab = a.T @ a / (n - 1), b.T @ b / (n - 1), a.T @ b / (n - 1)
    caa += float(reg) * np.trace(caa) / p * np.eye(p)
    cbb += float(reg) * np.trace(cbb) / p * np.eye(p)
    wa, wb = _inv_sqrt(caa), _inv_sqrt(cbb)
    u, s, vt = np.linalg.svd(wa @ cab @ wb)
    face_proj = bf @ wa @ u[:, :k]
    voice_proj = bv @ wb @ vt[:k].T
    return CCAMaps(mf, face_proj, mv, voice_proj, s[:k].copy())


def load_cca_into_heads(heads: torch.nn.Module, maps: CCAMaps) -> None:
    """Set a ``ProjectionHeads``' layers so that its outputs are the normalised canonical coordinates.

    Why: the checkpoint format, evaluation and the app then need nothing new. The heads are
    Linear -> ReLU -> Linear -> ReLU -> Linear; with ``z`` the k canonical coordinates, the
    modality layer writes ``[z, -z]``, the ReLUs keep the positive parts, and the two shared
    layers recombine ``relu(z) - relu(-z) = z`` exactly. Needs ``hidden >= 2k`` and
    ``embed_dim >= k``; the other outputs are 0. Dropout is inactive in ``eval()``.
    """
    k = maps.n_components
    face_lin, voice_lin = heads.face_in[1], heads.voice_in[1]
    mid, out = heads.shared[0], heads.shared[2]
    hidden, embed = mid.out_features, out.out_features
    if hidden < 2 * k or embed < k:
        raise InputError(f"the heads (hidden {hidden}, embed_dim {embed}) are too small for {k} canonical "
                         f"directions: need hidden >= {2 * k} and embed_dim >= {k}")
    if face_lin.in_features != maps.face_proj.shape[0] or voice_lin.in_features != maps.voice_proj.shape[0]:
        raise InputError(f"the heads take {face_lin.in_features}/{voice_lin.in_features}-d face/voice features but the "
                         f"CCA was fitted on {maps.face_proj.shape[0]}/{maps.voice_proj.shape[0]}-d ones")
    eye = torch.eye(k)
    with torch.no_grad():
        for lin, proj, mean in ((face_lin, maps.face_proj, maps.face_mean), (voice_lin, maps.voice_proj, maps.voice_mean)):
            w = torch.as_tensor(proj.T, dtype=torch.float32)
            bias = torch.as_tensor(-(mean @ proj), dtype=torch.float32)
            lin.weight.zero_()
            lin.bias.zero_()
            lin.weight[:k], lin.weight[k : 2 * k] = w, -w
            lin.bias[:k], lin.bias[k : 2 * k] = bias, -bias
        mid.weight.zero_()
        mid.bias.zero_()
        mid.weight[:k, :k], mid.weight[:k, k : 2 * k] = eye, -eye
        mid.weight[k : 2 * k, :k], mid.weight[k : 2 * k, k : 2 * k] = -eye, eye
        out.weight.zero_()
        out.bias.zero_()
        out.weight[:k, :k], out.weight[:k, k : 2 * k] = eye, -eye
