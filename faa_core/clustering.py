"""Pseudo-labels for unsupervised FAA training: dual-modality pooling, k-means, schedules.

FAA (like its base, Self-Lifting) has no identity labels. Every round it pools
the current voice and face embeddings per video, clusters the pooled vectors
with k-means and gives every item its video's cluster as a pseudo-identity.
This module holds those pieces plus the progressive schedule of the number of
clusters and two cluster-quality measures (purity, NMI) for synthetic data
whose true identities are known.

faiss is used for k-means when it can be imported (as SL does); otherwise a
numpy implementation of Lloyd's algorithm with k-means++ initialisation takes
over, so the package keeps working without faiss. With ``backend="auto"``:

* a GPU faiss build with a visible GPU clusters on the GPU (exact k-means);
* otherwise inputs of at least ``FAST_MIN_POINTS`` points (VoxCeleb2-scale
  rounds: 100k videos, 704-d, 15k clusters took 120 s per round exactly) take
  the fast CPU path: PCA to ``FAST_DIM`` dims, centroids fitted on a seeded
  sample of ``FAST_POINTS_PER_CENTROID`` points per cluster in at most
  ``FAST_MAX_NITER`` iterations, every point then assigned (centroids and
  inertia reported in the input space);
* smaller inputs (every synthetic world and test) stay on the exact path.

Cluster quality of the fast path against the exact one is measured in
``benchmarks/train_throughput.py`` (purity and NMI against true identities).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import scipy.sparse as sp

from .errors import InputError

try:  # faiss is optional: the numpy fallback below covers its absence
    import faiss  # type: ignore[import-not-found]

    _HAVE_FAISS = True
except Exception:  # pragma: no cover - depends on the environment
    faiss = None
    _HAVE_FAISS = False

__all__ = [
    "KMeansResult",
    "dual_modality_pooling",
    "kmeans",
    "effective_k",
    "labels_for_items",
    "ProgressiveClusterSchedule",
    "cluster_purity",
    "nmi",
    "HAVE_FAISS",
    "gpu_available",
    "choose_backend",
]

HAVE_FAISS: bool = _HAVE_FAISS

FAST_MIN_POINTS = 50_000  # auto: fewer points than this stay on the exact path
FAST_DIM = 64  # fast path: PCA dims
FAST_POINTS_PER_CENTROID = 3  # fast path: points per cluster in the sample the centroids are fitted on
FAST_MAX_NITER = 5  # fast path: Lloyd iterations at most (measured: purity within 0.001 of 10 or 20 iterations)
BACKENDS = ("auto", "faiss", "numpy", "faiss-gpu", "fast")

_EPS = 1e-12


# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------


def _as_numpy(x: Any) -> np.ndarray:
    """numpy view of ``x``; torch tensors are detached and moved to CPU (torch is not imported)."""
    if hasattr(x, "detach") and hasattr(x, "cpu"):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def _check_embeddings(emb: Any, name: str) -> np.ndarray:
    """2-D, non-empty, finite float array, so that errors surface here and not inside faiss."""
    arr = _as_numpy(emb)
    if arr.ndim != 2:
        raise InputError(f"{name} must be 2-D (items, dim); got shape {arr.shape}")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise InputError(f"{name} is empty (shape {arr.shape})")
    if not np.issubdtype(arr.dtype, np.number) or np.iscomplexobj(arr):
        raise InputError(f"{name} must hold real numbers; got dtype {arr.dtype}")
    if not np.all(np.isfinite(arr)):
        raise InputError(f"{name} contains NaN or infinite values")
    return arr


def _check_keys(keys: Any, n: int, name: str) -> np.ndarray:
    """1-D key array with one key per embedding row."""
    arr = _as_numpy(keys)
    if arr.ndim != 1:
        raise InputError(f"{name} must be 1-D; got shape {arr.shape}")
    if arr.shape[0] != n:
        raise InputError(f"{name} has {arr.shape[0]} keys for {n} embeddings")
    return arr


def _l2_normalise(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit norm; an all-zero row stays zero instead of becoming NaN."""
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norms, _EPS)


def _group_means(emb: np.ndarray, group: np.ndarray, n_groups: int) -> np.ndarray:
    """Per-group mean of ``emb`` rows (float64) as one sparse (groups x items) product.

    A CSR membership matrix times the embeddings is ~10x faster than
    ``np.add.reduceat`` and ~80x faster than ``np.add.at`` on 150k x 128
    inputs. Groups without members get a zero row.
    """
    n = group.shape[0]
    counts = np.bincount(group, minlength=n_groups)
    indptr = np.zeros(n_groups + 1, dtype=np.int64)
    np.cumsum(counts, out=indptr[1:])
    indices = np.argsort(group, kind="stable")
    weights = (1.0 / np.maximum(counts, 1))[group[indices]]
    membership = sp.csr_matrix((weights, indices, indptr), shape=(n_groups, n))
    return np.asarray(membership @ emb, dtype=np.float64)


# ---------------------------------------------------------------------------
# dual-modality pooling
# ---------------------------------------------------------------------------


def dual_modality_pooling(
    voice_emb: Any, voice_video: Any, face_emb: Any, face_video: Any
) -> tuple[np.ndarray, np.ndarray]:
    """One vector per video, [mean voice ; mean face], each half L2-normalised.

    Why: k-means on per-video vectors that mix both modalities gives pseudo-
    identities that both modalities agree on (SL's "dual-modality pooling").
    Each half is normalised so that neither modality dominates the distance
    whatever its scale; SL averages already-normalised embeddings, this adds
    the renormalisation of the averages.

    Args:
        voice_emb: (Nv, D) voice embeddings.
        voice_video: (Nv,) video key of each voice item (str, int, ... ; keys of
            both modalities must be of mutually comparable types).
        face_emb: (Nf, D) face embeddings (the same D as the voices).
        face_video: (Nf,) video key of each face item.

    Returns:
        ``(video_keys, pooled)``: ``video_keys`` (V,) sorted ascending, holding
        only the videos that have at least one voice *and* one face item (a
        video lacking a modality cannot give a cross-modal vector and is left
        out); ``pooled`` (V, 2D) float32, row i = [v_i ; f_i] of video_keys[i].
    """
    v = _check_embeddings(voice_emb, "voice_emb")
    f = _check_embeddings(face_emb, "face_emb")
    # The two modalities may differ in width (raw encoder features: 192 vs 512); the pooled
    # vector is their concatenation either way.
    vk = _check_keys(voice_video, v.shape[0], "voice_video")
    fk = _check_keys(face_video, f.shape[0], "face_video")

    try:
        all_keys, inverse = np.unique(np.concatenate([vk, fk]), return_inverse=True)
    except TypeError as exc:
        raise InputError(f"video keys cannot be compared with each other: {exc}") from exc
    inverse = inverse.reshape(-1)
    v_idx, f_idx = inverse[: vk.shape[0]], inverse[vk.shape[0] :]
    n_keys = all_keys.shape[0]

    has_both = (np.bincount(v_idx, minlength=n_keys) > 0) & (np.bincount(f_idx, minlength=n_keys) > 0)
    v_mean = _group_means(v, v_idx, n_keys)[has_both]
    f_mean = _group_means(f, f_idx, n_keys)[has_both]
    pooled = np.concatenate([_l2_normalise(v_mean), _l2_normalise(f_mean)], axis=1)
    return all_keys[has_both], np.ascontiguousarray(pooled, dtype=np.float32)


# ---------------------------------------------------------------------------
# k-means
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class KMeansResult:
    """Outcome of a k-means run.

    labels: (V,) int64 cluster of each point; centroids: (k, d) float32;
    inertia: sum over points of the squared L2 distance to their centroid
    (the same definition for both backends and for spherical k-means).
    """

    labels: np.ndarray
    centroids: np.ndarray
    inertia: float


def effective_k(k: int, n_points: int) -> int:
    """The number of clusters actually usable on ``n_points`` points: ``min(k, n_points)``, at least 1.

    Why: the progressive schedule may ask for more clusters than there are
    videos on a small data set; callers clip with this before ``kmeans``,
    which itself refuses k > V rather than silently changing it.
    """
    if n_points < 1:
        raise InputError("cannot cluster zero points")
    return max(1, min(int(k), int(n_points)))


def _check_kmeans_args(x: Any, k: int, niter: int) -> np.ndarray:
    """Contiguous float32 points, with k and niter checked against them."""
    arr = _check_embeddings(x, "x")
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
        raise InputError(f"k must be an integer; got {k!r}")
    if not 1 <= int(k) <= arr.shape[0]:
        raise InputError(f"k must be between 1 and the number of points ({arr.shape[0]}); got {k}")
    if isinstance(niter, bool) or not isinstance(niter, (int, np.integer)) or niter < 1:
        raise InputError(f"niter must be a positive integer; got {niter!r}")
    return np.ascontiguousarray(arr, dtype=np.float32)


def _squared_distances(x: np.ndarray, c: np.ndarray, c_sq: np.ndarray) -> np.ndarray:
    """Squared L2 distances (n, k) via the dot-product identity, clipped at 0."""
    x_sq = np.einsum("ij,ij->i", x, x)[:, None]
    d = x_sq - 2.0 * (x @ c.T) + c_sq[None, :]
    np.maximum(d, 0.0, out=d)
    return d


def _assign(
    x: np.ndarray, c: np.ndarray, spherical: bool, chunk: int = 8192
) -> tuple[np.ndarray, np.ndarray]:
    """Nearest centroid of every point (max inner product when spherical) and its squared distance.

    Chunked so that the (n, k) distance matrix never has to fit in memory at once.
    """
    n = x.shape[0]
    labels = np.empty(n, dtype=np.int64)
    dist = np.empty(n, dtype=np.float64)
    c_sq = np.einsum("ij,ij->i", c, c)
    for s in range(0, n, chunk):
        xb = x[s : s + chunk]
        if spherical:
            ip = xb @ c.T
            lab = np.argmax(ip, axis=1)
            x_sq = np.einsum("ij,ij->i", xb, xb)
            d = x_sq - 2.0 * ip[np.arange(xb.shape[0]), lab] + c_sq[lab]
        else:
            dm = _squared_distances(xb, c, c_sq)
            lab = np.argmin(dm, axis=1)
            d = dm[np.arange(xb.shape[0]), lab]
        labels[s : s + chunk] = lab
        dist[s : s + chunk] = np.maximum(d, 0.0)
    return labels, dist


def _kmeans_pp_init(x: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """k-means++ seeding (D^2 sampling): spread-out initial centroids, fewer bad local minima."""
    n = x.shape[0]
    centroids = np.empty((k, x.shape[1]), dtype=np.float64)
    x_sq = np.einsum("ij,ij->i", x, x)

    def sq_dist_to(i: int) -> np.ndarray:
        # norms identity: a mat-vec per new centroid instead of an (n, d) difference array
        return np.maximum(x_sq - 2.0 * (x @ x[i]) + x_sq[i], 0.0)

    first = int(rng.integers(n))
    centroids[0] = x[first]
    closest = sq_dist_to(first)
    for i in range(1, k):
        total = closest.sum()
        if total <= 0.0:  # every point coincides with a centroid: pick any point
            idx = int(rng.integers(n))
        else:
            idx = int(np.searchsorted(np.cumsum(closest), rng.random() * total, side="right"))
            idx = min(idx, n - 1)
        centroids[i] = x[idx]
        np.minimum(closest, sq_dist_to(idx), out=closest)
    return centroids


def _kmeans_numpy(
    x: Any, k: int, niter: int = 20, seed: int = 0, spherical: bool = False
) -> KMeansResult:
    """Lloyd's k-means with k-means++ initialisation, numpy only.

    Why: the fallback when faiss cannot be imported. Deterministic for a seed.
    An empty cluster is re-seeded with the point farthest from its centroid,
    so that all k clusters stay in use (faiss splits big clusters instead).
    With ``spherical`` the centroids are L2-normalised after every update and
    points go to the centroid of largest inner product, as faiss does.
    """
    xf = _check_kmeans_args(x, k, niter)
    k = int(k)
    x64 = xf.astype(np.float64)
    rng = np.random.default_rng(seed)
    c = _kmeans_pp_init(x64, k, rng)
    if spherical:
        c = _l2_normalise(c)
    labels, dist = _assign(x64, c, spherical)
    for _ in range(niter):
        counts = np.bincount(labels, minlength=k)
        nonempty = counts > 0
        c[nonempty] = _group_means(x64, labels, k)[nonempty]
        empty = np.flatnonzero(~nonempty)
        if empty.size:
            far = np.argsort(-dist, kind="stable")[: empty.size]
            c[empty] = x64[far]
        if spherical:
            c = _l2_normalise(c)
        new_labels, dist = _assign(x64, c, spherical)
        if np.array_equal(new_labels, labels) and not empty.size:
            labels = new_labels
            break
        labels = new_labels
    return KMeansResult(
        labels=labels.astype(np.int64),
        centroids=np.ascontiguousarray(c, dtype=np.float32),
        inertia=float(dist.sum()),
    )


def _kmeans_faiss(x: np.ndarray, k: int, niter: int, seed: int, spherical: bool, gpu: bool = False) -> KMeansResult:
    """faiss k-means, as SL clusters its pooled vectors (1000 centroids, 20 iterations).

    ``min_points_per_centroid=1`` silences faiss's "please provide at least
    ..." warning, which is expected here (k-means on ~20k videos with up to
    1000 clusters); ``max_points_per_centroid=n`` stops faiss from training on
    a random subsample (its default caps at 256 points per centroid), so every
    video shapes the centroids and the result does not depend on subsampling.
    ``gpu`` trains and searches on every visible GPU (a faiss-gpu build).
    """
    n, d = x.shape
    km = faiss.Kmeans(
        d,
        k,
        niter=int(niter),
        seed=int(seed),
        spherical=bool(spherical),
        min_points_per_centroid=1,
        max_points_per_centroid=max(n, 1),
        verbose=False,
        **({"gpu": True} if gpu else {}),
    )
    km.train(x)
    centroids = np.ascontiguousarray(km.centroids, dtype=np.float32).reshape(k, d)
    scores, idx = km.index.search(x, 1)
    labels = idx[:, 0].astype(np.int64)
    if spherical:  # the index is inner-product: turn the score into a squared distance
        x_sq = np.einsum("ij,ij->i", x, x).astype(np.float64)
        c_sq = np.einsum("ij,ij->i", centroids, centroids).astype(np.float64)
        dist = x_sq - 2.0 * scores[:, 0].astype(np.float64) + c_sq[labels]
    else:
        dist = scores[:, 0].astype(np.float64)
    return KMeansResult(labels=labels, centroids=centroids, inertia=float(np.maximum(dist, 0.0).sum()))


def gpu_available() -> bool:
    """Whether faiss was built with GPU support and sees at least one GPU (faiss-gpu may not be installed)."""
    if not _HAVE_FAISS or not hasattr(faiss, "StandardGpuResources"):
        return False
    try:
        return int(faiss.get_num_gpus()) > 0
    except Exception:  # pragma: no cover - a broken CUDA install
        return False


def choose_backend(n_points: int, dim: int, spherical: bool = False, backend: str = "auto") -> str:
    """The k-means implementation ``kmeans`` uses for an input of that size.

    Why: one place decides, so the trainer and the benchmark report the same
    thing. "auto" = faiss on the GPU when present; else the fast CPU path for
    large non-spherical inputs (at least FAST_MIN_POINTS points); else exact
    faiss (numpy without faiss).
    """
    if backend not in BACKENDS:
        raise InputError(f"backend must be one of {BACKENDS}; got {backend!r}")
    if backend != "auto":
        return backend
    if gpu_available():
        return "faiss-gpu"
    if n_points >= FAST_MIN_POINTS and not spherical:
        return "fast"
    return "faiss" if _HAVE_FAISS else "numpy"


def _pca(x: np.ndarray, dim: int, rng: np.random.Generator, max_fit: int = 50_000) -> tuple[np.ndarray, np.ndarray]:
    """Mean (d,) and top-``dim`` principal directions (d, dim) of x, fitted on a seeded sample.

    Subspace iteration on the covariance (a few matrix products and a small
    eigen-decomposition): a full LAPACK ``eigh`` of 704 x 704 took seconds on
    a busy 2-core machine.
    """
    fit = x if x.shape[0] <= max_fit else x[np.sort(rng.choice(x.shape[0], max_fit, replace=False))]
    mean = fit.mean(0, dtype=np.float64).astype(np.float32)
    xc = fit - mean
    cov = (xc.T @ xc).astype(np.float64)
    d = cov.shape[0]
    q = np.linalg.qr(rng.standard_normal((d, min(d, dim + 16))))[0]
    for _ in range(4):
        q = np.linalg.qr(cov @ q)[0]
    vals, vecs = np.linalg.eigh(q.T @ cov @ q)
    top = q @ vecs[:, np.argsort(vals)[::-1][:dim]]
    return mean, np.ascontiguousarray(top, dtype=np.float32)


def _nearest(x: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Label of the nearest centroid (L2) of every row of x."""
    if _HAVE_FAISS:
        index = faiss.IndexFlatL2(c.shape[1])
        index.add(np.ascontiguousarray(c, dtype=np.float32))
        return index.search(np.ascontiguousarray(x, dtype=np.float32), 1)[1][:, 0].astype(np.int64)
    return _assign(x.astype(np.float64), c.astype(np.float64), False)[0]


def _single_threaded_blas() -> Any:
    """Context that keeps numpy's BLAS on one thread (no-op without threadpoolctl).

    Why: the fast path alternates numpy products and faiss calls; numpy's
    OpenBLAS threads keep spinning after each product and starve faiss's
    OpenMP threads: 1,000 points took 11-17 s instead of 0.8 s on a busy
    2-core machine. The numpy parts here are small next to faiss's.
    """
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - threadpoolctl comes with scikit-learn
        import contextlib

        return contextlib.nullcontext()
    return threadpool_limits(limits=1, user_api="blas")


def _kmeans_fast(x: np.ndarray, k: int, niter: int, seed: int, dim: int = FAST_DIM,
                 points_per_centroid: int = FAST_POINTS_PER_CENTROID) -> KMeansResult:
    """Approximate L2 k-means: PCA to ``dim`` dims, centroids fitted on a sample, every point assigned.

    Why: a Lloyd iteration costs points x clusters x dims (100k x 15k x 704:
    120 s per round on the CPU); this cuts dims (704 -> 64), the points of
    the fit (to ``points_per_centroid`` per cluster) and the iterations (to
    FAST_MAX_NITER; k-means on 3 points per cluster settles fast) together. Returned
    centroids are the input-space means of each cluster's points (a cluster
    that gets no point keeps its back-projected centroid) and the inertia is
    measured in the input space, as on the exact path. It loses little where
    the cluster structure lies in the leading principal directions (measured
    on a synthetic world in benchmarks/train_throughput.py) and more where it
    is spread evenly over all dims.
    """
    with _single_threaded_blas():
        return _kmeans_fast_body(x, k, niter, seed, dim, points_per_centroid)


def _kmeans_fast_body(x: np.ndarray, k: int, niter: int, seed: int, dim: int, points_per_centroid: int) -> KMeansResult:
    n, d = x.shape
    rng = np.random.default_rng(seed)
    dim = min(int(dim), d)
    mean, basis = _pca(x, dim, rng)
    z = np.ascontiguousarray((x - mean) @ basis, dtype=np.float32)
    m = min(n, max(k, int(points_per_centroid) * k))
    sample = z if m == n else np.ascontiguousarray(z[np.sort(rng.choice(n, m, replace=False))])
    niter = min(int(niter), FAST_MAX_NITER)
    if _HAVE_FAISS:
        fit = _kmeans_faiss(sample, k, niter, seed, False)
    else:
        fit = _kmeans_numpy(sample, k, niter=niter, seed=seed)
    labels = _nearest(z, fit.centroids)
    counts = np.bincount(labels, minlength=k)
    centroids = fit.centroids.astype(np.float64) @ basis.T.astype(np.float64) + mean
    full = counts > 0
    centroids[full] = _group_means(x, labels, k)[full]
    diff = x.astype(np.float64) - centroids[labels]
    return KMeansResult(labels=labels, centroids=np.ascontiguousarray(centroids, dtype=np.float32),
                        inertia=float(np.einsum("ij,ij->", diff, diff)))


def kmeans(
    x: Any,
    k: int,
    niter: int = 20,
    seed: int = 0,
    spherical: bool = False,
    backend: str = "auto",
) -> KMeansResult:
    """Cluster the rows of ``x`` into ``k`` groups; deterministic for a given seed.

    Why: every FAA round turns the pooled per-video vectors into pseudo-
    identities with k-means. ``k`` must satisfy 1 <= k <= V (``InputError``,
    a ``ValueError``, otherwise; clip with :func:`effective_k` first when the
    schedule may ask for more clusters than videos).

    Args:
        x: (V, d) points (converted to contiguous float32).
        k: number of clusters.
        niter: Lloyd iterations.
        seed: seed of the initialisation (faiss ``seed=`` / numpy generator).
        spherical: normalise centroids and assign by inner product (for
            unit-norm points such as the pooled vectors).
        backend: "auto" (see :func:`choose_backend`), "faiss" (exact, CPU),
            "numpy" (exact), "faiss-gpu" (exact, on the GPU) or "fast"
            (PCA + sampled fit, L2 only).
    """
    if backend not in BACKENDS:
        raise InputError(f"backend must be one of {BACKENDS}; got {backend!r}")
    if backend in ("faiss", "faiss-gpu") and not _HAVE_FAISS:
        raise InputError(f"backend={backend!r} was asked for but faiss cannot be imported")
    if backend == "faiss-gpu" and not gpu_available():
        raise InputError("backend='faiss-gpu' was asked for but faiss has no GPU support here or sees no GPU; use 'auto'")
    if backend == "fast" and spherical:
        raise InputError("the fast k-means path is L2 only; use spherical=False or an exact backend")
    arr = _as_numpy(x)
    shape = arr.shape if arr.ndim == 2 else (0, 0)
    chosen = choose_backend(shape[0], shape[1], spherical, backend)
    if chosen == "numpy":
        return _kmeans_numpy(x, k, niter=niter, seed=seed, spherical=spherical)
    xf = _check_kmeans_args(x, k, niter)
    if chosen == "fast":
        return _kmeans_fast(xf, int(k), int(niter), int(seed))
    return _kmeans_faiss(xf, int(k), int(niter), int(seed), bool(spherical), gpu=chosen == "faiss-gpu")


# ---------------------------------------------------------------------------
# item labels
# ---------------------------------------------------------------------------


def labels_for_items(item_video: Any, video_keys: Any, video_labels: Any) -> np.ndarray:
    """Each item's pseudo-label = its video's cluster; -1 where the video has no label.

    Why: the loss works on items (frames, utterances) while k-means labels
    videos; items of videos that were left out of pooling (a modality
    missing) get -1, which the samplers must skip.
    """
    items = _as_numpy(item_video)
    keys = _as_numpy(video_keys)
    labs = _as_numpy(video_labels)
    if items.ndim != 1 or keys.ndim != 1 or labs.ndim != 1:
        raise InputError("item_video, video_keys and video_labels must be 1-D")
    if keys.shape[0] != labs.shape[0]:
        raise InputError(f"{keys.shape[0]} video keys but {labs.shape[0]} video labels")
    out = np.full(items.shape[0], -1, dtype=np.int64)
    if keys.shape[0] == 0 or items.shape[0] == 0:
        return out
    try:
        order = np.argsort(keys, kind="stable")
        sorted_keys = keys[order]
        if np.any(sorted_keys[1:] == sorted_keys[:-1]):
            raise InputError("video_keys contains duplicates")
        pos = np.searchsorted(sorted_keys, items)
        pos_c = np.minimum(pos, keys.shape[0] - 1)
        found = sorted_keys[pos_c] == items
    except TypeError:  # keys of incomparable types (e.g. int vs str): slow but exact path
        lookup = {k: int(l) for k, l in zip(keys.tolist(), labs.tolist())}
        if len(lookup) != keys.shape[0]:
            raise InputError("video_keys contains duplicates") from None
        return np.fromiter((lookup.get(i, -1) for i in items.tolist()), dtype=np.int64, count=items.shape[0])
    found = np.asarray(found, dtype=bool)
    out[found] = labs[order[pos_c[found]]].astype(np.int64)
    return out


# ---------------------------------------------------------------------------
# progressive number of clusters
# ---------------------------------------------------------------------------


class ProgressiveClusterSchedule:
    """Number of k-means clusters per training round ("progressive clustering" of FAA).

    The paper says clustering is progressive but publishes no schedule; one
    public summary says the count starts high and is reduced when validation
    stops improving. The project's reading:

    * default: start at ``start`` clusters. After each round's validation,
      :meth:`step` compares the metric with the best so far (improvement =
      better by more than ``min_delta``; NaN never improves). After
      ``patience`` consecutive non-improving rounds the count becomes
      ``max(minimum, round(count * factor))`` (at least one less than before
      while above ``minimum``) and the patience counter restarts; the best
      metric is kept across reductions.
    * ``milestones``: an explicit count per round (round 0 first); rounds past
      the end keep the last count. The metric is still recorded.
    * ``fixed=True``: the count stays ``start`` (ablation).

    ``history`` holds one dict per :meth:`step` call: round, clusters used in
    that round, metric, improved, and the count chosen for the next round.
    """

    def __init__(
        self,
        start: int = 1000,
        factor: float = 0.8,
        minimum: int = 100,
        patience: int = 1,
        milestones: Sequence[int] | None = None,
        fixed: bool = False,
        higher_is_better: bool = True,
        min_delta: float = 0.0,
    ) -> None:
        if milestones is not None:
            ms = [int(m) for m in milestones]
            if not ms:
                raise InputError("milestones must not be empty")
            if any(m < 1 for m in ms):
                raise InputError(f"milestones must all be >= 1; got {ms}")
            if fixed:
                raise InputError("fixed=True and milestones cannot be combined")
            self.milestones: list[int] | None = ms
        else:
            self.milestones = None
        if int(start) < 1:
            raise InputError(f"start must be >= 1; got {start}")
        if not 0.0 < float(factor) < 1.0:
            raise InputError(f"factor must be in (0, 1); got {factor}")
        if not 1 <= int(minimum) <= int(start) and self.milestones is None:
            raise InputError(f"minimum must be in [1, start={start}]; got {minimum}")
        if int(patience) < 1:
            raise InputError(f"patience must be >= 1; got {patience}")
        if float(min_delta) < 0.0:
            raise InputError(f"min_delta must be >= 0; got {min_delta}")
        self.start = int(start)
        self.factor = float(factor)
        self.minimum = int(minimum)
        self.patience = int(patience)
        self.fixed = bool(fixed)
        self.higher_is_better = bool(higher_is_better)
        self.min_delta = float(min_delta)
        self.round = 0
        self.best: float | None = None
        self.bad_rounds = 0
        self._count = self.milestones[0] if self.milestones is not None else self.start
        self.history: list[dict[str, Any]] = []

    def current(self) -> int:
        """Number of clusters for the current round."""
        return self._count

    def _improved(self, metric: float) -> bool:
        """Whether ``metric`` beats the best so far by more than ``min_delta``."""
        if not math.isfinite(metric):
            return False
        if self.best is None:
            return True
        if self.higher_is_better:
            return metric > self.best + self.min_delta
        return metric < self.best - self.min_delta

    def step(self, val_metric: float) -> int:
        """Record this round's validation metric and return the count for the next round."""
        metric = float(val_metric)
        used = self._count
        improved = self._improved(metric)
        if improved:
            self.best = metric
            self.bad_rounds = 0
        else:
            self.bad_rounds += 1
        self.round += 1
        if self.milestones is not None:
            self._count = self.milestones[min(self.round, len(self.milestones) - 1)]
        elif not self.fixed and self.bad_rounds >= self.patience:
            if self._count > self.minimum:
                reduced = int(round(self._count * self.factor))
                self._count = max(self.minimum, min(reduced, self._count - 1))
            self.bad_rounds = 0
        self.history.append(
            {
                "round": self.round - 1,
                "clusters": used,
                "metric": metric,
                "improved": improved,
                "next_clusters": self._count,
            }
        )
        return self._count

    def state_dict(self) -> dict[str, Any]:
        """Plain-data state (configuration and progress) for checkpoints."""
        return {
            "start": self.start,
            "factor": self.factor,
            "minimum": self.minimum,
            "patience": self.patience,
            "milestones": None if self.milestones is None else list(self.milestones),
            "fixed": self.fixed,
            "higher_is_better": self.higher_is_better,
            "min_delta": self.min_delta,
            "round": self.round,
            "best": self.best,
            "bad_rounds": self.bad_rounds,
            "count": self._count,
            "history": [dict(h) for h in self.history],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore configuration and progress from :meth:`state_dict`, so training resumes exactly."""
        required = {"start", "factor", "minimum", "patience", "milestones", "fixed", "round", "best", "bad_rounds", "count", "history"}
        missing = required - set(state)
        if missing:
            raise InputError(f"schedule state lacks {sorted(missing)}")
        fresh = ProgressiveClusterSchedule(
            start=state["start"],
            factor=state["factor"],
            minimum=state["minimum"],
            patience=state["patience"],
            milestones=state["milestones"],
            fixed=state["fixed"],
            higher_is_better=state.get("higher_is_better", True),
            min_delta=state.get("min_delta", 0.0),
        )
        self.__dict__.update(fresh.__dict__)
        self.round = int(state["round"])
        self.best = None if state["best"] is None else float(state["best"])
        self.bad_rounds = int(state["bad_rounds"])
        self._count = int(state["count"])
        self.history = [dict(h) for h in state["history"]]


# ---------------------------------------------------------------------------
# cluster quality
# ---------------------------------------------------------------------------


def _valid_pairs(pred: Any, true: Any) -> tuple[np.ndarray, np.ndarray]:
    """Predicted / true labels with unlabelled items (-1 on either side) removed."""
    p = _as_numpy(pred).reshape(-1)
    t = _as_numpy(true).reshape(-1)
    if p.shape != t.shape:
        raise InputError(f"pred and true have different lengths: {p.shape[0]} and {t.shape[0]}")
    keep = np.ones(p.shape[0], dtype=bool)
    for arr in (p, t):
        if np.issubdtype(arr.dtype, np.number):
            keep &= arr != -1
        else:
            keep &= np.array([x != -1 and x != "-1" for x in arr.tolist()], dtype=bool)
    if not keep.any():
        raise InputError("no item has both a predicted and a true label")
    return p[keep], t[keep]


def cluster_purity(pred: Any, true: Any) -> float:
    """Fraction of items whose cluster's majority true label equals their own.

    Why: tells how clean the pseudo-identities are on data with known
    identities. Items with pred == -1 or true == -1 are ignored.
    """
    p, t = _valid_pairs(pred, true)
    _, p_idx = np.unique(p, return_inverse=True)
    _, t_idx = np.unique(t, return_inverse=True)
    p_idx, t_idx = p_idx.reshape(-1), t_idx.reshape(-1)
    n_t = int(t_idx.max()) + 1
    # count (cluster, true label) pairs sparsely: dense tables could be clusters x identities large
    codes, counts = np.unique(p_idx.astype(np.int64) * n_t + t_idx, return_counts=True)
    majority = np.zeros(int(p_idx.max()) + 1, dtype=np.int64)
    np.maximum.at(majority, codes // n_t, counts)
    return float(majority.sum() / p.shape[0])


def nmi(pred: Any, true: Any) -> float:
    """Normalised mutual information (scikit-learn, arithmetic mean), ignoring -1 on either side.

    Why: unlike purity it does not reward many tiny clusters.
    """
    from sklearn.metrics import normalized_mutual_info_score

    p, t = _valid_pairs(pred, true)
    return float(normalized_mutual_info_score(t, p))
