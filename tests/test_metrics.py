"""Tests for faa_core.metrics (CPU, fast)."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from faa_core.metrics import (
    average_precision,
    cosine_to_unit,
    matching_accuracy,
    matching_curve,
    one_to_n_accuracy,
    retrieval_map,
    verification_auc,
)


def _brute_map(sim: np.ndarray, q_ids: np.ndarray, g_ids: np.ndarray) -> float:
    aps = []
    for i in range(sim.shape[0]):
        rel = g_ids == q_ids[i]
        if rel.any():
            aps.append(average_precision_score(rel, sim[i]))
    return float(np.mean(aps))


# ---------------------------------------------------------------------------
# verification_auc
# ---------------------------------------------------------------------------


def test_auc_hand_case():
    assert verification_auc([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]) == pytest.approx(0.75)


def test_auc_tie_hand_case():
    # one pos/neg pair tied -> half credit: pairs (0.5>0.2)=1, (0.5==0.5)=0.5
    assert verification_auc([0.5, 0.2, 0.5], [1, 0, 0]) == pytest.approx(0.75)


@pytest.mark.parametrize("seed", range(5))
def test_auc_matches_sklearn_random(seed):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, size=500)
    y[:2] = [0, 1]
    s = rng.standard_normal(500) + 0.7 * y
    assert verification_auc(s, y) == pytest.approx(roc_auc_score(y, s), abs=1e-12)


@pytest.mark.parametrize("seed", range(5))
def test_auc_matches_sklearn_ties(seed):
    rng = np.random.default_rng(100 + seed)
    y = rng.integers(0, 2, size=400)
    y[:2] = [0, 1]
    s = rng.integers(0, 5, size=400) + y  # integer scores: lots of ties
    assert verification_auc(s, y) == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    # bool labels and float32 scores accepted
    assert verification_auc(s.astype(np.float32), y.astype(bool)) == pytest.approx(
        roc_auc_score(y, s), abs=1e-12
    )


def test_auc_invariant_to_cosine_to_unit():
    rng = np.random.default_rng(7)
    y = rng.integers(0, 2, size=200)
    y[:2] = [0, 1]
    cos = np.tanh(rng.standard_normal(200))
    assert verification_auc(cosine_to_unit(cos), y) == pytest.approx(
        verification_auc(cos, y), abs=1e-15
    )


def test_auc_accepts_torch_tensor():
    torch = pytest.importorskip("torch")
    s = torch.tensor([0.1, 0.4, 0.35, 0.8], requires_grad=True)
    assert verification_auc(s, torch.tensor([0, 0, 1, 1])) == pytest.approx(0.75)


def test_auc_errors():
    with pytest.raises(ValueError, match="shape mismatch"):
        verification_auc([0.1, 0.2, 0.3], [0, 1])
    with pytest.raises(ValueError, match="empty"):
        verification_auc([], [])
    with pytest.raises(ValueError, match="NaN or inf"):
        verification_auc([0.1, np.nan, 0.3], [0, 1, 1])
    with pytest.raises(ValueError, match="NaN or inf"):
        verification_auc([0.1, np.inf, 0.3], [0, 1, 1])
    with pytest.raises(ValueError, match="binary"):
        verification_auc([0.1, 0.2, 0.3], [0, 1, 2])
    with pytest.raises(ValueError, match="binary"):
        verification_auc([0.1, 0.2, 0.3], [-1, 1, 1])
    with pytest.raises(ValueError, match="one class"):
        verification_auc([0.1, 0.2, 0.3], [1, 1, 1])
    with pytest.raises(ValueError, match="one class"):
        verification_auc([0.1, 0.2, 0.3], [0, 0, 0])


# ---------------------------------------------------------------------------
# cosine_to_unit
# ---------------------------------------------------------------------------


def test_cosine_to_unit():
    out = cosine_to_unit(np.array([-1.0, 0.0, 0.5, 1.0]))
    np.testing.assert_allclose(out, [0.0, 0.5, 0.75, 1.0])
    assert isinstance(out, np.ndarray)
    out32 = cosine_to_unit(np.array([0.0], dtype=np.float32))
    assert out32.dtype == np.float32
    np.testing.assert_allclose(cosine_to_unit([1, -1]), [1.0, 0.0])


# ---------------------------------------------------------------------------
# matching_accuracy / one_to_n_accuracy
# ---------------------------------------------------------------------------


def test_matching_accuracy_hand_cases():
    assert matching_accuracy([0.9, 0.8], [0.1, 0.2]) == 1.0
    assert matching_accuracy([0.1, 0.2], [0.9, 0.8]) == 0.0
    assert matching_accuracy([0.9, 0.1], [0.1, 0.9]) == 0.5
    # tie = half credit
    assert matching_accuracy([0.5], [0.5]) == 0.5
    assert matching_accuracy([0.5, 0.9, 0.1, 0.3], [0.5, 0.1, 0.9, 0.3]) == pytest.approx(
        (0.5 + 1 + 0 + 0.5) / 4
    )
    assert matching_accuracy(np.zeros(10), np.zeros(10)) == 0.5


def test_one_to_n_hand_cases():
    s = np.array(
        [
            [0.9, 0.1, 0.2],  # strict max -> 1
            [0.1, 0.9, 0.2],  # wrong -> 0
            [0.9, 0.9, 0.2],  # 2-way tie at max -> 1/2
            [0.5, 0.5, 0.5],  # 3-way tie -> 1/3
            [0.5, 0.9, 0.9],  # wrong ones tie at max -> 0
        ]
    )
    assert one_to_n_accuracy(s) == pytest.approx((1 + 0 + 0.5 + 1 / 3 + 0) / 5)
    assert one_to_n_accuracy(np.zeros((7, 10))) == pytest.approx(0.1)


def test_one_to_n_equals_matching_for_n2():
    rng = np.random.default_rng(3)
    s = rng.integers(0, 3, size=(300, 2)).astype(float)  # with ties
    assert one_to_n_accuracy(s) == pytest.approx(matching_accuracy(s[:, 0], s[:, 1]))
    s = rng.standard_normal((300, 2))
    assert one_to_n_accuracy(s) == pytest.approx(matching_accuracy(s[:, 0], s[:, 1]))


def test_matching_errors():
    with pytest.raises(ValueError, match="shape mismatch"):
        matching_accuracy([0.1, 0.2], [0.1])
    with pytest.raises(ValueError, match="empty"):
        matching_accuracy([], [])
    with pytest.raises(ValueError, match="NaN or inf"):
        matching_accuracy([0.1, np.nan], [0.1, 0.2])
    with pytest.raises(ValueError, match="NaN or inf"):
        matching_accuracy([0.1, 0.2], [0.1, -np.inf])
    with pytest.raises(ValueError, match="empty"):
        one_to_n_accuracy(np.zeros((0, 3)))
    with pytest.raises(ValueError, match="2-D"):
        one_to_n_accuracy(np.zeros(5))
    with pytest.raises(ValueError, match="at least 2"):
        one_to_n_accuracy(np.zeros((5, 1)))
    with pytest.raises(ValueError, match="NaN or inf"):
        one_to_n_accuracy(np.array([[0.1, np.nan]]))


# ---------------------------------------------------------------------------
# matching_curve
# ---------------------------------------------------------------------------


def _ids(rng, n, n_ids):
    ids = rng.integers(0, n_ids, size=n)
    ids[:n_ids] = np.arange(n_ids)  # every identity present
    return rng.permutation(ids)


def test_matching_curve_perfect_similarity():
    rng = np.random.default_rng(0)
    q_ids, g_ids = _ids(rng, 60, 15), _ids(rng, 50, 15)
    sim = (q_ids[:, None] == g_ids[None, :]).astype(np.float32)
    curve = matching_curve(sim, q_ids, g_ids, trials=300)
    assert sorted(curve) == list(range(2, 11))
    assert all(v == 1.0 for v in curve.values())


def test_matching_curve_constant_similarity_is_chance():
    rng = np.random.default_rng(1)
    q_ids, g_ids = _ids(rng, 40, 12), _ids(rng, 30, 12)
    curve = matching_curve(np.zeros((40, 30)), q_ids, g_ids, trials=200)
    for n, v in curve.items():
        assert v == pytest.approx(1.0 / n, abs=1e-12)


def test_matching_curve_brute_force_random():
    """Random scores: accuracy ~ 1/N; candidates must be distinct identities."""
    rng = np.random.default_rng(2)
    q_ids, g_ids = _ids(rng, 80, 20), _ids(rng, 60, 20)
    sim = rng.standard_normal((80, 60))
    curve = matching_curve(sim, q_ids, g_ids, ns=[2, 5, 10], trials=4000, seed=5)
    for n, v in curve.items():
        assert v == pytest.approx(1.0 / n, abs=0.04)
    # a similarity that is 1 for the correct identity, 0.5 for identities
    # 0..k-1 and 0 otherwise: if distractors were ever drawn from the query's
    # own identity the accuracy would drop below 1
    sim2 = np.where(q_ids[:, None] == g_ids[None, :], 1.0, 0.5 * (g_ids[None, :] < 5))
    assert all(v == 1.0 for v in matching_curve(sim2, q_ids, g_ids, trials=500).values())


def test_matching_curve_single_identity_gallery_item_counts():
    # identity 0 has 1 gallery item, correct candidate must be that one
    q_ids = np.array([0, 1, 2])
    g_ids = np.array([2, 0, 1, 1, 2])
    sim = np.zeros((3, 5))
    sim[0, 1] = 1.0
    sim[1, 2] = sim[1, 3] = 1.0
    sim[2, 0] = sim[2, 4] = 1.0
    assert matching_curve(sim, q_ids, g_ids, ns=[2, 3], trials=100) == {2: 1.0, 3: 1.0}


def test_matching_curve_skips_unmatched_queries():
    # query identity 99 has no gallery item; it would score 0 if used
    q_ids = np.array([0, 1, 99, 99, 99])
    g_ids = np.array([0, 1, 2, 3])
    sim = np.where(q_ids[:, None] == g_ids[None, :], 1.0, 0.0)
    sim[2:] = 5.0
    assert matching_curve(sim, q_ids, g_ids, ns=[2, 3, 4], trials=100) == {
        2: 1.0,
        3: 1.0,
        4: 1.0,
    }


def test_matching_curve_string_ids():
    q_ids = np.array(["a", "b", "c", "zz"])
    g_ids = np.array(["c", "a", "b"])
    sim = (q_ids[:, None] == g_ids[None, :]).astype(float)
    assert matching_curve(sim, q_ids, g_ids, ns=[2, 3], trials=50) == {2: 1.0, 3: 1.0}


def test_matching_curve_deterministic():
    rng = np.random.default_rng(4)
    q_ids, g_ids = _ids(rng, 50, 14), _ids(rng, 40, 14)
    sim = rng.standard_normal((50, 40))
    a = matching_curve(sim, q_ids, g_ids, seed=11, trials=200)
    b = matching_curve(sim, q_ids, g_ids, seed=11, trials=200)
    c = matching_curve(sim, q_ids, g_ids, seed=12, trials=200)
    assert a == b
    assert a != c
    # a value does not depend on which other N are requested
    assert matching_curve(sim, q_ids, g_ids, ns=[6], seed=11, trials=200)[6] == a[6]


def test_matching_curve_errors():
    sim = np.zeros((3, 4))
    q_ids = np.array([0, 1, 2])
    g_ids = np.array([0, 1, 2, 3])
    with pytest.raises(ValueError, match="2-D"):
        matching_curve(np.zeros(4), q_ids, g_ids)
    with pytest.raises(ValueError, match="empty"):
        matching_curve(np.zeros((0, 4)), np.array([]), g_ids)
    with pytest.raises(ValueError, match="query_ids has length"):
        matching_curve(sim, np.array([0, 1]), g_ids, ns=[2])
    with pytest.raises(ValueError, match="gallery_ids has length"):
        matching_curve(sim, q_ids, np.array([0, 1]), ns=[2])
    bad = sim.copy()
    bad[1, 2] = np.nan
    with pytest.raises(ValueError, match="NaN or inf"):
        matching_curve(bad, q_ids, g_ids, ns=[2])
    with pytest.raises(ValueError, match=">= 2"):
        matching_curve(sim, q_ids, g_ids, ns=[1, 2])
    with pytest.raises(ValueError, match="ns is empty"):
        matching_curve(sim, q_ids, g_ids, ns=[])
    with pytest.raises(ValueError, match="trials"):
        matching_curve(sim, q_ids, g_ids, ns=[2], trials=0)
    # no query identity in the gallery
    with pytest.raises(ValueError, match="no trial can be built"):
        matching_curve(sim, np.array([7, 8, 9]), g_ids, ns=[2])
    # 4 gallery identities -> at most 3 others -> N=5 impossible
    with pytest.raises(ValueError, match="no trial can be built for N=5"):
        matching_curve(sim, q_ids, g_ids, ns=[2, 5])
    assert set(matching_curve(sim, q_ids, g_ids, ns=[2, 4], trials=10)) == {2, 4}


# ---------------------------------------------------------------------------
# average_precision / retrieval_map
# ---------------------------------------------------------------------------


def test_average_precision_hand_case():
    # ranking: rel, irr, rel -> (1/1 + 2/3) / 2
    assert average_precision([0.9, 0.5, 0.1], [True, False, True]) == pytest.approx(
        (1 + 2 / 3) / 2
    )
    # all tied: precision at end of the single group = P / n
    assert average_precision([0.3, 0.3, 0.3, 0.3], [1, 0, 0, 1]) == pytest.approx(0.5)


@pytest.mark.parametrize("seed", range(10))
@pytest.mark.parametrize("decimals", [None, 1, 0])
def test_average_precision_matches_sklearn(seed, decimals):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(5, 200))
    rel = rng.random(n) < rng.uniform(0.05, 0.6)
    rel[rng.integers(n)] = True
    s = rng.standard_normal(n) + rel
    if decimals is not None:
        s = np.round(s, decimals)  # heavy ties
    assert average_precision(s, rel) == pytest.approx(
        average_precision_score(rel, s), abs=1e-12
    )
    assert average_precision(s.astype(np.float32), rel.astype(int)) == pytest.approx(
        average_precision_score(rel, s.astype(np.float32)), abs=1e-12
    )


def test_average_precision_errors():
    with pytest.raises(ValueError, match="shape mismatch"):
        average_precision([0.1, 0.2], [True])
    with pytest.raises(ValueError, match="empty"):
        average_precision([], [])
    with pytest.raises(ValueError, match="NaN or inf"):
        average_precision([0.1, np.nan], [True, False])
    with pytest.raises(ValueError, match="binary"):
        average_precision([0.1, 0.2], [0, 3])
    with pytest.raises(ValueError, match="no True"):
        average_precision([0.1, 0.2], [False, False])


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("decimals", [None, 1])
@pytest.mark.parametrize("chunk_size", [1, 7, 256])
def test_retrieval_map_matches_sklearn(seed, decimals, chunk_size):
    rng = np.random.default_rng(seed)
    n_q, n_g, n_ids = 53, 71, 12  # 53 is not a multiple of 7
    q_ids = rng.integers(0, n_ids + 2, size=n_q)  # ids 12, 13: not in gallery
    g_ids = rng.integers(0, n_ids, size=n_g)
    sim = (rng.standard_normal((n_q, n_g)) + 0.8 * (q_ids[:, None] == g_ids)).astype(
        np.float32
    )
    if decimals is not None:
        sim = np.round(sim, decimals)
    expected = _brute_map(sim, q_ids, g_ids)
    assert retrieval_map(sim, q_ids, g_ids, chunk_size=chunk_size) == pytest.approx(
        expected, abs=1e-12
    )
    # other direction is the caller's business
    assert retrieval_map(sim.T, g_ids, q_ids, chunk_size=chunk_size) == pytest.approx(
        _brute_map(sim.T, g_ids, q_ids), abs=1e-12
    )


def test_retrieval_map_perfect_and_string_ids():
    q_ids = np.array(["x", "y", "z", "w"])
    g_ids = np.array(["y", "x", "y", "z"])
    sim = (q_ids[:, None] == g_ids[None, :]).astype(float)
    assert retrieval_map(sim, q_ids, g_ids) == 1.0
    assert retrieval_map(np.zeros((4, 4)), q_ids, g_ids) == pytest.approx(
        _brute_map(np.zeros((4, 4)), q_ids, g_ids)
    )


def test_retrieval_map_errors():
    sim = np.zeros((3, 4))
    q_ids = np.array([0, 1, 2])
    g_ids = np.array([0, 1, 2, 3])
    with pytest.raises(ValueError, match="2-D"):
        retrieval_map(np.zeros(4), q_ids, g_ids)
    with pytest.raises(ValueError, match="empty"):
        retrieval_map(np.zeros((0, 4)), np.array([]), g_ids)
    with pytest.raises(ValueError, match="query_ids has length"):
        retrieval_map(sim, np.array([0, 1]), g_ids)
    with pytest.raises(ValueError, match="gallery_ids has length"):
        retrieval_map(sim, q_ids, np.array([0]))
    with pytest.raises(ValueError, match="1-D"):
        retrieval_map(sim, q_ids[:, None], g_ids)
    for bad_val in (np.nan, np.inf, -np.inf):
        bad = sim.copy()
        bad[2, 1] = bad_val
        with pytest.raises(ValueError, match="NaN or inf"):
            retrieval_map(bad, q_ids, g_ids, chunk_size=2)
    with pytest.raises(ValueError, match="no query has a relevant"):
        retrieval_map(sim, np.array([7, 8, 9]), g_ids)
    with pytest.raises(ValueError, match="chunk_size"):
        retrieval_map(sim, q_ids, g_ids, chunk_size=0)


def test_matching_trials_are_the_curves_trials():
    """The trials any pair scorer can score are exactly those matching_curve scores from a matrix."""
    from faa_core.metrics import matching_curve, matching_trials, one_to_n_accuracy

    rng = np.random.default_rng(1)
    q_ids = rng.integers(0, 7, 40)
    g_ids = rng.integers(0, 7, 50)
    sim = rng.standard_normal((40, 50))
    trials = matching_trials(q_ids, g_ids, ns=[2, 5], trials=300, seed=3)
    for n, (q, cand) in trials.items():
        assert cand.shape == (300, n) and q.shape == (300,)
        assert (g_ids[cand[:, 0]] == q_ids[q]).all()  # the correct candidate is first
        wrong = g_ids[cand[:, 1:]]
        assert (wrong != q_ids[q][:, None]).all()
        assert all(len(set(row)) == n - 1 for row in wrong.tolist())  # distinct other identities
    curve = matching_curve(sim, q_ids, g_ids, ns=[2, 5], trials=300, seed=3)
    assert curve == {n: one_to_n_accuracy(sim[q[:, None], cand]) for n, (q, cand) in trials.items()}
