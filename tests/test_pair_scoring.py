"""Cached pair scoring must give the multimodal encoder's own logits."""

import pytest
import torch

from faa_core.model import FAAConfig, FAAModel
from faa_core.model.pair_scoring import encode_faces, encode_voices, match_logits


def _model(**over):
    cfg = dict(face_dim=24, voice_dim=16, face_token_dim=12, voice_token_dim=10, face_grid=(3, 2),
               d_model=32, n_heads=4, n_layers=2, proj_hidden=32, embed_dim=16)
    cfg.update(over)
    torch.manual_seed(1)
    return FAAModel(FAAConfig(**cfg)).eval()


def _inputs(model, n_voices=5, n_faces=4, t=9, seed=0):
    c = model.config
    g = torch.Generator().manual_seed(seed)
    ve = torch.nn.functional.normalize(torch.randn(n_voices, c.embed_dim, generator=g), dim=1)
    fe = torch.nn.functional.normalize(torch.randn(n_faces, c.embed_dim, generator=g), dim=1)
    vt = torch.randn(n_voices, t, c.voice_token_dim, generator=g) if c.voice_token_dim else None
    lengths = torch.tensor([9, 3, 7, 1, 5])[:n_voices]
    vm = (torch.arange(t)[None] < lengths[:, None]) if c.voice_token_dim else None
    ft = torch.randn(n_faces, c.face_tokens, c.face_token_dim, generator=g) if c.face_token_dim else None
    return ve, fe, vt, vm, ft


@pytest.mark.parametrize("over", [{}, {"n_layers": 1}, {"n_layers": 3}, {"voice_token_dim": 0},
                                  {"face_token_dim": 0}, {"voice_token_dim": 0, "face_token_dim": 0},
                                  {"cosine_residual": True}, {"cosine_residual": True, "n_layers": 1}])
def test_cached_logits_equal_forward(over):
    model = _model(**over)
    ve, fe, vt, vm, ft = _inputs(model)
    vi = torch.tensor([0, 1, 2, 3, 4, 4, 1, 0])
    fi = torch.tensor([0, 3, 1, 2, 2, 0, 1, 3])
    with torch.inference_mode():
        ref = model.match(None, None, None if vt is None else vt[vi], None if ft is None else ft[fi],
                          None if vm is None else vm[vi], voice_emb=ve[vi], face_emb=fe[fi]).logits
    voices = encode_voices(model.fusion, ve, vt, vm)
    faces = encode_faces(model.fusion, fe, ft)
    got = match_logits(model.fusion, voices.take(vi), faces.take(fi))
    assert got.shape == (8, 2)
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-5)


def test_take_trims_padding_to_the_longest_valid_voice():
    model = _model()
    ve, fe, vt, vm, ft = _inputs(model)
    voices = encode_voices(model.fusion, ve, vt, vm)
    short = voices.take(torch.tensor([1, 3]))  # 3 and 1 valid tokens after [CLS] and the global token
    assert short.x.shape[1] == 5 and short.mask.shape == (2, 5)


def test_training_mode_is_refused():
    model = _model()
    ve, fe, vt, vm, ft = _inputs(model)
    voices, faces = encode_voices(model.fusion, ve, vt, vm), encode_faces(model.fusion, fe, ft)
    model.train()
    with pytest.raises(ValueError, match="eval"):
        match_logits(model.fusion, voices.take(torch.tensor([0])), faces.take(torch.tensor([0])))


def test_cosine_residual_adds_gain_times_the_aligned_cosine():
    """With the match head's weights zeroed, the logit gap is exactly gain x cos(voice, face) + bias gap."""
    plain, resid = _model(), _model(cosine_residual=True)
    ve, fe, vt, vm, ft = _inputs(resid, n_voices=4, n_faces=4)
    with torch.no_grad():
        resid.fusion.match_head.weight.zero_()
        resid.fusion.match_head.bias.copy_(torch.tensor([0.5, -0.25]))
        logits = resid.match(None, None, vt, ft, vm, voice_emb=ve, face_emb=fe).logits
    cos = (ve * fe).sum(dim=1)
    assert float(resid.fusion.cosine_gain) == pytest.approx(1 / 0.07)
    torch.testing.assert_close(logits[:, 1] - logits[:, 0], cos / 0.07 - 0.75, rtol=0, atol=1e-5)
    assert plain.fusion.cosine_gain is None
    assert "fusion.cosine_gain" in resid.state_dict() and "fusion.cosine_gain" not in plain.state_dict()
