"""Tests for faa_core.linear (regularised CCA baseline): exact properties on small inputs,
the ReLU-pair loading into the projection heads, and a checkpoint round trip. CPU, fast."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from faa_core.checkpoint import load_checkpoint, save_checkpoint
from faa_core.linear import fit_cca, label_means, load_cca_into_heads
from faa_core.metrics import verification_auc
from faa_core.model import FAAConfig, FAAModel
from faa_core.model.heads import ProjectionHeads


def _paired(n: int, seed: int, df: int = 12, dv: int = 9, shared: int = 3, noise: float = 0.3):
    """Faces and voices that share a ``shared``-d latent through different random maps."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, shared))
    mf, mv = rng.normal(size=(shared, df)), rng.normal(size=(shared, dv))
    face = z @ mf + noise * rng.normal(size=(n, df)) + 2.0
    voice = z @ mv + noise * rng.normal(size=(n, dv)) - 1.0
    return face, voice, (mf, mv)


def test_one_direction_equals_shrunk_pearson() -> None:
    # in one dimension CCA's correlation is |pearson| of the PCA scores, shrunk by the ridge: r / (1 + reg)
    rng = np.random.default_rng(0)
    t = rng.normal(size=50)
    face = np.stack([t, np.zeros(50)], axis=1)  # PCA 1 of faces is exactly t (up to sign)
    s = 0.8 * t + 0.6 * rng.normal(size=50)
    voice = np.stack([np.zeros(50), s], axis=1)
    maps = fit_cca(face, voice, pca_dims=1, n_components=1, reg=0.25)
    r = abs(np.corrcoef(t, s)[0, 1])
    assert maps.correlations[0] == pytest.approx(r / 1.25, abs=1e-12)


def test_unregularised_coordinates_are_whitened_and_correlated_as_reported() -> None:
    face, voice, _ = _paired(200, 1)
    maps = fit_cca(face, voice, pca_dims=6, n_components=4, reg=1e-10)
    a, b = maps.face(face), maps.voice(voice)
    n = len(face)
    assert np.allclose(a.T @ a / (n - 1), np.eye(4), atol=1e-6)
    assert np.allclose(b.T @ b / (n - 1), np.eye(4), atol=1e-6)
    assert np.allclose(np.diag(a.T @ b / (n - 1)), maps.correlations, atol=1e-6)
    assert list(maps.correlations) == sorted(maps.correlations, reverse=True)
    assert maps.correlations[2] > 0.9 > 0.5 > maps.correlations[3]  # three shared dimensions, then noise


def test_fit_is_deterministic_and_caps_dimensions() -> None:
    face, voice, _ = _paired(30, 2)
    one, two = fit_cca(face, voice), fit_cca(face.copy(), voice.copy())
    for name in ("face_mean", "face_proj", "voice_mean", "voice_proj", "correlations"):
        assert np.array_equal(getattr(one, name), getattr(two, name))
    # 64 PCA dims asked, 9 available (the voice width); 8 directions kept
    assert one.face_proj.shape == (12, 8) and one.voice_proj.shape == (9, 8)
    small = fit_cca(face[:5], voice[:5], pca_dims=64, n_components=8)
    assert small.n_components == 4  # N - 1 = 4 PCA dims at most


def test_cca_scores_held_out_pairs_far_above_chance() -> None:
    rng = np.random.default_rng(5)
    z = rng.normal(size=(400, 3))
    _, _, (mf, mv) = _paired(10, 3)
    face = z @ mf + 0.5 * rng.normal(size=(400, 12))
    voice = z @ mv + 0.5 * rng.normal(size=(400, 9))
    maps = fit_cca(face[:300], voice[:300], pca_dims=8, n_components=3)
    a = maps.face(face[300:])
    b = maps.voice(voice[300:])
    a /= np.linalg.norm(a, axis=1, keepdims=True)
    b /= np.linalg.norm(b, axis=1, keepdims=True)
    sim = b @ a.T
    labels = np.eye(100, dtype=bool)
    auc = verification_auc(sim.ravel(), labels.ravel())
    heads = ProjectionHeads(12, 9, 16, 8, 0.0).eval()  # untrained
    with torch.no_grad():
        u = heads.voice(torch.tensor(voice[300:], dtype=torch.float32)) @ heads.face(torch.tensor(face[300:], dtype=torch.float32)).T
    base = verification_auc(u.numpy().ravel(), labels.ravel())
    assert auc > 0.95 and auc - base > 0.3


def test_heads_reproduce_normalised_canonical_coordinates() -> None:
    face, voice, _ = _paired(80, 4)
    maps = fit_cca(face, voice, pca_dims=6, n_components=5)
    heads = ProjectionHeads(12, 9, hidden=10, embed_dim=7, dropout=0.5).eval()
    load_cca_into_heads(heads, maps)
    with torch.no_grad():
        hf = heads.face(torch.tensor(face, dtype=torch.float32)).double().numpy()
        hv = heads.voice(torch.tensor(voice, dtype=torch.float32)).double().numpy()
    for got, coords in ((hf, maps.face(face)), (hv, maps.voice(voice))):
        want = coords / np.linalg.norm(coords, axis=1, keepdims=True)
        assert np.abs(got[:, :5] - want).max() < 1e-5
        assert np.array_equal(got[:, 5:], np.zeros((80, 2)))


def test_checkpoint_round_trip_scores_the_same(tmp_path) -> None:
    face, voice, _ = _paired(60, 6)
    maps = fit_cca(face, voice, pca_dims=6, n_components=4)
    cfg = FAAConfig(face_dim=12, voice_dim=9, face_token_dim=0, voice_token_dim=0, proj_hidden=8, embed_dim=4,
                    d_model=16, n_heads=2, n_layers=1)
    model = FAAModel(cfg)
    load_cca_into_heads(model.heads, maps)
    save_checkpoint(tmp_path / "ck", model, trained_on={"data": "test", "objective": "cca_supervised"})
    back, _ = load_checkpoint(tmp_path / "ck")
    back.eval()
    with torch.no_grad():
        got = back.embed_voice(torch.tensor(voice, dtype=torch.float32)) @ back.embed_face(torch.tensor(face, dtype=torch.float32)).T
    a = F.normalize(torch.tensor(maps.voice(voice)), dim=1)
    b = F.normalize(torch.tensor(maps.face(face)), dim=1)
    assert (got.double() - a @ b.T).abs().max().item() < 1e-5


def test_label_means() -> None:
    voice = np.array([[3.0, 4.0], [0.0, 2.0], [1.0, 0.0]])
    face = np.array([[1.0, 1.0, 0.0], [0.0, 0.0, 5.0]])
    keys, vm, fm = label_means(voice, [7, 7, 9], face, [9, 7])
    assert keys.tolist() == [7, 9]
    # label 7: voice mean [1.5, 3] -> normalised; face [0, 0, 5] -> [0, 0, 1]
    assert vm[0] == pytest.approx(np.array([1.5, 3.0]) / np.hypot(1.5, 3.0))
    assert np.allclose(fm, [[0.0, 0.0, 1.0], [2 ** -0.5, 2 ** -0.5, 0.0]], atol=1e-7)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(face_means=np.ones((2, 3)), voice_means=np.ones((2, 3))), "at least 3"),
        (dict(face_means=np.ones((4, 3)), voice_means=np.ones((5, 3))), "same N"),
        (dict(reg=0.0), "reg"),
        (dict(n_components=0), "n_components"),
        (dict(face_means=np.full((4, 3), np.nan), voice_means=np.ones((4, 3))), "finite"),
    ],
)
def test_fit_errors(kwargs, match) -> None:
    face, voice, _ = _paired(10, 7)
    args = dict(face_means=face, voice_means=voice)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        fit_cca(**args)


def test_heads_too_small_or_wrong_width() -> None:
    face, voice, _ = _paired(40, 8)
    maps = fit_cca(face, voice, pca_dims=6, n_components=4)
    with pytest.raises(ValueError, match="hidden >= 8"):
        load_cca_into_heads(ProjectionHeads(12, 9, 6, 8, 0.0), maps)
    with pytest.raises(ValueError, match="fitted on 12/9"):
        load_cca_into_heads(ProjectionHeads(10, 9, 16, 8, 0.0), maps)
