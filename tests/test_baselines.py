"""Wen 2021's two-stage schedule, the linear CCA objectives and the FVM negative modes, at the
trainer's level (unit parts here; the trainer runs on the tiny world at the end)."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from faa_core.losses import sample_hard_negatives
from faa_core.model import FAAConfig, FAAModel
from training.loop.negatives import draw_negatives
from training.loop.wen2021 import Wen2021Parts

WEN = {"reweight_steps": 2400, "warmup_steps": 500, "update_every": 100, "initial_loss": 14.0, "momentum": 0.9,
       "start_fraction": 0.5, "add_fraction": 0.024, "stop_fraction": 0.9, "decay": 0.99, "lr_decay": 0.1,
       "lr_decay_steps_reweight": [1000, 2000], "lr_decay_steps_main": [2000, 3000]}


def _parts(**wen) -> Wen2021Parts:
    cfg = {"wen": dict(WEN, **wen), "seed": 0, "optim": {"lr": 0.01}}
    return Wen2021Parts(cfg, np.arange(20) % 10, 8, torch.device("cpu"))


def test_wen_learning_rate_decays_per_stage() -> None:
    p = _parts()
    got = {}
    for s in (0, 999, 1000, 1999, 2000, 2399, 2400, 4399, 4400, 5400):
        p.step = s
        got[s] = p.lr()
    assert got == pytest.approx({0: 0.01, 999: 0.01, 1000: 1e-3, 1999: 1e-3, 2000: 1e-4, 2399: 1e-4,
                                 2400: 0.01, 4399: 0.01, 4400: 1e-3, 5400: 1e-4})


def _fake_trainer(parts: Wen2021Parts):
    torch.manual_seed(1)
    model = FAAModel(FAAConfig(face_dim=6, voice_dim=5, face_token_dim=0, voice_token_dim=0, proj_hidden=8,
                               embed_dim=8, d_model=16, n_heads=2, n_layers=1))
    extra = torch.nn.ParameterDict(parts.parameters)
    optim = torch.optim.SGD(list(model.parameters()) + list(extra.parameters()), lr=0.01, momentum=0.9)
    return SimpleNamespace(model=model, optim=optim, extra=extra,
                           state={"best": 0.7, "bad_rounds": 3, "best_round": 2})


def test_wen_stage_switch_freezes_weights_and_restarts_the_model() -> None:
    parts = _parts(reweight_steps=6, warmup_steps=2, update_every=2)
    tr = _fake_trainer(parts)
    gen = torch.Generator().manual_seed(0)
    for _ in range(6):  # the reweighting stage
        parts.before_step(tr)
        assert tr.state["bad_rounds"] == 0  # early stopping waits
        ids = torch.randint(0, 10, (4,), generator=gen)
        v = parts.loss(tr.model.heads.shared(tr.model.heads.voice_in(torch.randn(4, 5, generator=gen))),
                       tr.model.heads.shared(tr.model.heads.face_in(torch.randn(4, 6, generator=gen))), ids, tr.extra)
        tr.optim.zero_grad()
        v.backward()
        tr.optim.step()
    assert parts.curriculum.ratio > 0  # updates happened at steps 2 and 4
    weights = parts.curriculum.weights().clone()
    before = {k: v.clone() for k, v in tr.model.state_dict().items()}
    tr.state.update(best=0.7, bad_rounds=3)
    parts.before_step(tr)  # step 6: the main stage begins
    assert parts.curriculum.frozen and parts.stage == "main"
    assert tr.state == {"best": -math.inf, "bad_rounds": 0, "best_round": -1}
    assert len(tr.optim.state) == 0
    changed = [k for k in before if not torch.equal(before[k], tr.model.state_dict()[k])]
    assert "heads.voice_in.1.weight" in changed and "heads.shared.2.weight" in changed
    # the restart is seeded: a second run restarts to the same weights
    parts2 = _parts(reweight_steps=6, warmup_steps=2, update_every=2)
    tr2 = _fake_trainer(parts2)
    parts2.step = 6
    parts2.before_step(tr2)
    assert torch.equal(tr2.model.heads.voice_in[1].weight, tr.model.heads.voice_in[1].weight)
    for _ in range(3):  # weights stay frozen in the main stage
        parts.before_step(tr)
        parts.loss(torch.randn(4, 8), torch.randn(4, 8), torch.tensor([0, 1, 2, 3]), tr.extra)
    assert torch.equal(parts.curriculum.weights(), weights)
    back = _parts(reweight_steps=6)
    back.load_state_dict(parts.state_dict())
    assert back.step == parts.step and back.curriculum.frozen


def test_negative_modes_uniform_and_hard_draw_as_before() -> None:
    g = torch.Generator().manual_seed(5)
    sim, labels = torch.randn(12, 12, generator=g) * 4, torch.randint(0, 4, (12,), generator=g)
    for mode, s in (("hard", sim), ("uniform", torch.zeros(12, 12))):
        got = draw_negatives(mode, sim, labels, torch.Generator().manual_seed(3))
        gen = torch.Generator().manual_seed(3)
        want = (*sample_hard_negatives(s, labels, gen), *sample_hard_negatives(s.T, labels, gen))
        assert all(torch.equal(a, b) for a, b in zip(got, want))


def test_group_modes_share() -> None:
    labels = torch.arange(40)
    groups = torch.arange(40) % 2
    sim = torch.zeros(40, 40)
    same = []
    for share in (1.0, 0.5):
        gen = torch.Generator().manual_seed(0)
        hits = 0
        for _ in range(50):
            nf, okf, nv, okv = draw_negatives("group", sim, labels, gen, groups=groups, group_share=share)
            hits += int((groups[nf] == groups).sum() + (groups[nv] == groups).sum())
        same.append(hits / (50 * 80))
    assert same[0] == 1.0
    # half the anchors in-group, the other half uniform over 39 columns of which 19 share the group
    assert same[1] == pytest.approx(0.5 + 0.5 * 19 / 39, abs=0.03)
    with pytest.raises(ValueError, match="coarse groups"):
        draw_negatives("group_hard", sim, labels, torch.Generator())
    with pytest.raises(ValueError, match="pairs.negatives must be one of"):
        draw_negatives("semi", sim, labels, torch.Generator())
