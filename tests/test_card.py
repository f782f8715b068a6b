"""What a trained checkpoint's card says about its data: synthetic or not, and which encoders made the features."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import torch

from training.config import load_config
from training.loop.trainer import Trainer

FAST = [
    "schedule.steps_per_round=2", "schedule.max_rounds=1", "optim.batch_size=16", "validation.trials=60",
    "model.d_model=16", "model.n_heads=2", "model.n_layers=1", "model.proj_hidden=16", "model.embed_dim=8",
]


@pytest.fixture(scope="module")
def tiny_world(tmp_path_factory) -> Path:
    from training.synth import build_world

    out = tmp_path_factory.mktemp("world") / "tiny"
    build_world(preset="tiny", seed=0, out=out)
    return out


def _store(world: Path, folder: Path, source: dict) -> Path:
    """A plain feature store (no world.json, no truth/) with the world's lists and ``source`` in store.json."""
    shutil.copytree(world / "features", folder)
    shutil.copytree(world / "protocol", folder / "protocol")  # the lists, so it can be evaluated
    meta = json.loads((folder / "store.json").read_text())
    meta["source"] = source
    (folder / "store.json").write_text(json.dumps(meta))
    return folder


def _card(store: Path, run: Path) -> dict:
    from faa_core.checkpoint import load_checkpoint

    Trainer(load_config("faa", FAST), store, run, progress=False).train()
    return load_checkpoint(run / "best")[1]


def test_a_store_marked_synthetic_makes_a_synthetic_card_and_report(tiny_world, tmp_path):
    """A generator's store says ``synthetic: true``; the card and the evaluation report must say so too."""
    from training.eval.evaluate import evaluate

    store = _store(tiny_world, tmp_path / "store", {"generator": "some generator", "synthetic": True})
    card = _card(store, tmp_path / "run")
    assert card["synthetic"] is True
    report = evaluate(str(tmp_path / "run" / "best"), store, tmp_path / "eval", scoring="cosine", with_oracle=False)
    assert report["synthetic_checkpoint"] is True


def test_card_encoders_come_from_the_store(tiny_world, tmp_path):
    source = {
        "generator": "training.extract", "synthetic": False, "random_weights": False,
        "weights": {"mode": "custom", "description": "face: /w/face.pt; voice: /w/voice.ckpt"},
        "encoders": {
            "face": {"name": "face net X", "token_layer": "layer_f", "token_grid": [4, 4], "face_crop": "mtcnn"},
            "voice": {"name": "voice net Y", "token_layer": "layer_v", "token_rate_per_s": 2.0},
        },
    }
    store = _store(tiny_world, tmp_path / "store", source)
    card = _card(store, tmp_path / "run")
    face, voice = card["encoders"]["face"], card["encoders"]["voice"]
    assert card["synthetic"] is False
    assert (face["name"], face["weights"], face["token_layer"]) == ("face net X", "/w/face.pt", "layer_f")
    assert (voice["name"], voice["weights"], voice["token_layer"]) == ("voice net Y", "/w/voice.ckpt", "layer_v")
    assert voice["token_rate_per_s"] == 2.0 and face["face_crop"] == "mtcnn"
    cfg = card["model_config"]
    assert (face["global_dim"], face["token_dim"]) == (cfg["face_dim"], cfg["face_token_dim"])
    assert (voice["global_dim"], voice["token_dim"]) == (cfg["voice_dim"], cfg["voice_token_dim"])


def test_the_voice_token_layer_label_names_the_layer_the_tokens_come_from(random_weights):
    """The label says blocks[i]; the encoder's frames must be exactly that block's output."""
    from faa_core.checkpoint import default_encoders
    from faa_core.encoders.voice import VoiceEncoder
    from faa_core.model import FAAConfig

    label = default_encoders(FAAConfig())["voice"]["token_layer"]
    index = int(re.match(r"blocks\[(\d+)\]", label).group(1))
    enc = VoiceEncoder(random_weights.voice)
    seen = {}
    enc.network.blocks[index].register_forward_hook(lambda m, i, o: seen.setdefault("out", o))
    feats = enc.features(torch.randn(1, 16_000) * 0.1)
    frames, _ = enc.forward_features(feats)
    assert torch.equal(frames, seen["out"].transpose(1, 2))
    assert index == len(enc.network.blocks) - 1  # "the last SE-Res2 block"
