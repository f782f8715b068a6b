"""Tests for faa_core.model: config validation, shapes, attention maps, masking and gradients."""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F

from faa_core.losses import fvc_infonce
from faa_core.model import FAAConfig, FAAModel, FusionOutput, MultimodalEncoder
from faa_core.model.fusion import sinusoid
from model_fixtures import SMALL_CONFIG, fake_features, make_small_model

GLOBAL_ONLY = dict(SMALL_CONFIG, face_token_dim=0, voice_token_dim=0)


@pytest.fixture(scope="module")
def model() -> FAAModel:
    with torch.random.fork_rng(devices=[]):
        return make_small_model()


@pytest.fixture(scope="module")
def two_layer_model() -> FAAModel:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(1)
        return FAAModel(FAAConfig(**dict(SMALL_CONFIG, n_layers=2))).eval()


@pytest.fixture(scope="module")
def global_model() -> FAAModel:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(2)
        return FAAModel(FAAConfig(**GLOBAL_ONLY)).eval()


# --------------------------------------------------------------------------- FAAConfig


def test_config_defaults_match_the_encoders():
    cfg = FAAConfig()
    assert (cfg.face_dim, cfg.voice_dim, cfg.face_token_dim, cfg.voice_token_dim) == (512, 192, 896, 1024)
    assert cfg.face_grid == (8, 8) and cfg.face_tokens == 64
    assert not cfg.global_only
    assert cfg.init_logit_scale == pytest.approx(math.log(1 / 0.07))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(face_dim=0), "face_dim"),
        (dict(voice_dim=-3), "voice_dim"),
        (dict(proj_hidden=0), "proj_hidden"),
        (dict(embed_dim=0), "embed_dim"),
        (dict(d_model=0), "d_model"),
        (dict(n_heads=0), "n_heads"),
        (dict(n_layers=0), "n_layers"),
        (dict(face_token_dim=-1), "token dimensions"),
        (dict(voice_token_dim=-1), "token dimensions"),
        (dict(d_model=64, n_heads=3), "divisible"),
        (dict(face_grid=(8, 0)), "face_grid"),
        (dict(face_grid=(8,)), "face_grid"),
        (dict(face_grid=(2, 2, 2)), "face_grid"),
        (dict(init_temperature=0.0), "init_temperature"),
        (dict(init_temperature=1.0), "init_temperature"),
        (dict(init_temperature=-0.1), "init_temperature"),
    ],
)
def test_config_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        FAAConfig(**kwargs)


def test_config_round_trip_through_json():
    cfg = FAAConfig(**dict(SMALL_CONFIG, face_grid=(4, 6), dropout=0.0))
    d = cfg.to_dict()
    assert d["face_grid"] == [4, 6] and isinstance(d["face_grid"], list)
    back = FAAConfig.from_dict(json.loads(json.dumps(d)))
    assert back == cfg
    assert back.face_grid == (4, 6) and isinstance(back.face_grid, tuple)
    assert back.face_tokens == 24


def test_config_list_grid_becomes_tuple():
    assert FAAConfig(face_grid=[8, 8]).face_grid == (8, 8)


def test_config_from_dict_unknown_field():
    d = FAAConfig().to_dict()
    d["hidden_size"] = 3
    with pytest.raises(ValueError, match="hidden_size"):
        FAAConfig.from_dict(d)


def test_config_from_dict_partial_uses_defaults():
    cfg = FAAConfig.from_dict({"d_model": 32, "n_heads": 2})
    assert cfg.d_model == 32 and cfg.face_dim == 512


def test_config_global_only_flags():
    cfg = FAAConfig(**GLOBAL_ONLY)
    assert cfg.global_only and cfg.face_tokens == 0
    half = FAAConfig(**dict(SMALL_CONFIG, face_token_dim=0))
    assert not half.global_only and half.face_tokens == 0


@pytest.mark.parametrize("d_model, n_heads", [(63, 3), (5, 1)])
def test_odd_d_model_is_refused(d_model, n_heads):
    with pytest.raises(ValueError, match="d_model must be even"):
        FAAConfig(**dict(SMALL_CONFIG, d_model=d_model, n_heads=n_heads))


@pytest.mark.parametrize("d_model, n_heads", [(30, 2), (6, 2)])
def test_even_d_model_with_odd_head_size_works(d_model, n_heads):
    """Odd head sizes (30 / 2 = 15, 6 / 2 = 3) run: only d_model itself must be even."""
    cfg = FAAConfig(**dict(SMALL_CONFIG, d_model=d_model, n_heads=n_heads))
    m = FAAModel(cfg).eval()
    v, f, vt, ft = fake_features(2, cfg=cfg)
    with torch.no_grad():
        logits = m.match(v, f, vt, ft).logits
    assert logits.shape == (2, 2) and torch.isfinite(logits).all()


# --------------------------------------------------------------------------- shapes


def test_token_mode_shapes(model):
    v, f, vt, ft = fake_features(3, t=9)
    with torch.no_grad():
        out = model.match(v, f, vt, ft)
    assert isinstance(out, FusionOutput)
    assert out.logits.shape == (3, 2)
    assert out.face_attention is None and out.voice_attention is None
    assert torch.isfinite(out.logits).all()
    assert model.forward == model.match


def test_token_mode_with_weights_shapes(model):
    v, f, vt, ft = fake_features(3, t=9)
    with torch.no_grad():
        out = model.match(v, f, vt, ft, need_weights=True)
    assert out.logits.shape == (3, 2)
    assert out.face_attention.shape == (3, 8, 8)
    assert out.voice_attention.shape == (3, 9)


def test_global_only_mode(global_model):
    v, f, _, _ = fake_features(4)
    assert global_model.fusion.voice_tokens_in is None and global_model.fusion.face_tokens_in is None
    with torch.no_grad():
        out = global_model.match(v, f, need_weights=True)
        plain = global_model.match(v, f)
    assert out.logits.shape == (4, 2)
    assert out.face_attention is None and out.voice_attention is None
    torch.testing.assert_close(out.logits, plain.logits, atol=1e-5, rtol=1e-5)


def test_voice_tokens_only_mode():
    cfg = FAAConfig(**dict(SMALL_CONFIG, face_token_dim=0))
    m = FAAModel(cfg).eval()
    v, f, vt, _ = fake_features(2, t=5)
    with torch.no_grad():
        out = m.match(v, f, voice_tokens=vt, need_weights=True)
    assert out.logits.shape == (2, 2)
    assert out.face_attention is None
    assert out.voice_attention.shape == (2, 5)


def test_face_grid_other_than_8x8():
    cfg = FAAConfig(**dict(SMALL_CONFIG, face_grid=(3, 5)))
    m = FAAModel(cfg).eval()
    v, f, vt, ft = fake_features(2, t=4, cfg=cfg)
    assert ft.shape[1] == 15
    with torch.no_grad():
        out = m.match(v, f, vt, ft, need_weights=True)
    assert out.face_attention.shape == (2, 3, 5)


# --------------------------------------------------------------------------- attention maps


def test_face_attention_sums_to_one(two_layer_model):
    v, f, vt, ft = fake_features(3, t=6, seed=1)
    with torch.no_grad():
        out = two_layer_model.match(v, f, vt, ft, need_weights=True)
    fa = out.face_attention
    assert fa.shape == (3, 8, 8)
    assert (fa >= 0).all()
    torch.testing.assert_close(fa.sum(dim=(1, 2)), torch.ones(3), atol=1e-5, rtol=0)


def test_voice_attention_sums_to_one_and_ignores_padding(two_layer_model):
    v, f, vt, ft = fake_features(2, t=10, seed=2)
    mask = torch.ones(2, 10, dtype=torch.bool)
    mask[0, 6:] = False
    mask[1, 9:] = False
    with torch.no_grad():
        out = two_layer_model.match(v, f, vt, ft, voice_mask=mask, need_weights=True)
    va = out.voice_attention
    assert va.shape == (2, 10)
    torch.testing.assert_close(va.sum(dim=1), torch.ones(2), atol=1e-5, rtol=0)
    assert torch.all(va[0, 6:] == 0) and torch.all(va[1, 9:] == 0)
    assert torch.all(va[mask] > 0)


def test_face_attention_is_a_map_of_the_face_grid(model):
    """Changing one face token changes the attention mostly at that grid cell."""
    v, f, vt, ft = fake_features(1, t=4, seed=3)
    ft2 = ft.clone()
    ft2[0, 8 * 3 + 5] *= 20.0
    with torch.no_grad():
        a = model.match(v, f, vt, ft, need_weights=True).face_attention[0]
        b = model.match(v, f, vt, ft2, need_weights=True).face_attention[0]
    diff = (a - b).abs()
    assert diff.argmax().item() == 8 * 3 + 5
    assert diff[3, 5] == diff.max()


# --------------------------------------------------------------------------- masking and padding


@pytest.mark.parametrize("need_weights", [False, True])
def test_padding_invariance(two_layer_model, need_weights):
    v, f, vt, ft = fake_features(1, t=7, seed=4)
    padded = torch.cat([vt, 3.0 * torch.randn(1, 5, 1024)], dim=1)
    mask = torch.tensor([[True] * 7 + [False] * 5])
    with torch.no_grad():
        alone = two_layer_model.match(v, f, vt, ft, need_weights=need_weights)
        pad = two_layer_model.match(v, f, padded, ft, voice_mask=mask, need_weights=need_weights)
        unmasked = two_layer_model.match(v, f, padded, ft)
    torch.testing.assert_close(pad.logits, alone.logits, atol=1e-5, rtol=0)
    assert not torch.allclose(unmasked.logits, alone.logits, atol=1e-4)  # the mask is what does it
    if need_weights:
        torch.testing.assert_close(pad.voice_attention[:, :7], alone.voice_attention, atol=1e-5, rtol=0)
        torch.testing.assert_close(pad.face_attention, alone.face_attention, atol=1e-5, rtol=0)


def test_padded_batch_equals_one_by_one(two_layer_model):
    lengths = [3, 8, 5]
    g = torch.Generator().manual_seed(5)
    v = torch.randn(3, 192, generator=g)
    f = torch.randn(3, 512, generator=g)
    ft = torch.randn(3, 64, 896, generator=g)
    voices = [torch.randn(n, 1024, generator=g) for n in lengths]
    tokens = torch.zeros(3, max(lengths), 1024)
    mask = torch.zeros(3, max(lengths), dtype=torch.bool)
    for i, x in enumerate(voices):
        tokens[i, : len(x)] = x
        mask[i, : len(x)] = True
    with torch.no_grad():
        batch = two_layer_model.match(v, f, tokens, ft, voice_mask=mask).logits
        for i, x in enumerate(voices):
            single = two_layer_model.match(v[i : i + 1], f[i : i + 1], x[None], ft[i : i + 1]).logits
            torch.testing.assert_close(batch[i : i + 1], single, atol=1e-5, rtol=0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.long])
@pytest.mark.parametrize("need_weights", [False, True])
def test_numeric_voice_mask_works_like_bool(model, dtype, need_weights):
    v, f, vt, ft = fake_features(1, t=7, seed=6)
    padded = torch.cat([vt, torch.randn(1, 5, 1024)], dim=1)
    mask = torch.tensor([[1] * 7 + [0] * 5], dtype=dtype)
    with torch.no_grad():
        alone = model.match(v, f, vt, ft).logits
        pad = model.match(v, f, padded, ft, voice_mask=mask, need_weights=need_weights).logits
    torch.testing.assert_close(pad, alone, atol=1e-5, rtol=0)


def test_need_weights_does_not_change_logits(two_layer_model):
    v, f, vt, ft = fake_features(4, t=6, seed=7)
    mask = torch.ones(4, 6, dtype=torch.bool)
    mask[1, 4:] = False
    with torch.no_grad():
        a = two_layer_model.match(v, f, vt, ft, voice_mask=mask, need_weights=False).logits
        b = two_layer_model.match(v, f, vt, ft, voice_mask=mask, need_weights=True).logits
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_batch_rows_are_independent(model):
    v, f, vt, ft = fake_features(3, t=5, seed=8)
    with torch.no_grad():
        batch = model.match(v, f, vt, ft).logits
        one = model.match(v[1:2], f[1:2], vt[1:2], ft[1:2]).logits
    torch.testing.assert_close(batch[1:2], one, atol=1e-5, rtol=0)


def test_eval_mode_is_deterministic(model):
    v, f, vt, ft = fake_features(2, t=5, seed=9)
    with torch.no_grad():
        a = model.match(v, f, vt, ft).logits
        b = model.match(v, f, vt, ft).logits
    assert torch.equal(a, b)


# --------------------------------------------------------------------------- errors


def test_missing_voice_tokens(model):
    v, f, _, ft = fake_features(2)
    with pytest.raises(ValueError, match="voice_tokens"):
        model.match(v, f, None, ft)


def test_missing_face_tokens(model):
    v, f, vt, _ = fake_features(2)
    with pytest.raises(ValueError, match="face_tokens"):
        model.match(v, f, vt, None)


def test_wrong_number_of_face_tokens(model):
    v, f, vt, ft = fake_features(2)
    with pytest.raises(ValueError, match="64 face tokens"):
        model.match(v, f, vt, ft[:, :49])


def test_pair_count_mismatch(model):
    v, f, vt, ft = fake_features(2)
    with pytest.raises(ValueError, match="pair count"):
        model.match(v, f[:1], vt, ft[:1])


# --------------------------------------------------------------------------- embeddings and probability


def test_embeddings_are_unit_norm(model):
    v, f, _, _ = fake_features(5)
    with torch.no_grad():
        ev = model.embed_voice(v)
        ef = model.embed_face(f)
    assert ev.shape == (5, 32) and ef.shape == (5, 32)
    torch.testing.assert_close(ev.norm(dim=-1), torch.ones(5), atol=1e-5, rtol=0)
    torch.testing.assert_close(ef.norm(dim=-1), torch.ones(5), atol=1e-5, rtol=0)


def test_precomputed_embeddings_skip_the_heads(model):
    v, f, vt, ft = fake_features(2, seed=10)
    with torch.no_grad():
        a = model.match(v, f, vt, ft).logits
        b = model.match(None, None, vt, ft, voice_emb=model.embed_voice(v), face_emb=model.embed_face(f)).logits
    torch.testing.assert_close(a, b)


def test_match_probability(model):
    v, f, vt, ft = fake_features(4, seed=11)
    with torch.no_grad():
        logits = model.match(v, f, vt, ft).logits
    p = FAAModel.match_probability(logits)
    assert p.shape == (4,)
    assert ((p >= 0) & (p <= 1)).all()
    torch.testing.assert_close(p, logits.softmax(-1)[:, 1])
    extreme = FAAModel.match_probability(torch.tensor([[0.0, 1e4], [1e4, 0.0], [0.0, 0.0]], dtype=torch.float16))
    torch.testing.assert_close(extreme, torch.tensor([1.0, 0.0, 0.5]))
    assert extreme.dtype == torch.float32


def test_logit_scale_initialised_from_temperature():
    m = FAAModel(FAAConfig(**dict(SMALL_CONFIG, init_temperature=0.05)))
    assert m.logit_scale.item() == pytest.approx(math.log(20.0), rel=1e-6)
    assert m.logit_scale.requires_grad


def test_sinusoid_positions():
    pe = sinusoid(5, 8, torch.device("cpu"))
    assert pe.shape == (5, 8)
    torch.testing.assert_close(pe[0, 0::2], torch.zeros(4))
    torch.testing.assert_close(pe[0, 1::2], torch.ones(4))
    torch.testing.assert_close(pe[3, 0], torch.tensor(math.sin(3.0)))


# --------------------------------------------------------------------------- training


def test_gradients_flow_to_heads_fusion_and_logit_scale():
    torch.manual_seed(0)
    m = FAAModel(FAAConfig(**SMALL_CONFIG)).train()
    v, f, vt, ft = fake_features(4, t=6, seed=12)
    mask = torch.ones(4, 6, dtype=torch.bool)
    mask[2, 3:] = False
    ev, ef = m.embed_voice(v), m.embed_face(f)
    align = fvc_infonce(ev, ef, torch.arange(4), m.logit_scale)
    # positives are rows with themselves, negatives the faces rolled by one
    voice_emb = torch.cat([ev, ev])
    face_emb = torch.cat([ef, ef.roll(1, 0)])
    out = m.match(
        None, None, torch.cat([vt, vt]), torch.cat([ft, ft.roll(1, 0)]), voice_mask=torch.cat([mask, mask]),
        voice_emb=voice_emb, face_emb=face_emb,
    )
    fuse = F.cross_entropy(out.logits, torch.cat([torch.ones(4), torch.zeros(4)]).long())
    loss = align + fuse
    loss.backward()
    for name, p in m.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
    assert m.logit_scale.grad.abs().item() > 0
    groups = {
        "heads.face_in": m.heads.face_in, "heads.voice_in": m.heads.voice_in, "heads.shared": m.heads.shared,
        "fusion.layers": m.fusion.layers, "fusion.match_head": m.fusion.match_head,
        "fusion.voice_tokens_in": m.fusion.voice_tokens_in, "fusion.face_tokens_in": m.fusion.face_tokens_in,
    }
    for name, module in groups.items():
        total = sum(p.grad.abs().sum().item() for p in module.parameters())
        assert total > 0, name
    for p in (m.fusion.cls, m.fusion.voice_type, m.fusion.face_pos):
        assert p.grad.abs().sum() > 0
    before = {k: v.detach().clone() for k, v in m.state_dict().items()}
    torch.optim.SGD(m.parameters(), lr=0.1).step()
    changed = [k for k, v in m.state_dict().items() if not torch.equal(v, before[k])]
    assert "logit_scale" in changed and "fusion.match_head.weight" in changed and "heads.shared.0.weight" in changed


def test_multimodal_encoder_alone():
    cfg = FAAConfig(**SMALL_CONFIG)
    enc = MultimodalEncoder(cfg).eval()
    ve = F.normalize(torch.randn(2, cfg.embed_dim), dim=-1)
    fe = F.normalize(torch.randn(2, cfg.embed_dim), dim=-1)
    with torch.no_grad():
        out = enc(ve, fe, torch.randn(2, 3, 1024), torch.randn(2, 64, 896), need_weights=True)
    assert out.logits.shape == (2, 2) and out.voice_attention.shape == (2, 3)


def test_rows_give_the_same_logits_and_gradients_as_gathered_tokens():
    """Tokens given once per item plus row indices == tokens gathered per pair."""
    from faa_core.model import FAAConfig, FAAModel

    torch.manual_seed(0)
    model = FAAModel(FAAConfig(face_dim=12, voice_dim=10, face_token_dim=6, voice_token_dim=5, face_grid=(2, 2),
                               d_model=16, n_heads=2, n_layers=2, proj_hidden=16, embed_dim=8, dropout=0.0,
                               proj_dropout=0.0))
    vt, ft = torch.randn(3, 4, 5), torch.randn(3, 4, 6)
    vm = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0], [1, 0, 0, 0]], dtype=torch.bool)
    ve, fe = torch.randn(7, 8), torch.randn(7, 8)
    rv, rf = torch.tensor([0, 1, 2, 0, 1, 2, 2]), torch.tensor([2, 2, 1, 0, 0, 1, 0])
    a = model.match(None, None, vt, ft, vm, voice_emb=ve, face_emb=fe, voice_rows=rv, face_rows=rf).logits
    ga = torch.autograd.grad(a.sum(), model.fusion.face_tokens_in[0].weight)[0]
    b = model.match(None, None, vt[rv], ft[rf], vm[rv], voice_emb=ve, face_emb=fe).logits
    gb = torch.autograd.grad(b.sum(), model.fusion.face_tokens_in[0].weight)[0]
    torch.testing.assert_close(a, b)
    torch.testing.assert_close(ga, gb)
