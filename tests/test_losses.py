"""Tests for faa_core.losses: hand-computed values, references written independently, and
every ValueError path. CPU only, fast."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from faa_core.losses import (
    MAX_LOGIT_SCALE,
    IdentityReweighter,
    fvc_infonce,
    fvc_multi_similarity,
    fvm_loss,
    multi_similarity_loss,
    sample_hard_negatives,
    WenCurriculum,
    wen2021_loss,
    wen_cross_logit_loss,
    wen_global_loss,
    wen_variant_global_loss,
    wen_variant_local_loss,
    wen_variant_loss,
)


def _t(rows: list[list[float]], grad: bool = False) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float64, requires_grad=grad)


def _unit(n: int, d: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(n, d, generator=g, dtype=torch.float64), dim=1)


def _dot(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b))


def _assert_finite_grads(*tensors: torch.Tensor) -> None:
    for t in tensors:
        assert t.grad is not None
        assert torch.isfinite(t.grad).all()


# ----------------------------------------------------------------------------------------
# fvc_infonce
# ----------------------------------------------------------------------------------------


def _infonce_reference(voice: list[list[float]], face: list[list[float]], labels: list[int], scale: float) -> float:
    """Plain-python multi-positive symmetric InfoNCE."""
    b = len(voice)
    logits = [[scale * _dot(voice[i], face[j]) for j in range(b)] for i in range(b)]

    def direction(lg: list[list[float]]) -> float:
        total = 0.0
        for i in range(b):
            m = max(lg[i])
            lse = m + math.log(sum(math.exp(x - m) for x in lg[i]))
            pos = [j for j in range(b) if labels[j] == labels[i]]
            total += -sum(lg[i][j] - lse for j in pos) / len(pos)
        return total / b

    transposed = [[logits[j][i] for j in range(b)] for i in range(b)]
    return 0.5 * (direction(logits) + direction(transposed))


def test_infonce_hand_computed_distinct_labels() -> None:
    eye = [[1.0, 0.0], [0.0, 1.0]]
    loss = fvc_infonce(_t(eye), _t(eye), torch.tensor([0, 1]), torch.tensor(0.0))
    # logits = I: each row's loss is -log(e / (e + 1)) = log(1 + e^-1), in both directions.
    assert loss.item() == pytest.approx(math.log(1 + math.exp(-1)), abs=1e-12)


def test_infonce_hand_computed_shared_label() -> None:
    eye = [[1.0, 0.0], [0.0, 1.0]]
    loss = fvc_infonce(_t(eye), _t(eye), torch.tensor([3, 3]), torch.tensor(0.0))
    # both columns are positives: -(1/2)[log(e/(e+1)) + log(1/(e+1))] = log(e+1) - 1/2
    assert loss.item() == pytest.approx(math.log(math.e + 1) - 0.5, abs=1e-12)


def test_infonce_three_pairs_matches_python_reference() -> None:
    voice = [[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]]
    face = [[1.0, 0.0], [0.6, 0.8], [0.0, 1.0]]
    labels = [0, 0, 1]
    loss = fvc_infonce(_t(voice), _t(face), torch.tensor(labels), torch.tensor(math.log(2.0), dtype=torch.float64))
    assert loss.item() == pytest.approx(_infonce_reference(voice, face, labels, 2.0), abs=1e-12)


def test_infonce_equals_clip_when_labels_distinct() -> None:
    v, f = _unit(16, 8, 0), _unit(16, 8, 1)
    scale = torch.tensor(math.log(1 / 0.07), dtype=torch.float64)
    loss = fvc_infonce(v, f, torch.arange(16), scale)
    logits = scale.exp() * v @ f.T
    target = torch.arange(16)
    clip = 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))
    assert loss.item() == pytest.approx(clip.item(), abs=1e-10)


def test_infonce_random_multi_positive_matches_reference() -> None:
    v, f = _unit(10, 4, 2), _unit(10, 4, 3)
    labels = [0, 1, 0, 2, 1, 1, 3, 0, 2, 4]
    loss = fvc_infonce(v, f, torch.tensor(labels), torch.tensor(1.5, dtype=torch.float64))
    ref = _infonce_reference(v.tolist(), f.tolist(), labels, math.exp(1.5))
    assert loss.item() == pytest.approx(ref, abs=1e-10)


def test_infonce_lower_for_aligned_than_shuffled() -> None:
    v = _unit(32, 16, 4)
    g = torch.Generator().manual_seed(5)
    f = F.normalize(v + 0.1 * torch.randn(32, 16, generator=g, dtype=torch.float64), dim=1)
    perm = torch.roll(torch.arange(32), 1)
    labels = torch.arange(32)
    scale = torch.tensor(math.log(10.0))
    assert fvc_infonce(v, f, labels, scale) < fvc_infonce(v, f[perm], labels, scale)


def test_infonce_logit_scale_clamped() -> None:
    v, f = _unit(6, 4, 6), _unit(6, 4, 7)
    labels = torch.tensor([0, 1, 2, 0, 1, 2])
    big = torch.tensor(math.log(1000.0), dtype=torch.float64, requires_grad=True)
    at_max = torch.tensor(MAX_LOGIT_SCALE, dtype=torch.float64)
    loss_big = fvc_infonce(v, f, labels, big)
    assert MAX_LOGIT_SCALE == pytest.approx(math.log(100.0))
    assert loss_big.item() == pytest.approx(fvc_infonce(v, f, labels, at_max).item(), abs=1e-12)
    assert loss_big.item() == pytest.approx(
        _infonce_reference(v.tolist(), f.tolist(), labels.tolist(), 100.0), abs=1e-9
    )
    assert loss_big.item() != pytest.approx(
        _infonce_reference(v.tolist(), f.tolist(), labels.tolist(), 1000.0), abs=1e-6
    )
    loss_big.backward()
    assert big.grad is not None and big.grad.item() == 0.0  # clamped: no gradient
    small = torch.tensor(1.0, dtype=torch.float64, requires_grad=True)
    fvc_infonce(v, f, labels, small).backward()
    assert small.grad is not None and small.grad.item() != 0.0


def test_infonce_accepts_python_float_scale() -> None:
    v, f = _unit(4, 3, 8), _unit(4, 3, 9)
    labels = torch.arange(4)
    a = fvc_infonce(v, f, labels, 0.7)
    b = fvc_infonce(v, f, labels, torch.tensor(0.7, dtype=torch.float64))
    assert a.item() == pytest.approx(b.item(), abs=1e-12)


def test_infonce_gradients_finite() -> None:
    v = _unit(8, 4, 10).requires_grad_(True)
    f = _unit(8, 4, 11).requires_grad_(True)
    s = torch.tensor(math.log(1 / 0.07), dtype=torch.float64, requires_grad=True)
    fvc_infonce(v, f, torch.tensor([0, 0, 1, 1, 2, 2, 3, 3]), s).backward()
    _assert_finite_grads(v, f, s)


@pytest.mark.parametrize(
    "voice, face, labels, scale, match",
    [
        (torch.zeros(3), torch.zeros(3), torch.arange(3), torch.tensor(0.0), "voice must be 2-D"),
        (torch.zeros(3, 2), torch.zeros(3, 4), torch.arange(3), torch.tensor(0.0), "same shape"),
        (torch.zeros(0, 2), torch.zeros(0, 2), torch.arange(0), torch.tensor(0.0), "at least one row"),
        (torch.zeros(3, 2, dtype=torch.long), torch.zeros(3, 2), torch.arange(3), torch.tensor(0.0), "floating"),
        (torch.zeros(3, 2), torch.zeros(3, 2), torch.arange(4), torch.tensor(0.0), "4 entries but 3"),
        (torch.zeros(3, 2), torch.zeros(3, 2), torch.zeros(3), torch.tensor(0.0), "integer tensor"),
        (torch.zeros(3, 2), torch.zeros(3, 2), torch.zeros(3, 1, dtype=torch.long), torch.tensor(0.0), "1-D"),
        (torch.zeros(3, 2), torch.zeros(3, 2), [0, 1, 2], torch.tensor(0.0), "torch.Tensor"),
        (torch.zeros(3, 2), torch.zeros(3, 2), torch.arange(3), torch.zeros(2), "scalar tensor"),
        (torch.zeros(3, 2), torch.zeros(3, 2), torch.arange(3), torch.tensor(1), "logit_scale must be a floating"),
    ],
)
def test_infonce_value_errors(voice, face, labels, scale, match) -> None:
    with pytest.raises(ValueError, match=match):
        fvc_infonce(voice, face, labels, scale)


def test_check_embeddings_rejects_non_tensor() -> None:
    with pytest.raises(ValueError, match="voice must be a torch.Tensor"):
        fvc_infonce([[1.0]], torch.zeros(1, 1), torch.arange(1), 0.0)  # type: ignore[arg-type]


# ----------------------------------------------------------------------------------------
# Multi-Similarity
# ----------------------------------------------------------------------------------------


def _ms_reference(emb: list[list[float]], labels: list[int], alpha: float, beta: float, base: float) -> float:
    """Brute-force Multi-Similarity loss with explicit loops."""
    unit = []
    for e in emb:
        norm = math.sqrt(sum(x * x for x in e))
        unit.append([x / norm for x in e])
    n = len(unit)
    losses = []
    for i in range(n):
        pos_sum = neg_sum = 0.0
        for j in range(n):
            s = _dot(unit[i], unit[j])
            if j != i and labels[j] == labels[i]:
                pos_sum += math.exp(-alpha * (s - base))
            elif labels[j] != labels[i]:
                neg_sum += math.exp(beta * (s - base))
        li = math.log(1 + pos_sum) / alpha + math.log(1 + neg_sum) / beta
        if li > 0:
            losses.append(li)
    return sum(losses) / len(losses) if losses else 0.0


def test_ms_hand_computed() -> None:
    emb = _t([[1.0, 0.0], [0.0, 2.0], [3.0, 0.0]])  # unit vectors e0, e1, e0 after normalising
    loss = multi_similarity_loss(emb, torch.tensor([0, 0, 1]), alpha=2.0, beta=10.0, base=0.5)
    # s01 = 0, s02 = 1, s12 = 0
    a0 = 0.5 * math.log(1 + math.exp(1.0)) + 0.1 * math.log(1 + math.exp(5.0))
    a1 = 0.5 * math.log(1 + math.exp(1.0)) + 0.1 * math.log(1 + math.exp(-5.0))
    a2 = 0.0 + 0.1 * math.log(1 + math.exp(5.0) + math.exp(-5.0))
    assert loss.item() == pytest.approx((a0 + a1 + a2) / 3, abs=1e-12)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ms_matches_brute_force(seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    emb = torch.randn(12, 5, generator=g, dtype=torch.float64)
    labels = torch.randint(0, 4, (12,), generator=g)
    for alpha, beta, base in [(2.0, 50.0, 1.0), (1.0, 5.0, 0.3)]:
        got = multi_similarity_loss(emb, labels, alpha=alpha, beta=beta, base=base).item()
        ref = _ms_reference(emb.tolist(), labels.tolist(), alpha, beta, base)
        assert got == pytest.approx(ref, rel=1e-9, abs=1e-12)


def test_ms_no_active_anchor_returns_zero_with_grad() -> None:
    emb = _t([[1.0, 2.0]], grad=True)
    loss = multi_similarity_loss(emb, torch.tensor([0]))
    assert loss.item() == 0.0
    loss.backward()
    assert emb.grad is not None and torch.equal(emb.grad, torch.zeros_like(emb))


def test_ms_stable_with_large_beta() -> None:
    emb = _t([[1.0, 0.0], [1.0, 1e-4], [1.0, 0.0]], grad=True)
    loss = multi_similarity_loss(emb, torch.tensor([0, 1, 2]), beta=5000.0)
    assert torch.isfinite(loss)
    loss.backward()
    _assert_finite_grads(emb)


def test_fvc_multi_similarity_is_ms_on_concatenation() -> None:
    v, f = _unit(6, 4, 20), _unit(6, 4, 21)
    labels = [0, 1, 0, 2, 2, 3]
    got = fvc_multi_similarity(v, f, torch.tensor(labels)).item()
    ref = _ms_reference(v.tolist() + f.tolist(), labels + labels, 2.0, 50.0, 1.0)
    assert got == pytest.approx(ref, rel=1e-9)


def test_fvc_multi_similarity_hand_computed() -> None:
    # one pair, perfectly aligned: the only relation is the positive voice-face, s = 1
    loss = fvc_multi_similarity(_t([[1.0, 0.0]]), _t([[2.0, 0.0]]), torch.tensor([7]))
    assert loss.item() == pytest.approx(math.log(2.0) / 2.0, abs=1e-12)


def test_ms_gradients_finite() -> None:
    v = _unit(8, 4, 22).requires_grad_(True)
    f = _unit(8, 4, 23).requires_grad_(True)
    fvc_multi_similarity(v, f, torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])).backward()
    _assert_finite_grads(v, f)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(emb=torch.zeros(3), labels=torch.arange(3)), "emb must be 2-D"),
        (dict(emb=torch.ones(3, 2), labels=torch.arange(2)), "2 entries but 3"),
        (dict(emb=torch.ones(3, 2), labels=torch.arange(3), alpha=0.0), "alpha"),
        (dict(emb=torch.ones(3, 2), labels=torch.arange(3), beta=-1.0), "beta"),
        (dict(emb=torch.ones(3, 2), labels=torch.arange(3), alpha=float("inf")), "alpha"),
        (dict(emb=torch.ones(3, 2), labels=torch.arange(3), base=float("nan")), "base"),
    ],
)
def test_ms_value_errors(kwargs, match) -> None:
    with pytest.raises(ValueError, match=match):
        multi_similarity_loss(**kwargs)


def test_fvc_multi_similarity_value_errors() -> None:
    with pytest.raises(ValueError, match="same shape"):
        fvc_multi_similarity(torch.ones(3, 2), torch.ones(2, 2), torch.arange(3))
    with pytest.raises(ValueError, match="labels"):
        fvc_multi_similarity(torch.ones(3, 2), torch.ones(3, 2), torch.arange(6))


# ----------------------------------------------------------------------------------------
# sample_hard_negatives
# ----------------------------------------------------------------------------------------


def test_hard_negatives_never_same_label() -> None:
    g = torch.Generator().manual_seed(0)
    for _ in range(200):
        b = int(torch.randint(2, 12, (1,), generator=g))
        labels = torch.randint(0, 3, (b,), generator=g)
        sim = 5 * torch.randn(b, b, generator=g)
        # make same-label entries the most attractive ones: they still must never be drawn
        sim = sim + 100.0 * (labels[:, None] == labels[None, :])
        for s in (sim, sim.T):
            idx, valid = sample_hard_negatives(s, labels, generator=g)
            assert idx.dtype == torch.long and valid.dtype == torch.bool
            assert idx.shape == (b,) and valid.shape == (b,)
            expected_valid = (labels[:, None] != labels[None, :]).any(dim=1)
            assert torch.equal(valid, expected_valid)
            assert (labels[idx[valid]] != labels[valid]).all()
            assert (idx[~valid] == 0).all()


def test_hard_negatives_follow_softmax_frequencies() -> None:
    labels = torch.tensor([0, 0, 1, 2, 3])
    row = [9.0, 8.0, 1.0, 0.0, -1.0]  # columns 0 and 1 share row 0's label
    sim = torch.zeros(5, 5)
    sim[0] = torch.tensor(row)
    g = torch.Generator().manual_seed(1234)
    n = 20000
    counts = [0] * 5
    for _ in range(n):
        idx, _ = sample_hard_negatives(sim, labels, generator=g)
        counts[int(idx[0])] += 1
    z = sum(math.exp(x) for x in row[2:])
    expected = [0.0, 0.0] + [math.exp(x) / z for x in row[2:]]
    assert counts[0] == 0 and counts[1] == 0  # exactly zero probability
    for c, p in zip(counts, expected):
        assert c / n == pytest.approx(p, abs=0.015)


def test_hard_negatives_transposed_gives_voice_negatives() -> None:
    labels = torch.tensor([0, 0, 1])
    sim = torch.tensor([[1.0, 0.9, 0.1], [0.8, 1.0, 0.2], [0.3, 5.0, 1.0]])
    idx, valid = sample_hard_negatives(sim.T, labels, generator=torch.Generator().manual_seed(0))
    assert valid.all()
    assert idx[0] == 2 and idx[1] == 2  # faces 0 and 1 (label 0) can only get voice 2
    assert idx[2] in (0, 1)


def test_hard_negatives_flags_rows_without_valid_column() -> None:
    sim = torch.randn(4, 4)
    idx, valid = sample_hard_negatives(sim, torch.tensor([5, 5, 5, 5]))
    assert not valid.any()
    assert torch.equal(idx, torch.zeros(4, dtype=torch.long))


def test_hard_negatives_reproducible_with_generator_and_no_grad() -> None:
    sim = torch.randn(10, 10, requires_grad=True)
    labels = torch.arange(10) % 3
    a, _ = sample_hard_negatives(sim, labels, generator=torch.Generator().manual_seed(7))
    b, _ = sample_hard_negatives(sim, labels, generator=torch.Generator().manual_seed(7))
    assert torch.equal(a, b)
    assert not a.requires_grad


@pytest.mark.parametrize(
    "sim, labels, match",
    [
        (torch.zeros(3), torch.arange(3), "square"),
        (torch.zeros(3, 4), torch.arange(3), "square"),
        (torch.zeros(0, 0), torch.arange(0), "at least one row"),
        (torch.zeros(3, 3, dtype=torch.long), torch.arange(3), "floating"),
        (torch.zeros(3, 3), torch.arange(2), "2 entries but 3"),
        (torch.zeros(3, 3), torch.zeros(3), "integer"),
        (torch.tensor([[0.0, float("nan")], [0.0, 0.0]]), torch.arange(2), "NaN"),
        ([[0.0]], torch.arange(1), "torch.Tensor"),
    ],
)
def test_hard_negatives_value_errors(sim, labels, match) -> None:
    with pytest.raises(ValueError, match=match):
        sample_hard_negatives(sim, labels)


# ----------------------------------------------------------------------------------------
# fvm_loss
# ----------------------------------------------------------------------------------------


def _ce(logits: list[float], target: int) -> float:
    return -(logits[target] - math.log(sum(math.exp(x) for x in logits)))


def test_fvm_loss_hand_computed() -> None:
    pos = [[0.2, 1.0]]
    neg = [[1.5, -0.5], [0.0, 0.0]]
    expected = (_ce(pos[0], 1) + _ce(neg[0], 0) + _ce(neg[1], 0)) / 3
    assert fvm_loss(_t(pos), _t(neg)).item() == pytest.approx(expected, abs=1e-12)
    # log(1 + e^-0.8) for the positive, checked by hand too
    assert _ce(pos[0], 1) == pytest.approx(math.log(1 + math.exp(-0.8)))


def test_fvm_loss_one_sided_and_grads() -> None:
    pos = _t([[0.0, 2.0], [1.0, -1.0]], grad=True)
    empty = torch.zeros(0, 2, dtype=torch.float64)
    only_pos = fvm_loss(pos, empty)
    assert only_pos.item() == pytest.approx((_ce([0.0, 2.0], 1) + _ce([1.0, -1.0], 1)) / 2)
    only_neg = fvm_loss(empty, _t([[3.0, 0.0]]))
    assert only_neg.item() == pytest.approx(_ce([3.0, 0.0], 0))
    neg = _t([[0.5, 0.2]], grad=True)
    fvm_loss(pos, neg).backward()
    _assert_finite_grads(pos, neg)


@pytest.mark.parametrize(
    "pos, neg, match",
    [
        (torch.zeros(2, 3), torch.zeros(1, 2), "pos_logits must have shape"),
        (torch.zeros(2, 2), torch.zeros(2), "neg_logits must have shape"),
        (torch.zeros(0, 2), torch.zeros(0, 2), "at least one"),
        (torch.zeros(2, 2, dtype=torch.long), torch.zeros(1, 2), "floating"),
        ([[0.0, 1.0]], torch.zeros(1, 2), "torch.Tensor"),
    ],
)
def test_fvm_loss_value_errors(pos, neg, match) -> None:
    with pytest.raises(ValueError, match=match):
        fvm_loss(pos, neg)


# ----------------------------------------------------------------------------------------
# Wen et al. 2021 as their code computes it (wen2021)
# ----------------------------------------------------------------------------------------


def test_wen_global_unnormalised_shared_classifier_summed() -> None:
    w = _t([[1.0, 0.0], [0.0, 1.0]])
    # unnormalised: voice [2, 0] gives logits [2, 0]; face [0, 1] gives logits [0, 1] for class 0
    loss = wen_global_loss(_t([[2.0, 0.0]]), _t([[0.0, 1.0]]), torch.tensor([0]), w)
    assert loss.item() == pytest.approx(math.log(1 + math.exp(-2.0)) + math.log(1 + math.exp(1.0)), abs=1e-12)


def test_wen_global_scaled_by_batch_mean_weight_and_fallback() -> None:
    w = _t([[1.0, 0.0], [0.0, 1.0]])
    voice, face = [[1.0, 0.0], [0.5, 0.5]], [[0.6, 0.8], [0.0, 2.0]]
    ids = torch.tensor([0, 1])
    mean_ce = (_ce(voice[0], 0) + _ce(voice[1], 1)) / 2 + (_ce(face[0], 0) + _ce(face[1], 1)) / 2
    loss = wen_global_loss(_t(voice), _t(face), ids, w, sample_weight=torch.tensor([1.0, 3.0], dtype=torch.float64))
    assert loss.item() == pytest.approx(2.0 * mean_ce, abs=1e-12)  # mean of the batch's weights (1 + 3) / 2
    zero = wen_global_loss(_t(voice), _t(face), ids, w, sample_weight=torch.zeros(2, dtype=torch.float64))
    assert zero.item() == pytest.approx(mean_ce, abs=1e-12)  # weights summing below 1e-3 become w + 1


def test_wen_cross_logit_hand_computed() -> None:
    voice, face = _t([[2.0, 0.0], [0.0, 1.0]]), _t([[1.0, 0.0], [0.0, 3.0]])
    loss = wen_cross_logit_loss(voice, face, torch.tensor([0, 1]))
    lg = lambda x: math.log(5.4 + math.exp(x))
    # voice anchors (raw) against normalised faces: gaps -2 and -1; face anchors against voices: -1 and -3
    expected = 0.5 * (0.5 * (lg(-2.0) + lg(-1.0)) + 0.5 * (lg(-1.0) + lg(-3.0)))
    assert loss.item() == pytest.approx(expected, abs=1e-12)


def _cross_logit_reference(anchor: list[list[float]], other: list[list[float]]) -> list[float]:
    """Wen's cross logit as written in their code: log(1 + sum_j exp((1 - [i == j]) (d_ij - d_ii)) + 3.4)."""
    def unit(e):
        n = math.sqrt(sum(x * x for x in e))
        return [x / n for x in e]

    o = [unit(e) for e in other]
    out = []
    for i, a in enumerate(anchor):
        d = [_dot(a, o[j]) for j in range(len(o))]
        out.append(math.log(1 + sum(math.exp(0.0 if i == j else d[j] - d[i]) for j in range(len(o))) + 3.4))
    return out


def test_wen_cross_logit_matches_reference_and_weights() -> None:
    g = torch.Generator().manual_seed(3)
    v = torch.randn(5, 3, generator=g, dtype=torch.float64) * 2
    f = torch.randn(5, 3, generator=g, dtype=torch.float64) * 2
    ids = torch.tensor([3, 0, 1, 4, 2])
    cw = torch.tensor([0.5, 2.0, 0.0, 1.0, 1.5], dtype=torch.float64)
    ref_v = _cross_logit_reference(v.tolist(), f.tolist())
    ref_f = _cross_logit_reference(f.tolist(), v.tolist())
    per = [cw[k].item() * 0.5 * (a + b) for k, a, b in zip(ids.tolist(), ref_v, ref_f)]
    got = wen_cross_logit_loss(v, f, ids, sample_weight=cw, reduction="none")
    assert got.tolist() == pytest.approx(per, abs=1e-12)
    assert got[4].item() == 0.0  # identity 2 has weight 0: no loss of its own (it stays a candidate)
    assert wen_cross_logit_loss(v, f, ids, sample_weight=cw).item() == pytest.approx(sum(per) / 5, abs=1e-12)


def test_wen_cross_logit_leaves_out_same_identity_columns() -> None:
    v, f = _t([[1.0, 0.0], [0.0, 1.0]]), _t([[1.0, 0.0], [0.0, 1.0]])
    assert wen_cross_logit_loss(v, f, torch.tensor([7, 7])).item() == pytest.approx(math.log(5.4), abs=1e-12)


def test_wen2021_loss_is_global_plus_local_and_reports_ce() -> None:
    g = torch.Generator().manual_seed(4)
    v = torch.randn(4, 3, generator=g, dtype=torch.float64)
    f = torch.randn(4, 3, generator=g, dtype=torch.float64)
    w = torch.randn(3, 3, generator=g, dtype=torch.float64)
    ids, sw = torch.tensor([0, 2, 1, 2]), torch.tensor([1.0, 0.5, 2.0], dtype=torch.float64)
    loss, per = wen2021_loss(v, f, ids, w, sw)
    assert loss.item() == pytest.approx((wen_global_loss(v, f, ids, w, sw) + wen_cross_logit_loss(v, f, ids, sw)).item(), abs=1e-12)
    expected = [_ce((v[i] @ w.T).tolist(), k) + _ce((f[i] @ w.T).tolist(), k) for i, k in enumerate(ids.tolist())]
    assert per.tolist() == pytest.approx(expected, abs=1e-12)
    assert not per.requires_grad


def test_wen_curriculum_hand_computed() -> None:
    cur = WenCurriculum(10, add_fraction=0.2, decay=0.5)
    assert cur.weights().tolist() == [1.0] * 10  # before the first update: everyone, weight 1
    cur.observe(torch.arange(10), torch.arange(10, dtype=torch.float64))  # identity k: loss k
    assert cur.running_loss[3].item() == pytest.approx(0.9 * 14.0 + 0.1 * 3.0)
    assert cur.update() and cur.ratio == 0.5  # the easiest half
    assert cur.weights().tolist() == pytest.approx([2.0] * 5 + [0.0] * 5)
    assert cur.update() and cur.ratio == pytest.approx(0.7)  # + the next-easiest 2; those in decay
    assert cur.weights().tolist() == pytest.approx([0.5 * 10 / 4.5] * 5 + [10 / 4.5] * 2 + [0.0] * 3)
    assert cur.update() and cur.ratio == pytest.approx(0.9)
    assert not cur.update()  # 90% in: the hardest stays out
    assert cur.weights().tolist() == pytest.approx([0.25 * 10 / 4.25] * 5 + [0.5 * 10 / 4.25] * 2 + [10 / 4.25] * 2 + [0.0])


def test_wen_curriculum_wen_constants_on_924_identities() -> None:
    cur = WenCurriculum(924)
    cur.observe(torch.arange(924), torch.linspace(0.0, 9.0, 924, dtype=torch.float64))
    steps = [s for s in range(2400) if cur.due(s)]
    assert steps[:2] == [500, 600] and len(steps) == 19
    done = [cur.update() for _ in steps]
    assert sum(done) == 18  # the half, then 17 additions of int(0.024 * 924) = 22
    assert int((cur.weight > 0).sum()) == 462 + 17 * 22 == 836  # 90.5%: the hardest 88 never join
    w = cur.weights()
    assert w.mean().item() == pytest.approx(1.0, abs=1e-6)
    assert w[0].item() / w[835].item() == pytest.approx(0.99 ** 17, rel=1e-6)  # first in, decayed 17 times
    cur.freeze()
    assert not cur.due(2500) and not cur.update()
    other = WenCurriculum(924)
    other.load_state_dict(cur.state_dict())
    assert torch.equal(other.weights(), w) and other.frozen


def test_wen_curriculum_duplicates_averaged_and_errors() -> None:
    cur = WenCurriculum(3)
    cur.observe(torch.tensor([0, 0, 1]), torch.tensor([1.0, 3.0, 5.0]))
    assert cur.running_loss.tolist() == pytest.approx([0.9 * 14 + 0.2, 0.9 * 14 + 0.5, 14.0])
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        cur.observe(torch.tensor([3]), torch.tensor([1.0]))
    with pytest.raises(ValueError, match="NaN"):
        cur.observe(torch.tensor([0]), torch.tensor([float("nan")]))
    with pytest.raises(ValueError, match="num_identities"):
        WenCurriculum(0)
    with pytest.raises(ValueError, match="start_fraction"):
        WenCurriculum(3, start_fraction=0.0)
    with pytest.raises(ValueError, match="identities"):
        WenCurriculum(4).load_state_dict(cur.state_dict())


def test_wen_global_errors() -> None:
    with pytest.raises(ValueError, match="dimension 5"):
        wen_global_loss(torch.ones(2, 4), torch.ones(2, 4), torch.tensor([0, 1]), torch.ones(3, 5))
    with pytest.raises(ValueError, match="reduction"):
        wen_cross_logit_loss(torch.ones(2, 4), torch.ones(2, 4), torch.tensor([0, 1]), reduction="sum")


# ----------------------------------------------------------------------------------------
# Wen et al. 2021: the project variant (wen2021_variant)
# ----------------------------------------------------------------------------------------


def test_wen_variant_global_hand_computed() -> None:
    w = _t([[1.0, 0.0], [0.0, 1.0]])
    loss = wen_variant_global_loss(_t([[1.0, 0.0]]), _t([[0.6, 0.8]]), torch.tensor([0]), w, scale=2.0)
    # voice logits [2, 0] -> log(1 + e^-2); face logits [1.2, 1.6] -> log(1 + e^0.4)
    expected = 0.5 * (math.log(1 + math.exp(-2.0)) + math.log(1 + math.exp(0.4)))
    assert loss.item() == pytest.approx(expected, abs=1e-12)


def test_wen_variant_global_weighted() -> None:
    w = _t([[1.0, 0.0], [0.0, 1.0]])
    voice = [[1.0, 0.0], [0.5, 0.5]]
    face = [[0.6, 0.8], [0.0, 1.0]]
    weights = [1.0, 3.0]
    loss = wen_variant_global_loss(_t(voice), _t(face), torch.tensor([0, 1]), w, sample_weight=_t([weights])[0])
    ces = [_ce(voice[0], 0), _ce(face[0], 0), _ce(voice[1], 1), _ce(face[1], 1)]
    expected = (ces[0] + ces[1] + 3 * (ces[2] + ces[3])) / (2 * 1 + 2 * 3)
    assert loss.item() == pytest.approx(expected, abs=1e-12)


def _local_reference(voice, face, ids, weights, margin, scale) -> float:
    def unit(e):
        n = math.sqrt(sum(x * x for x in e))
        return [x / n for x in e]

    v = [unit(e) for e in voice]
    f = [unit(e) for e in face]
    b = len(v)
    lg = [[scale * (_dot(v[i], f[j]) - (margin if ids[i] == ids[j] else 0.0)) for j in range(b)] for i in range(b)]
    num = 0.0
    for i in range(b):
        for mat in (lg, [[lg[j][i] for j in range(b)] for i in range(b)]):
            lse = math.log(sum(math.exp(x) for x in mat[i]))
            pos = [j for j in range(b) if ids[j] == ids[i]]
            num += weights[i] * -sum(mat[i][j] - lse for j in pos) / len(pos)
    return num / (2 * sum(weights))


def test_wen_variant_local_hand_computed() -> None:
    eye = [[1.0, 0.0], [0.0, 1.0]]
    loss = wen_variant_local_loss(_t(eye), _t(eye), torch.tensor([0, 1]), scale=1.0)
    assert loss.item() == pytest.approx(math.log(1 + math.exp(-1.0)), abs=1e-12)
    loss_m = wen_variant_local_loss(_t(eye), _t(eye), torch.tensor([0, 1]), scale=1.0, margin=0.5)
    assert loss_m.item() == pytest.approx(math.log(1 + math.exp(-0.5)), abs=1e-12)


def test_wen_variant_local_weighted_matches_reference() -> None:
    voice = [[1.0, 0.2], [0.1, 1.0], [0.7, 0.7], [-1.0, 0.3]]
    face = [[0.9, 0.1], [0.3, 1.0], [1.0, 0.0], [-0.5, -0.5]]
    ids = [0, 1, 0, 2]
    cw = [0.5, 2.0, 1.5]
    weights = [cw[k] for k in ids]
    loss = wen_variant_local_loss(_t(voice), _t(face), torch.tensor(ids), sample_weight=_t([cw])[0], margin=0.2, scale=5.0)
    assert loss.item() == pytest.approx(_local_reference(voice, face, ids, weights, 0.2, 5.0), abs=1e-10)


def test_wen_variant_two_level_is_sum() -> None:
    v, f = _unit(6, 4, 30), _unit(6, 4, 31)
    ids = torch.tensor([0, 1, 2, 0, 1, 3])
    w = _unit(4, 4, 32)
    sw = torch.tensor([1.0, 0.5, 2.0, 1.0], dtype=torch.float64)
    total = wen_variant_loss(v, f, ids, w, sample_weight=sw, local_weight=0.5, scale=3.0, local_scale=8.0, margin=0.1)
    g = wen_variant_global_loss(v, f, ids, w, sample_weight=sw, scale=3.0)
    loc = wen_variant_local_loss(v, f, ids, sample_weight=sw, scale=8.0, margin=0.1)
    assert total.item() == pytest.approx((g + 0.5 * loc).item(), abs=1e-12)


@pytest.mark.parametrize("which", ["global", "local", "two_level"])
def test_wen_variant_zero_weight_removes_identity(which: str) -> None:
    v = _unit(6, 4, 40).requires_grad_(True)
    f = _unit(6, 4, 41).requires_grad_(True)
    w = _unit(3, 4, 42).requires_grad_(True)
    ids = torch.tensor([0, 1, 2, 1, 0, 2])
    sw = torch.tensor([1.0, 0.0, 2.0], dtype=torch.float64)
    fns = {
        "global": lambda v_, f_, i_, s_: wen_variant_global_loss(v_, f_, i_, w, sample_weight=s_, scale=4.0),
        "local": lambda v_, f_, i_, s_: wen_variant_local_loss(v_, f_, i_, sample_weight=s_),
        "two_level": lambda v_, f_, i_, s_: wen_variant_loss(v_, f_, i_, w, sample_weight=s_, scale=4.0),
    }
    loss = fns[which](v, f, ids, sw)
    loss.backward()
    _assert_finite_grads(v, f)
    dropped = ids == 1
    assert torch.equal(v.grad[dropped], torch.zeros_like(v.grad[dropped]))
    assert torch.equal(f.grad[dropped], torch.zeros_like(f.grad[dropped]))
    assert (v.grad[~dropped].abs().sum(dim=1) > 0).all()
    # identical to the loss on the batch without that identity
    keep = ~dropped
    sub = fns[which](v.detach()[keep], f.detach()[keep], ids[keep], sw)
    assert loss.item() == pytest.approx(sub.item(), abs=1e-12)


def test_wen_variant_all_zero_weights_give_zero_with_grad() -> None:
    v = _unit(3, 4, 50).requires_grad_(True)
    f = _unit(3, 4, 51).requires_grad_(True)
    w = _unit(2, 4, 52).requires_grad_(True)
    sw = torch.zeros(2, dtype=torch.float64)
    loss = wen_variant_loss(v, f, torch.tensor([0, 1, 0]), w, sample_weight=sw)
    assert loss.item() == 0.0
    loss.backward()
    assert torch.equal(v.grad, torch.zeros_like(v))


def test_wen_variant_gradients_finite_float32() -> None:
    g = torch.Generator().manual_seed(60)
    v = F.normalize(torch.randn(16, 8, generator=g), dim=1).requires_grad_(True)
    f = F.normalize(torch.randn(16, 8, generator=g), dim=1).requires_grad_(True)
    w = torch.randn(5, 8, generator=g, requires_grad=True)
    ids = torch.randint(0, 5, (16,), generator=g)
    wen_variant_loss(v, f, ids, w, scale=10.0).backward()
    _assert_finite_grads(v, f, w)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(classifier_weight=torch.zeros(3)), "classifier_weight must be a 2-D"),
        (dict(classifier_weight=torch.zeros(3, 5)), "dimension 5"),
        (dict(sample_weight=torch.ones(4)), "4 entries but the classifier has 3"),
        (dict(sample_weight=torch.ones(3, 1)), "sample_weight must be 1-D"),
        (dict(sample_weight=torch.tensor([1.0, -1.0, 1.0])), "non-negative"),
        (dict(sample_weight=torch.tensor([1.0, float("nan"), 1.0])), "finite"),
        (dict(sample_weight=torch.ones(3, dtype=torch.long)), "sample_weight must be a floating"),
        (dict(sample_weight=[1.0, 1.0, 1.0]), "sample_weight must be a torch.Tensor"),
        (dict(identity=torch.tensor([0, 3])), "identity values must be < 3"),
        (dict(identity=torch.tensor([0, -1])), ">= 0"),
        (dict(identity=torch.tensor([0.0, 1.0])), "identity must be an integer"),
        (dict(identity=torch.tensor([0, 1, 2])), "3 entries but 2"),
        (dict(scale=0.0), "scale"),
    ],
)
def test_wen_variant_global_value_errors(kwargs, match) -> None:
    args = dict(
        voice=torch.ones(2, 4), face=torch.ones(2, 4), identity=torch.tensor([0, 1]), classifier_weight=torch.ones(3, 4)
    )
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        wen_variant_global_loss(**args)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(margin=-0.1), "margin"),
        (dict(scale=-1.0), "scale"),
        (dict(sample_weight=torch.ones(1)), "identity values must be < len"),
        (dict(face=torch.ones(3, 4)), "same shape"),
    ],
)
def test_wen_variant_local_value_errors(kwargs, match) -> None:
    args = dict(voice=torch.ones(2, 4), face=torch.ones(2, 4), identity=torch.tensor([0, 1]))
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        wen_variant_local_loss(**args)


def test_wen_variant_two_level_value_errors() -> None:
    with pytest.raises(ValueError, match="local_weight"):
        wen_variant_loss(torch.ones(2, 4), torch.ones(2, 4), torch.tensor([0, 1]), torch.ones(2, 4), local_weight=-1.0)


# ----------------------------------------------------------------------------------------
# IdentityReweighter
# ----------------------------------------------------------------------------------------


def test_reweighter_drops_top_quantile_and_ranks_by_difficulty() -> None:
    rw = IdentityReweighter(40, temperature=5.0, drop_fraction=0.05)
    ids = torch.arange(40)
    rw.update(ids, ids.double() / 10)  # identity k has loss k / 10
    w = rw.weights()
    assert w.shape == (40,) and w.dtype == torch.float32
    # floor(0.05 * 40) = 2 hardest identities filtered out
    assert w[38] == 0.0 and w[39] == 0.0
    assert torch.equal(rw.dropped(), ids >= 38)
    kept = w[:38]
    assert (kept > 0).all()
    assert kept.mean().item() == pytest.approx(1.0, abs=1e-5)
    assert (kept[1:] > kept[:-1]).all()  # harder -> larger weight
    # softmax(loss / T) * n_kept, checked with explicit math for one identity
    z = sum(math.exp(k / 10 / 5.0) for k in range(38))
    assert w[10].item() == pytest.approx(38 * math.exp(1.0 / 5.0) / z, rel=1e-5)


def test_reweighter_unseen_identities_weight_one_and_no_drop_when_few() -> None:
    rw = IdentityReweighter(10)
    rw.update(torch.tensor([0, 1, 2, 3, 4]), torch.tensor([0.1, 0.2, 0.3, 0.4, 0.5]))
    w = rw.weights()
    assert torch.equal(w[5:], torch.ones(5))
    assert (w[:5] > 0).all()  # floor(0.05 * 5) = 0: nothing dropped
    assert w[:5].mean().item() == pytest.approx(1.0, abs=1e-6)
    assert IdentityReweighter(3).weights().tolist() == [1.0, 1.0, 1.0]


def test_reweighter_ema_and_batch_mean() -> None:
    rw = IdentityReweighter(3, momentum=0.9)
    rw.update(torch.tensor([0, 0, 1]), torch.tensor([1.0, 3.0, 5.0]))
    assert rw.running_loss[0].item() == pytest.approx(2.0)  # first batch: mean of its samples
    assert rw.running_loss[1].item() == pytest.approx(5.0)
    rw.update(torch.tensor([0]), torch.tensor([4.0], requires_grad=True))
    assert rw.running_loss[0].item() == pytest.approx(0.9 * 2.0 + 0.1 * 4.0)
    assert rw.running_loss[1].item() == pytest.approx(5.0)
    assert rw.seen.tolist() == [True, True, False]


def test_reweighter_state_dict_roundtrip_and_use_in_loss() -> None:
    rw = IdentityReweighter(4, drop_fraction=0.3)
    rw.update(torch.tensor([0, 1, 2, 3]), torch.tensor([0.5, 1.0, 1.5, 9.0]))
    other = IdentityReweighter(4, drop_fraction=0.3)
    other.load_state_dict(rw.state_dict())
    assert torch.equal(rw.weights(), other.weights())
    w = rw.weights()
    assert w[3] == 0.0  # floor(0.3 * 4) = 1 dropped: the hardest
    v = _unit(4, 3, 70).float().requires_grad_(True)
    f = _unit(4, 3, 71).float().requires_grad_(True)
    loss = wen_variant_loss(v, f, torch.arange(4), torch.randn(4, 3), sample_weight=w)
    loss.backward()
    _assert_finite_grads(v, f)
    assert torch.equal(v.grad[3], torch.zeros(3))
    with pytest.raises(ValueError, match="identities"):
        IdentityReweighter(5).load_state_dict(rw.state_dict())


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(num_identities=0), "num_identities"),
        (dict(num_identities=2.5), "num_identities"),
        (dict(num_identities=3, momentum=1.0), "momentum"),
        (dict(num_identities=3, temperature=0.0), "temperature"),
        (dict(num_identities=3, drop_fraction=1.0), "drop_fraction"),
        (dict(num_identities=3, drop_fraction=-0.1), "drop_fraction"),
    ],
)
def test_reweighter_constructor_errors(kwargs, match) -> None:
    with pytest.raises(ValueError, match=match):
        IdentityReweighter(**kwargs)


@pytest.mark.parametrize(
    "identity, loss, match",
    [
        (torch.tensor([[0, 1]]), torch.ones(2), "identity must be a 1-D"),
        (torch.tensor([0.0, 1.0]), torch.ones(2), "integer"),
        (torch.tensor([0, 1]), torch.ones(3), "3 entries but identity has 2"),
        (torch.tensor([0, 1]), torch.ones(2, 1), "per_sample_loss must be a 1-D"),
        (torch.tensor([0, 3]), torch.ones(2), r"\[0, 3\)"),
        (torch.tensor([-1, 0]), torch.ones(2), r"\[0, 3\)"),
        (torch.tensor([0, 1]), torch.tensor([1.0, float("inf")]), "NaN or infinite"),
    ],
)
def test_reweighter_update_errors(identity, loss, match) -> None:
    with pytest.raises(ValueError, match=match):
        IdentityReweighter(3).update(identity, loss)
