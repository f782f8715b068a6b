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


# -- through the trainer, on the tiny world ---------------------------------------------------------------
FAST = ["optim.batch_size=32", "validation.trials=120", "model.d_model=32", "model.n_heads=2", "model.n_layers=1",
        "model.proj_hidden=32", "model.embed_dim=16"]


@pytest.fixture(scope="module")
def tiny_world(tmp_path_factory):
    from training.synth import build_world

    out = tmp_path_factory.mktemp("world") / "tiny"
    build_world(preset="tiny", seed=0, out=out)
    return out


def _rows(run) -> list[dict]:
    import json

    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_wen2021_reweights_then_trains_the_main_stage(tiny_world, tmp_path) -> None:
    from training.config import load_config
    from training.loop.trainer import Trainer

    extra = FAST + ["schedule.steps_per_round=8", "schedule.max_rounds=4", "wen.reweight_steps=16", "wen.warmup_steps=4",
                    "wen.update_every=4", "wen.lr_decay_steps_reweight=[8]", "wen.lr_decay_steps_main=[8]"]
    tr = Trainer(load_config("wen2021", extra), tiny_world, tmp_path / "run", progress=False)
    summary = tr.train()
    assert summary["steps"] == 32 and summary["best_round"] >= 2  # only main-stage rounds (from step 16) can be best
    cur = tr.parts.curriculum
    assert cur.frozen and 0.5 <= cur.ratio < 1.0 and (cur.weights() == 0).any()
    assert tr.optim.param_groups[0]["lr"] == pytest.approx(0.001)  # main stage, past its milestone at 8
    assert all(np.isfinite(r["loss"]) for r in _rows(tmp_path / "run"))
    with pytest.warns(UserWarning, match="main stage never starts"):
        Trainer(load_config("wen2021", FAST + ["schedule.max_rounds=1"]), tiny_world, tmp_path / "short", progress=False)


@pytest.mark.parametrize("objective", ["cca_supervised", "cca"])
def test_cca_objectives_fit_once_and_evaluate_like_any_checkpoint(tiny_world, tmp_path, objective) -> None:
    from training.config import load_config
    from training.eval.evaluate import evaluate
    from training.loop.trainer import Trainer

    summary = Trainer(load_config(objective, FAST + ["cca.pca_dims=16", "cca.components=4"]), tiny_world,
                      tmp_path / "run", progress=False).train()
    assert summary["rounds"] == 1 and summary["steps"] == 0
    (row,) = _rows(tmp_path / "run")
    assert len(row["cca_correlations"]) == 4 and row["cca_labels"] >= 3
    report = evaluate(str(tmp_path / "run" / "best"), tiny_world, tmp_path / "eval", scoring="cosine", with_oracle=False)
    assert 0.0 <= report["lists"]["verify_v2f_test"]["value"] <= 1.0


def test_group_negatives_train(tiny_world, tmp_path) -> None:
    from training.config import load_config
    from training.loop.trainer import Trainer

    tr = Trainer(load_config("faa", FAST + ["schedule.steps_per_round=4", "schedule.max_rounds=2", "pairs.negatives=group_hard"]),
                 tiny_world, tmp_path / "run", progress=False)
    tr.train()
    assert tr.video_groups is not None and set(np.unique(tr.video_groups[tr.video_groups >= 0])) == {0, 1}
    assert all(np.isfinite(r["fvm"]) for r in _rows(tmp_path / "run"))
