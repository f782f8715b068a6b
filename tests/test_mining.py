"""Tests for FVM negative mining (faa_core.losses.fvm): coarse-group negatives, exclusion of
likely same-person columns, and equality with the plain hard sampler. Small, deterministic."""

from __future__ import annotations

import pytest
import torch

from faa_core.losses import likely_same_person, sample_hard_negatives, sample_negatives


def _draws(n: int, **kwargs) -> torch.Tensor:
    gen = torch.Generator().manual_seed(0)
    return torch.stack([sample_negatives(generator=gen, **kwargs)[0] for _ in range(n)])


def test_group_negatives_stay_in_the_anchors_group() -> None:
    labels = torch.tensor([0, 1, 2, 3, 4, 4])
    groups = torch.tensor([0, 0, 1, 1, 1, 0])
    d = _draws(200, sim=torch.zeros(6, 6), labels=labels, groups=groups)
    assert set(d[:, 0].tolist()) == {1, 5}  # group 0, other labels
    assert set(d[:, 2].tolist()) == {3, 4}
    assert set(d[:, 4].tolist()) == {2, 3}  # 5 shares label 4
    # without groups every other label is drawn
    assert set(_draws(200, sim=torch.zeros(6, 6), labels=labels)[:, 0].tolist()) == {1, 2, 3, 4, 5}


def test_group_falls_back_when_the_group_has_no_other_label() -> None:
    labels, groups = torch.tensor([0, 1, 2, 3]), torch.tensor([7, 8, 8, 8])
    d = _draws(200, sim=torch.zeros(4, 4), labels=labels, groups=groups)
    assert set(d[:, 0].tolist()) == {1, 2, 3}
    assert set(d[:, 1].tolist()) == {2, 3}


def test_exclude_removes_columns_and_can_empty_a_row() -> None:
    labels, groups = torch.tensor([0, 1, 2, 3]), torch.tensor([0, 0, 1, 1])
    exclude = torch.zeros(4, 4, dtype=torch.bool)
    exclude[0, 1] = True  # row 0's only in-group candidate is flagged: fall back to the others
    exclude[2, [0, 1, 3]] = True  # row 2: nothing left
    gen = torch.Generator().manual_seed(1)
    rows = [sample_negatives(torch.zeros(4, 4), labels, gen, groups=groups, exclude=exclude) for _ in range(200)]
    assert set(int(r[0][0]) for r in rows) == {2, 3}
    assert all(not bool(r[1][2]) and int(r[0][2]) == 0 for r in rows)
    assert all(bool(r[1][[0, 1, 3]].all()) for r in rows)


def test_hard_draw_within_group_follows_softmax() -> None:
    labels, groups = torch.tensor([0, 1, 2, 3]), torch.tensor([0, 0, 0, 1])
    sim = torch.zeros(4, 4)
    sim[0, 1], sim[0, 2], sim[0, 3] = 0.0, 2.0, 50.0  # column 3 is the most similar but in the other group
    d = _draws(4000, sim=sim, labels=labels, groups=groups)[:, 0]
    share2 = (d == 2).float().mean().item()
    p2 = torch.softmax(torch.tensor([0.0, 2.0]), 0)[1].item()  # 0.8808
    assert 3 not in d.tolist() and share2 == pytest.approx(p2, abs=0.02)


def test_without_options_equals_the_hard_sampler_draw_for_draw() -> None:
    g = torch.Generator().manual_seed(2)
    sim, labels = torch.randn(16, 16, generator=g) * 3, torch.randint(0, 5, (16,), generator=g)
    a = sample_hard_negatives(sim, labels, torch.Generator().manual_seed(9))
    b = sample_negatives(sim, labels, torch.Generator().manual_seed(9), groups=torch.zeros(16, dtype=torch.long),
                         exclude=torch.zeros(16, 16, dtype=torch.bool))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def test_likely_same_person_flags_the_frozen_outliers() -> None:
    g = torch.Generator().manual_seed(1)
    v, f = torch.randn(64, 64, generator=g), torch.randn(64, 64, generator=g)
    v[7], f[7] = v[2] + 0.3 * torch.randn(64, generator=g), f[2] + 0.3 * torch.randn(64, generator=g)  # same person
    flags = likely_same_person(v, f, z=5.0)
    assert flags.nonzero().tolist() == [[2, 7], [7, 2]]
    assert not likely_same_person(v[:2], f[:2]).any()  # too few columns to call anything an outlier


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(groups=torch.tensor([0.0, 1.0, 0.0])), "groups must be an integer"),
        (dict(groups=torch.tensor([0, 1])), "groups has 2 entries"),
        (dict(exclude=torch.zeros(3, 3)), "exclude must be a bool"),
        (dict(exclude=torch.zeros(2, 2, dtype=torch.bool)), "exclude must be a bool tensor of shape"),
    ],
)
def test_sample_negatives_errors(kwargs, match) -> None:
    with pytest.raises(ValueError, match=match):
        sample_negatives(torch.zeros(3, 3), torch.tensor([0, 1, 2]), **kwargs)


def test_likely_same_person_errors() -> None:
    with pytest.raises(ValueError, match="rows"):
        likely_same_person(torch.zeros(3, 4), torch.zeros(2, 4))
    with pytest.raises(ValueError, match="z must be"):
        likely_same_person(torch.zeros(3, 4), torch.zeros(3, 4), z=0.0)
