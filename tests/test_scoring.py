"""training.eval.scoring: list-scale fusion scoring equals the model run pair by pair."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from training.loop.data import open_features
from training.eval.scoring import fusion_probabilities, score_pairs
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
