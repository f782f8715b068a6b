"""Shared fixtures: media made on the fly, random-weight encoders (built once), a small checkpoint.

Nothing is downloaded: the Hugging Face Hub is put in offline mode before any
import of huggingface_hub, and the encoders use ``weights="random"``.
"""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"

from pathlib import Path

import pytest
import torch

from media_fixtures import blank_photo, draw_face, face_photo, group_photo, write_speech  # noqa: E402,F401
from model_fixtures import SMALL_CONFIG, SMALL_TRAINED_ON, make_small_model  # noqa: E402,F401


@pytest.fixture(scope="session")
def media_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("media")


@pytest.fixture(scope="session")
def speech_wav(media_dir) -> Path:
    """~3.7 s of espeak-ng speech, 22050 Hz mono WAV (synthetic voiced signal without espeak-ng)."""
    return write_speech(media_dir / "speech.wav")


@pytest.fixture(scope="session")
def face_image_path(media_dir) -> Path:
    """640x480 PNG with one drawn face of 300 px that MTCNN detects."""
    path = media_dir / "face.png"
    face_photo(640, 480, 300).save(path)
    return path


@pytest.fixture(scope="session")
def group_image_path(media_dir) -> Path:
    """960x400 PNG with two drawn faces side by side (different skin tones)."""
    path = media_dir / "group.png"
    group_photo().save(path)
    return path


@pytest.fixture(scope="session")
def blank_image_path(media_dir) -> Path:
    """640x480 PNG with a gradient and shapes, no face."""
    path = media_dir / "blank.png"
    blank_photo(640, 480).save(path)
    return path


@pytest.fixture(scope="session")
def random_weights():
    from faa_core.encoders import resolve_weights

    return resolve_weights("random")


@pytest.fixture(scope="session")
def face_encoder(random_weights):
    from faa_core.encoders import FaceEncoder

    return FaceEncoder(random_weights.face)


@pytest.fixture(scope="session")
def voice_encoder(random_weights):
    from faa_core.encoders import VoiceEncoder

    return VoiceEncoder(random_weights.voice)


@pytest.fixture(scope="session")
def small_checkpoint(tmp_path_factory) -> Path:
    """A saved FAA checkpoint folder of a small, randomly initialised model (do not modify it)."""
    from faa_core.checkpoint import save_checkpoint

    with torch.random.fork_rng(devices=[]):
        model = make_small_model()
    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "small", model, trained_on=dict(SMALL_TRAINED_ON))
