"""training.eval.scoring: list-scale fusion scoring equals the model run pair by pair."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from training.loop.data import open_features
from training.eval.scoring import fusion_probabilities, score_pairs, verification_trials
from training.loop.trainer import model_config
from training.config import load_config


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    from training.synth import build_world

    out = tmp_path_factory.mktemp("w") / "tiny"
    build_world(preset="tiny", seed=3, out=out)
    return out


def test_fusion_probabilities_match_the_model_across_chunks(world):
    src = open_features(world)
    voice, face = src["voice"], src["face"]
    torch.manual_seed(0)
    from faa_core.model import FAAModel

    model = FAAModel(model_config(load_config("faa", ["model.d_model=32", "model.n_layers=2"]), voice, face)).eval()
    rng = np.random.default_rng(0)
    v = rng.integers(0, len(voice.ids), 37)
    f = rng.integers(0, len(face.ids), 37)
    got = fusion_probabilities(model, voice, face, v, f, batch=5, chunk=4)
    with torch.inference_mode():
        vt, vm = voice.tokens(v)
        ft, _ = face.tokens(f)
        ve = model.embed_voice(torch.from_numpy(np.asarray(voice.globals(v), dtype=np.float32)))
        fe = model.embed_face(torch.from_numpy(np.asarray(face.globals(f), dtype=np.float32)))
        ref = []
        for k in range(len(v)):  # one pair at a time: no padding shared with other pairs
            n = int(vm[k].sum())
            logits = model.match(None, None, torch.from_numpy(np.asarray(vt[k:k + 1, :n], dtype=np.float32)),
                                 torch.from_numpy(np.asarray(ft[k:k + 1], dtype=np.float32)), None,
                                 voice_emb=ve[k:k + 1], face_emb=fe[k:k + 1]).logits
            ref.append(float(FAAModel.match_probability(logits)[0]))
    np.testing.assert_allclose(got, np.array(ref), rtol=1e-4, atol=1e-5)
    assert len(fusion_probabilities(model, voice, face, v[:0], f[:0])) == 0
    combined = score_pairs(model, voice, face, v, f, "combined")
    cosine = score_pairs(model, voice, face, v, f, "cosine")
    np.testing.assert_allclose(combined, (cosine + got) / 2, rtol=1e-4, atol=1e-5)


def _frames_world(n_people: int = 6, n_videos: int = 3, per_video: int = 2):
    """A val split whose faces are frames of the voices' own videos (VoxCeleb1 face tracks, SL's features)."""
    from training.features import ItemTable

    rows = [(f"p{p}", f"p{p}/v{v}", k) for p in range(n_people) for v in range(n_videos) for k in range(per_video)]
    voice = ItemTable([f"{vid}/{k}.wav" for _, vid, k in rows], [r[1] for r in rows], [r[0] for r in rows], ["val"] * len(rows))
    face = ItemTable([f"{vid}/{k}.jpg" for _, vid, k in rows], [r[1] for r in rows], [r[0] for r in rows], ["val"] * len(rows))
    return voice, face


def test_validation_positives_come_from_another_video_of_the_same_person():
    """Same-video positives would let the per-video nuisance inflate the AUC that picks the best round."""
    voice, face = _frames_world()
    vs, fs, labels = verification_trials(voice, face, "val", 4000, seed=5)
    assert len(vs) == 4000 and labels.sum() == 2000  # balanced, nothing dropped
    same_person = voice.identities[vs] == face.identities[fs]
    same_video = voice.videos[vs] == face.videos[fs]
    assert (same_person == (labels == 1)).all()
    assert not same_video.any()  # before the fix: about a third of the positives shared the video
    # every other-video face of the person is drawn: 36 voices x 4 faces of the person's two other videos
    pos = labels == 1
    assert len(set(zip(vs[pos].tolist(), fs[pos].tolist()))) == 36 * 4


def test_validation_trials_refuse_a_split_without_other_video_faces():
    voice, face = _frames_world(n_people=2, n_videos=1)  # each person's faces all share the voice's video
    with pytest.raises(ValueError, match="another video"):
        verification_trials(voice, face, "val", 10, seed=0)
