"""Encoder provenance: a checkpoint trained on other encoders' features is refused, unless asked, with a warning.

Cards record per modality a ``weights_id`` (sha256 of the weight file, ``random (seed N)``, or ``unknown: ...``
for features made elsewhere, such as Self-Lifting's); ``faa_core.encoders.provenance`` compares it with the
loaded encoders. Cards without one (older cards, the bundled checkpoint) keep loading.
"""

from __future__ import annotations

import hashlib
import html
import json
import shutil
from pathlib import Path

import pytest

import app
from faa_core import cli
from faa_core.encoders import resolve_weights
from faa_core.encoders.provenance import encoder_mismatch
from faa_core.encoders.weights import WeightFile
from faa_core.errors import EncoderMismatchError
from faa_core.pipeline import MatchPipeline
from training.ingest.import_sl import SL_ENCODERS, SL_WEIGHTS
from training.loop.trainer import card_encoders

SL_MESSAGE_START = ("checkpoint was trained on voice features of SL's ECAPA (VoxCeleb2), SL's own retrained "
                    "checkpoint (weight file hash unknown) and face features of SL's face pipeline")


def _with_encoders(src: Path, dst: Path, source: dict) -> Path:
    """A copy of checkpoint ``src`` whose card's encoders are what the trainer writes for a store with ``source``."""
    from faa_core.checkpoint import load_checkpoint

    shutil.copytree(src, dst)
    model, card = load_checkpoint(dst)
    card["encoders"] = card_encoders(model.config, source)
    (dst / "config.json").write_text(json.dumps(card))
    return dst


@pytest.fixture(scope="module")
def sl_checkpoint(small_checkpoint, tmp_path_factory) -> Path:
    source = {"kind": "self-lifting-release", "encoders": SL_ENCODERS, "weights": SL_WEIGHTS}
    return _with_encoders(small_checkpoint, tmp_path_factory.mktemp("sl") / "ckpt", source)


def test_weights_id_is_the_file_content(tmp_path):
    f = tmp_path / "w.pt"
    f.write_bytes(b"some weights" * 1000)
    assert WeightFile(f, "x").weights_id() == "sha256:" + hashlib.sha256(b"some weights" * 1000).hexdigest()
    assert WeightFile(None, "random").weights_id() == "random (seed 0)"


def test_a_card_naming_sls_encoders_is_refused_by_the_pipeline(sl_checkpoint):
    card = json.loads((sl_checkpoint / "config.json").read_text())
    assert card["encoders"]["voice"]["weights_id"].startswith("unknown: Self-Lifting's own ECAPA-TDNN")
    with pytest.raises(EncoderMismatchError) as err:
        MatchPipeline.from_checkpoint(sl_checkpoint, weights="random")
    msg = str(err.value)
    assert msg.startswith(SL_MESSAGE_START), msg
    assert "the loaded voice encoder is RANDOM (untrained ECAPA-TDNN) (random (seed 0))" in msg
    assert msg.endswith("pass --allow-encoder-mismatch (allow_encoder_mismatch=True in Python) to serve it anyway")
    assert "\n" not in msg


def test_the_override_loads_it_with_a_warning(sl_checkpoint):
    pipe = MatchPipeline.from_checkpoint(sl_checkpoint, weights="random", allow_encoder_mismatch=True)
    warning = [w for w in pipe.model_warnings() if w.startswith("ENCODER MISMATCH")]
    assert len(warning) == 1 and SL_MESSAGE_START in warning[0] and "--allow-encoder-mismatch" not in warning[0]


def test_the_apps_loader_refuses_and_the_override_shows_the_banner(sl_checkpoint):
    with pytest.raises(EncoderMismatchError, match="^checkpoint was trained on voice features of SL's ECAPA"):
        app.load_models(sl_checkpoint, "random", warmup=False)
    pipe, info = app.load_models(sl_checkpoint, "random", warmup=False, allow_encoder_mismatch=True)
    demo = app.build_demo(pipe, info)
    banner = next(b for b in demo.blocks.values() if getattr(b, "elem_id", None) == "faa-model-warning")
    assert banner.visible and html.escape("ENCODER MISMATCH (served anyway, as asked)") in banner.value
    assert html.escape(SL_MESSAGE_START) in banner.value


def test_app_command_line_refuses_in_one_line(sl_checkpoint, capsys):
    assert app.main(["--checkpoint", str(sl_checkpoint), "--weights", "random", "--device", "cpu"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: " + SL_MESSAGE_START) and "\n" not in err


def test_cli_refuses_and_the_flag_serves_with_a_warning(sl_checkpoint, speech_wav, face_image_path, capsys):
    base = ["match", "--checkpoint", str(sl_checkpoint), "--voice", str(speech_wav), "--faces", str(face_image_path),
            "--weights", "random"]
    assert cli.main(base) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: " + SL_MESSAGE_START) and "\n" not in err
    assert cli.main(base + ["--allow-encoder-mismatch", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert any(w.startswith("ENCODER MISMATCH") for w in out["model_warnings"]) and len(out["faces"]) == 1


def test_cards_without_provenance_and_matching_random_weights_load(small_checkpoint, tmp_path):
    # the bundled checkpoint and older cards name no weights_id: unknown, never refused
    bundled = Path(app.DEFAULT_CHECKPOINT)
    assert MatchPipeline.from_checkpoint(bundled, weights="random").encoder_mismatch is None
    pipe = MatchPipeline.from_checkpoint(small_checkpoint, weights="random")
    assert pipe.encoder_mismatch is None and not any("ENCODER MISMATCH" in w for w in pipe.model_warnings())
    # features of random encoders served with random encoders: the same weights
    source = {"encoders": {"face": {"name": "f", "weights_id": "random (seed 0)"},
                           "voice": {"name": "v", "weights_id": "random (seed 0)"}},
              "weights": {"description": "face: RANDOM; voice: RANDOM"}}
    same = _with_encoders(small_checkpoint, tmp_path / "same", source)
    assert MatchPipeline.from_checkpoint(same, weights="random").encoder_mismatch is None


def test_a_pretrained_feature_card_is_refused_on_random_weights_naming_the_hash(small_checkpoint, tmp_path):
    sha = "sha256:" + "ab" * 32
    source = {"encoders": {"face": {"name": "f", "weights_id": sha}, "voice": {"name": "v", "weights_id": "random (seed 0)"}},
              "weights": {"description": "face: InceptionResnetV1 VGGFace2 (x.pt, cached); voice: RANDOM"}}
    ckpt = _with_encoders(small_checkpoint, tmp_path / "pre", source)
    card = json.loads((ckpt / "config.json").read_text())
    assert encoder_mismatch(card, resolve_weights("random")) == (
        "checkpoint was trained on face features of InceptionResnetV1 VGGFace2 (x.pt, cached) (sha256:abababababab...); "
        "the loaded face encoder is RANDOM (untrained InceptionResnetV1) (random (seed 0)) - pass "
        "--allow-encoder-mismatch (allow_encoder_mismatch=True in Python) to serve it anyway")
