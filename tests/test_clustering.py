"""Tests of faa_core.clustering: pooling, k-means (faiss and numpy), item labels, schedule, purity/NMI."""

from __future__ import annotations

import numpy as np
import pytest

from faa_core import clustering as cl
from faa_core.clustering import (
    KMeansResult,
    ProgressiveClusterSchedule,
    _kmeans_numpy,
    cluster_purity,
    dual_modality_pooling,
    effective_k,
    kmeans,
    labels_for_items,
    nmi,
)

BACKENDS = ["numpy"] + (["faiss"] if cl.HAVE_FAISS else [])


def _blobs(n_per: int = 60, k: int = 5, d: int = 8, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Well-separated Gaussian blobs (centres 20 apart, unit noise) and their true labels."""
    rng = np.random.default_rng(seed)
    centres = np.eye(k, d) * 20.0
    x = np.concatenate([c + rng.normal(size=(n_per, d)) for c in centres]).astype(np.float32)
    y = np.repeat(np.arange(k), n_per)
    perm = rng.permutation(x.shape[0])
    return x[perm], y[perm]


# ---------------------------------------------------------------------------
# pooling
# ---------------------------------------------------------------------------


def test_pooling_hand_example() -> None:
    voice = np.array([[3.0, 0.0], [1.0, 0.0], [0.0, 2.0], [5.0, 5.0]])
    voice_vid = np.array(["b", "b", "a", "c"])  # "c" has no face: dropped
    face = np.array([[0.0, 1.0], [0.0, 3.0], [4.0, 4.0], [2.0, 0.0]])
    face_vid = np.array(["b", "b", "a", "d"])  # "d" has no voice: dropped
    keys, pooled = dual_modality_pooling(voice, voice_vid, face, face_vid)

    assert keys.tolist() == ["a", "b"]  # sorted by key
    assert pooled.dtype == np.float32 and pooled.shape == (2, 4)
    s = 1 / np.sqrt(2)
    # a: voice mean (0,2) -> (0,1); face mean (4,4) -> (s,s)
    np.testing.assert_allclose(pooled[0], [0, 1, s, s], atol=1e-6)
    # b: voice mean (2,0) -> (1,0); face mean (0,2) -> (0,1)
    np.testing.assert_allclose(pooled[1], [1, 0, 0, 1], atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(pooled[:, :2], axis=1), 1.0, atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(pooled[:, 2:], axis=1), 1.0, atol=1e-6)


def test_pooling_integer_keys_and_matches_loop() -> None:
    rng = np.random.default_rng(1)
    nv, nf, d, nvid = 300, 250, 6, 40
    voice, face = rng.normal(size=(nv, d)), rng.normal(size=(nf, d))
    vv, fv = rng.integers(0, nvid, nv), rng.integers(5, nvid + 5, nf)
    keys, pooled = dual_modality_pooling(voice, vv, face, fv)
    expected_keys = sorted(set(vv.tolist()) & set(fv.tolist()))
    assert keys.tolist() == expected_keys
    for i, key in enumerate(expected_keys):
        vm, fm = voice[vv == key].mean(0), face[fv == key].mean(0)
        ref = np.concatenate([vm / np.linalg.norm(vm), fm / np.linalg.norm(fm)])
        np.testing.assert_allclose(pooled[i], ref, atol=1e-5)


def test_pooling_rejects_bad_input() -> None:
    v = np.ones((2, 3))
    with pytest.raises(ValueError):
        dual_modality_pooling(v, ["a"], np.ones((2, 3)), ["a", "b"])  # key count mismatch
    with pytest.raises(ValueError):
        dual_modality_pooling(np.full((2, 3), np.nan), ["a", "b"], np.ones((2, 3)), ["a", "b"])


def test_pooling_modalities_of_different_width() -> None:
    """Raw encoder features differ in width (voice 192, face 512); pooling concatenates them."""
    keys, pooled = dual_modality_pooling(np.ones((2, 3)), ["a", "b"], np.ones((2, 4)), ["a", "b"])
    assert pooled.shape == (2, 7)
    np.testing.assert_allclose(pooled[0], np.r_[np.full(3, 3 ** -0.5), np.full(4, 0.5)], rtol=1e-6)


def test_pooling_no_common_video_gives_empty() -> None:
    keys, pooled = dual_modality_pooling(np.ones((1, 2)), ["a"], np.ones((1, 2)), ["b"])
    assert keys.shape == (0,) and pooled.shape == (0, 4)


# ---------------------------------------------------------------------------
# k-means
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_kmeans_recovers_blobs(backend: str) -> None:
    x, y = _blobs()
    res = kmeans(x, 5, niter=20, seed=0, backend=backend)
    assert isinstance(res, KMeansResult)
    assert res.labels.dtype == np.int64 and res.labels.shape == (x.shape[0],)
    assert res.centroids.dtype == np.float32 and res.centroids.shape == (5, 8)
    assert cluster_purity(res.labels, y) == 1.0
    assert nmi(res.labels, y) == pytest.approx(1.0, abs=1e-9)
    # inertia is the sum of squared distances to the assigned centroid
    ref = ((x - res.centroids[res.labels]) ** 2).sum()
    assert res.inertia == pytest.approx(float(ref), rel=1e-3)


@pytest.mark.parametrize("backend", BACKENDS)
def test_kmeans_spherical(backend: str) -> None:
    x, y = _blobs(seed=3)
    x = x / np.linalg.norm(x, axis=1, keepdims=True)
    res = kmeans(x, 5, seed=0, spherical=True, backend=backend)
    np.testing.assert_allclose(np.linalg.norm(res.centroids, axis=1), 1.0, atol=1e-4)
    assert cluster_purity(res.labels, y) == 1.0
    ref = ((x - res.centroids[res.labels]) ** 2).sum()
    assert res.inertia == pytest.approx(float(ref), rel=1e-3, abs=1e-4)


@pytest.mark.parametrize("backend", BACKENDS)
def test_kmeans_deterministic(backend: str) -> None:
    rng = np.random.default_rng(7)
    x = rng.normal(size=(2000, 16)).astype(np.float32)  # no structure: init matters
    a = kmeans(x, 50, seed=3, backend=backend)
    b = kmeans(x, 50, seed=3, backend=backend)
    np.testing.assert_array_equal(a.labels, b.labels)
    np.testing.assert_array_equal(a.centroids, b.centroids)
    c = kmeans(x, 50, seed=4, backend=backend)
    assert not np.array_equal(a.labels, c.labels)


@pytest.mark.parametrize("backend", BACKENDS)
def test_kmeans_k_bounds(backend: str) -> None:
    x = np.random.default_rng(0).normal(size=(10, 3)).astype(np.float32)
    with pytest.raises(ValueError):
        kmeans(x, 11, backend=backend)
    with pytest.raises(ValueError):
        kmeans(x, 0, backend=backend)
    res = kmeans(x, 10, backend=backend)  # k == V: every point its own cluster
    assert sorted(res.labels.tolist()) == list(range(10))
    assert kmeans(x, 1, backend=backend).labels.tolist() == [0] * 10


def test_kmeans_rejects_bad_input() -> None:
    with pytest.raises(ValueError):
        kmeans(np.array([[np.inf, 0.0], [0.0, 1.0]]), 1)
    with pytest.raises(ValueError):
        kmeans(np.ones((4, 2)), 2, backend="gpu")
    with pytest.raises(ValueError):
        kmeans(np.ones(4), 2)


def test_kmeans_numpy_direct_and_empty_clusters() -> None:
    x, y = _blobs(n_per=30, k=3, d=4, seed=5)
    res = _kmeans_numpy(x, 3, niter=10, seed=1)
    assert cluster_purity(res.labels, y) == 1.0
    # many duplicate points: k-means++ and empty-cluster reseeding must not crash or give NaN
    dup = np.repeat(np.array([[0.0, 0.0], [1.0, 1.0]], dtype=np.float32), 20, axis=0)
    res = _kmeans_numpy(dup, 5, niter=5, seed=0)
    assert np.all(np.isfinite(res.centroids))
    assert res.inertia == pytest.approx(0.0, abs=1e-9)


def test_effective_k() -> None:
    assert effective_k(1000, 20) == 20
    assert effective_k(5, 20) == 5
    with pytest.raises(ValueError):
        effective_k(5, 0)


# ---------------------------------------------------------------------------
# item labels
# ---------------------------------------------------------------------------


def test_labels_for_items_strings() -> None:
    keys = np.array(["v2", "v0", "v1"])  # unsorted keys are fine
    labs = np.array([7, 3, 5])
    items = np.array(["v0", "v1", "vX", "v2", "v0", ""])
    assert labels_for_items(items, keys, labs).tolist() == [3, 5, -1, 7, 3, -1]


def test_labels_for_items_ints_and_edge_cases() -> None:
    out = labels_for_items(np.array([10, 99, 30, 10]), np.array([10, 20, 30]), np.array([0, 1, 2]))
    assert out.dtype == np.int64 and out.tolist() == [0, -1, 2, 0]
    assert labels_for_items(np.array([1, 2]), np.array([], dtype=int), np.array([], dtype=int)).tolist() == [-1, -1]
    with pytest.raises(ValueError):
        labels_for_items(np.array([1]), np.array([1, 1]), np.array([0, 1]))
    with pytest.raises(ValueError):
        labels_for_items(np.array([1]), np.array([1, 2]), np.array([0]))


def test_pool_cluster_label_round_trip() -> None:
    """The whole pseudo-label path: items -> pooled videos -> k-means -> item labels."""
    rng = np.random.default_rng(2)
    n_id, vids_per_id, d = 4, 6, 8
    centres = rng.normal(size=(n_id, d)) * 10
    vv, fv, ve, fe, vid_id = [], [], [], [], {}
    for i in range(n_id):
        for j in range(vids_per_id):
            vid = f"id{i}_v{j}"
            vid_id[vid] = i
            for _ in range(3):
                vv.append(vid); ve.append(centres[i] + rng.normal(size=d))
                fv.append(vid); fe.append(-centres[i] + rng.normal(size=d))
    vv.append("lonely"); ve.append(np.zeros(d))  # voice-only video
    keys, pooled = dual_modality_pooling(np.array(ve), np.array(vv), np.array(fe), np.array(fv))
    res = kmeans(pooled, n_id, seed=0)
    item_labels = labels_for_items(np.array(vv), keys, res.labels)
    assert item_labels[-1] == -1
    truth = np.array([vid_id.get(v, -1) for v in vv])
    assert cluster_purity(item_labels, truth) == 1.0


# ---------------------------------------------------------------------------
# schedule
# ---------------------------------------------------------------------------


def test_schedule_decreases_after_patience() -> None:
    s = ProgressiveClusterSchedule(start=1000, factor=0.8, minimum=500, patience=2)
    assert s.current() == 1000
    assert s.step(0.70) == 1000  # first metric always improves
    assert s.step(0.72) == 1000
    assert s.step(0.71) == 1000  # 1 bad round
    assert s.step(0.71) == 800  # 2 bad rounds -> reduce, counter restarts
    assert s.step(0.70) == 800
    assert s.step(0.73) == 800  # improvement resets the counter
    assert s.step(0.60) == 800
    assert s.step(0.60) == 640
    assert s.step(0.60) == 640
    assert s.step(0.60) == 512
    assert s.step(0.60) == 512
    assert s.step(0.60) == 500  # clipped at the minimum
    for _ in range(6):
        assert s.step(0.1) == 500  # never below minimum
    assert len(s.history) == 18
    assert s.history[3] == {"round": 3, "clusters": 1000, "metric": 0.71, "improved": False, "next_clusters": 800}
    assert s.best == 0.73


def test_schedule_small_counts_strictly_decrease_and_nan() -> None:
    s = ProgressiveClusterSchedule(start=3, factor=0.9, minimum=1, patience=1)
    s.step(0.5)
    assert s.step(float("nan")) == 2  # NaN never improves; round(2.7)=3 is forced below 3
    assert s.step(0.4) == 1
    assert s.step(0.4) == 1


def test_schedule_lower_is_better_and_min_delta() -> None:
    s = ProgressiveClusterSchedule(start=100, factor=0.5, minimum=10, patience=1, higher_is_better=False, min_delta=0.01)
    s.step(1.0)
    assert s.step(0.995) == 50  # not better by more than min_delta
    assert s.step(0.9) == 50


def test_schedule_fixed() -> None:
    s = ProgressiveClusterSchedule(start=300, minimum=10, patience=1, fixed=True)
    for m in [0.5, 0.4, 0.3, 0.2]:
        assert s.step(m) == 300
    assert s.current() == 300 and len(s.history) == 4


def test_schedule_milestones() -> None:
    s = ProgressiveClusterSchedule(milestones=[1000, 800, 600])
    assert s.current() == 1000
    assert s.step(0.9) == 800
    assert s.step(0.1) == 600
    assert s.step(0.5) == 600  # past the end: last count
    assert [h["clusters"] for h in s.history] == [1000, 800, 600]


def test_schedule_invalid() -> None:
    with pytest.raises(ValueError):
        ProgressiveClusterSchedule(start=100, minimum=200)
    with pytest.raises(ValueError):
        ProgressiveClusterSchedule(factor=1.0)
    with pytest.raises(ValueError):
        ProgressiveClusterSchedule(patience=0)
    with pytest.raises(ValueError):
        ProgressiveClusterSchedule(milestones=[])
    with pytest.raises(ValueError):
        ProgressiveClusterSchedule(milestones=[10], fixed=True)


def test_schedule_state_round_trip() -> None:
    import json

    s = ProgressiveClusterSchedule(start=1000, factor=0.8, minimum=100, patience=2)
    for m in [0.5, 0.6, 0.55, 0.55, 0.54]:
        s.step(m)
    state = json.loads(json.dumps(s.state_dict()))  # plain data, checkpoint-safe
    r = ProgressiveClusterSchedule()  # defaults: configuration comes from the state
    r.load_state_dict(state)
    assert r.current() == s.current() == 800
    assert r.history == s.history and r.best == s.best and r.bad_rounds == s.bad_rounds
    for m in [0.5, 0.4, 0.7, 0.1, 0.1]:
        assert r.step(m) == s.step(m)
    assert r.state_dict() == s.state_dict()
    with pytest.raises(ValueError):
        r.load_state_dict({"start": 10})


# ---------------------------------------------------------------------------
# purity / NMI
# ---------------------------------------------------------------------------


def test_purity_hand_cases() -> None:
    assert cluster_purity([0, 0, 1, 1], [0, 1, 1, 1]) == 0.75
    assert cluster_purity([0, 0, 0, 0], [0, 1, 2, 2]) == 0.5
    assert cluster_purity([0, 1, 2, 3], [0, 0, 0, 0]) == 1.0  # singletons are trivially pure
    assert cluster_purity([5, 5, -1, 7], [1, 1, 0, 2]) == 1.0  # pred -1 ignored
    assert cluster_purity([0, 0, 0], [1, -1, 2]) == 0.5  # true -1 ignored
    assert cluster_purity(np.array([0, 0, 1]), np.array(["a", "b", "b"])) == pytest.approx(2 / 3)
    with pytest.raises(ValueError):
        cluster_purity([-1, -1], [0, 1])
    with pytest.raises(ValueError):
        cluster_purity([0, 1], [0])


def test_nmi() -> None:
    assert nmi([0, 0, 1, 1], [1, 1, 0, 0]) == pytest.approx(1.0)
    assert nmi([0, 0, 1, 1, -1], [1, 1, 0, 0, 0]) == pytest.approx(1.0)
    assert nmi([0, 1, 0, 1], [0, 0, 1, 1]) == pytest.approx(0.0, abs=1e-12)


def test_auto_backend_falls_back_without_faiss(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cl, "_HAVE_FAISS", False)
    x, y = _blobs(n_per=20, k=3, d=4)
    res = kmeans(x, 3, seed=0)
    ref = _kmeans_numpy(x, 3, seed=0)
    np.testing.assert_array_equal(res.labels, ref.labels)
    assert cluster_purity(res.labels, y) == 1.0
    with pytest.raises(ValueError):
        kmeans(x, 3, backend="faiss")


# ---------------------------------------------------------------------------
# backend choice, GPU detection, fast CPU path
# ---------------------------------------------------------------------------


def _low_rank_identities(n_ids: int = 300, per: int = 10, d: int = 128, rank: int = 12, seed: int = 0):
    """Identity centres in a rank-``rank`` subspace of R^d plus isotropic noise (like pooled features)."""
    rng = np.random.default_rng(seed)
    basis = np.linalg.qr(rng.normal(size=(d, rank)))[0]
    centres = rng.normal(size=(n_ids, rank)) @ basis.T
    y = np.repeat(np.arange(n_ids), per)
    x = centres[y] + 0.5 * rng.normal(size=(y.size, rank)) @ basis.T + 0.05 * rng.normal(size=(y.size, d))
    return x.astype(np.float32), y


def test_choose_backend() -> None:
    exact = "faiss" if cl.HAVE_FAISS else "numpy"
    gpu = cl.gpu_available()
    assert cl.choose_backend(3_200, 704) == ("faiss-gpu" if gpu else exact)  # a small world: exact, as before
    assert cl.choose_backend(100_000, 704) == ("faiss-gpu" if gpu else "fast")
    if not gpu:
        assert cl.choose_backend(cl.FAST_MIN_POINTS - 1, 704) == exact
        assert cl.choose_backend(100_000, 704, spherical=True) == exact  # the fast path is L2 only
    assert cl.choose_backend(10, 4, backend="numpy") == "numpy"
    with pytest.raises(ValueError, match="backend must be one of"):
        cl.choose_backend(10, 4, backend="cuda")


@pytest.mark.skipif(not cl.HAVE_FAISS, reason="faiss not installed")
def test_small_inputs_stay_exact() -> None:
    x, _ = _low_rank_identities(n_ids=100, per=5)
    a, b = kmeans(x, 80, seed=2), kmeans(x, 80, seed=2, backend="faiss")
    np.testing.assert_array_equal(a.labels, b.labels)
    assert a.inertia == b.inertia


def test_gpu_backend_refused_without_a_gpu() -> None:
    if cl.gpu_available():
        pytest.skip("a GPU is visible")
    with pytest.raises(ValueError, match="no GPU support|cannot be imported"):
        kmeans(np.ones((4, 2), dtype=np.float32), 2, backend="faiss-gpu")


@pytest.mark.parametrize("with_faiss", [True, False] if cl.HAVE_FAISS else [False])
def test_fast_path_loses_little_on_low_rank_structure(with_faiss: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """Forced on a small input: PCA + sampled fit against exact k-means, purity/NMI against the truth."""
    if not with_faiss:
        monkeypatch.setattr(cl, "_HAVE_FAISS", False)
    x, y = _low_rank_identities()
    k = 450  # 1.5 clusters per identity, as FAA's start fraction gives at 20 videos per person
    exact = kmeans(x, k, seed=0, backend="faiss" if with_faiss else "numpy")
    fast = kmeans(x, k, seed=0, backend="fast")
    assert fast.centroids.shape == (k, 128) and fast.labels.shape == (3000,)
    ref = ((x.astype(np.float64) - fast.centroids[fast.labels]) ** 2).sum()
    assert fast.inertia == pytest.approx(float(ref), rel=1e-4)  # in the input space
    pe, pf = cluster_purity(exact.labels, y), cluster_purity(fast.labels, y)
    ne, nf = nmi(exact.labels, y), nmi(fast.labels, y)
    measured = {True: (0.8347, 0.747, 0.9076, 0.877), False: (0.8183, 0.7853, 0.9049, 0.8882)}[with_faiss]
    assert (round(pe, 4), round(pf, 4), round(ne, 4), round(nf, 4)) == measured
    assert pf > pe - 0.1 and nf > ne - 0.035  # the price of fitting on 3 points per cluster in 64 dims
    again = kmeans(x, k, seed=0, backend="fast")
    np.testing.assert_array_equal(again.labels, fast.labels)
    with pytest.raises(ValueError, match="L2 only"):
        kmeans(x, k, spherical=True, backend="fast")
