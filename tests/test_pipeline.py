"""End-to-end tests of the inference pipeline on random encoders and generated media."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from faa_core.checkpoint import save_checkpoint
from faa_core.encoders import resample_to_16k
from faa_core.errors import (
    AudioTooLongError,
    AudioTooShortError,
    CheckpointError,
    NoFaceError,
    NonFiniteAudioError,
    SilentAudioError,
    TooManyFacesError,
    UnreadableMediaError,
    UnsupportedMediaError,
)
from faa_core.media import load_audio
from faa_core.model import FAAConfig, FAAModel
from faa_core.pipeline import MatchPipeline
from thread_fixtures import call_in_threads


@pytest.fixture(scope="module")
def pipeline(small_checkpoint, face_encoder, voice_encoder, random_weights):
    from faa_core.checkpoint import load_checkpoint

    model, card = load_checkpoint(small_checkpoint)
    return MatchPipeline(model, card, face_encoder, voice_encoder, random_weights, "small")


def test_scores_every_face_ranked(pipeline, speech_wav, face_image_path, group_image_path):
    result = pipeline(speech_wav, [face_image_path, group_image_path])
    n_group = result.images[1].faces
    assert result.images[0].faces == 1 and n_group >= 2
    assert len(result.faces) == 1 + n_group
    probs = [f.probability for f in result.faces]
    assert probs == sorted(probs, reverse=True)
    assert [f.rank for f in result.faces] == list(range(1, len(probs) + 1))
    t = len(result.voice_token_spans)
    for f in result.faces:
        assert 0.0 <= f.probability <= 1.0 and -1.0 <= f.cosine <= 1.0
        assert f.crop.shape == (160, 160, 3) and f.crop.dtype == np.uint8
        assert f.face_attention.shape == (8, 8)
        assert f.face_attention.sum() == pytest.approx(1.0, abs=1e-5)
        assert f.heatmap.shape == (160, 160)
        assert f.heatmap.min() == pytest.approx(0.0) and f.heatmap.max() == pytest.approx(1.0)
        assert f.voice_attention.shape == (t,)
        assert f.voice_attention.sum() == pytest.approx(1.0, abs=1e-5)
    assert set(result.timings) >= {"detection", "face_encoder", "voice_encoder", "fusion", "total"}
    json.dumps(result.to_dict())  # JSON-ready


def test_scores_equal_direct_model_call(pipeline, speech_wav, face_image_path):
    """The pipeline's numbers are the model's numbers on the encoders' features."""
    result = pipeline(speech_wav, [face_image_path])
    face = result.faces[0]
    rec = load_audio(speech_wav)
    voice = pipeline.voice_encoder.encode(resample_to_16k(rec.samples, rec.sample_rate))
    feats = pipeline.face_encoder.encode([face.crop])
    model = pipeline.model
    with torch.inference_mode():
        out = model.match(voice.embedding[None], feats.embeddings, voice.tokens[None], feats.tokens)
        cos = (model.embed_voice(voice.embedding[None]) * model.embed_face(feats.embeddings)).sum()
    assert face.probability == pytest.approx(float(FAAModel.match_probability(out.logits)[0]), abs=1e-5)
    assert face.cosine == pytest.approx(float(cos), abs=1e-5)


def test_encoders_run_once_per_call(pipeline, speech_wav, face_image_path, group_image_path, monkeypatch):
    calls = {"face": 0, "voice": 0}
    face_encode, voice_encode = pipeline.face_encoder.encode, pipeline.voice_encoder.encode

    def count_face(crops):
        calls["face"] += 1
        return face_encode(crops)

    def count_voice(wav):
        calls["voice"] += 1
        return voice_encode(wav)

    monkeypatch.setattr(pipeline.face_encoder, "encode", count_face)
    monkeypatch.setattr(pipeline.voice_encoder, "encode", count_voice)
    pipeline.face_cache.clear()  # earlier tests cached these photos
    pipeline(speech_wav, [face_image_path, group_image_path, face_image_path])
    assert calls == {"face": 1, "voice": 1}
    pipeline(speech_wav, [face_image_path, group_image_path])  # now every face comes from the cache
    assert calls == {"face": 1, "voice": 2}


def test_no_face_strict_names_the_image(pipeline, speech_wav, face_image_path, blank_image_path):
    with pytest.raises(NoFaceError, match=blank_image_path.name):
        pipeline(speech_wav, [face_image_path, blank_image_path])


def test_bad_images_reported_others_scored(pipeline, speech_wav, face_image_path, blank_image_path, tmp_path):
    text = tmp_path / "notes.jpg"
    text.write_text("not an image")
    result = pipeline(speech_wav, [blank_image_path, face_image_path, text], strict=False)
    assert len(result.faces) == 1 and result.faces[0].image_index == 1
    assert result.images[0].error_type == "NoFaceError" and blank_image_path.name in result.images[0].error
    assert result.images[2].error_type == "UnsupportedMediaError"
    assert result.images[1].error is None


def test_no_face_anywhere_raises_even_when_lenient(pipeline, speech_wav, blank_image_path):
    with pytest.raises(NoFaceError, match="no face to score"):
        pipeline(speech_wav, [blank_image_path], strict=False)


def test_too_many_faces(pipeline, speech_wav, face_image_path, group_image_path, monkeypatch):
    monkeypatch.setattr(pipeline, "max_faces", 2)
    with pytest.raises(TooManyFacesError, match="at most 2"):
        pipeline(speech_wav, [face_image_path, group_image_path])
    result = pipeline(speech_wav, [face_image_path, group_image_path], strict=False)
    assert len(result.faces) == 2
    assert any("at most 2" in w for w in result.warnings)


@pytest.mark.parametrize(
    "samples, error",
    [
        (np.zeros(32000, np.float32), SilentAudioError),
        (0.3 * np.ones(8000, np.float32), AudioTooShortError),
        (np.full(32000, np.nan, np.float32), NonFiniteAudioError),
    ],
)
def test_bad_audio_raises(pipeline, face_image_path, samples, error):
    with pytest.raises(error, match="the recording"):
        pipeline((16000, samples), [face_image_path])


def test_unreadable_audio_files(pipeline, face_image_path, speech_wav, tmp_path):
    cut = tmp_path / "cut.wav"
    cut.write_bytes(speech_wav.read_bytes()[:30])
    with pytest.raises((UnreadableMediaError, UnsupportedMediaError)):
        pipeline(cut, [face_image_path])
    with pytest.raises(UnsupportedMediaError):
        pipeline(face_image_path, [face_image_path])


def test_clipped_audio_scores_with_warning(pipeline, face_image_path, speech_wav):
    x, sr = sf.read(speech_wav, dtype="float32")
    loud = np.clip(x * 50, -1, 1)
    result = pipeline((sr, loud), [face_image_path])
    assert result.faces and any("clipped" in w for w in result.warnings)


def test_stereo_and_8k_audio(pipeline, face_image_path, speech_wav):
    x, sr = sf.read(speech_wav, dtype="float32")
    import torchaudio

    x8 = torchaudio.functional.resample(torch.from_numpy(x), sr, 8000).numpy()
    stereo = np.stack([x8, x8], axis=1)
    result = pipeline((8000, stereo), [face_image_path])
    assert result.voice_duration_s == pytest.approx(len(x) / sr, abs=0.01)


def test_concurrent_calls_match_sequential(pipeline, speech_wav, face_image_path, group_image_path):
    ref = pipeline(speech_wav, [face_image_path, group_image_path])
    out, errors = call_in_threads(lambda k: pipeline(speech_wav, [face_image_path, group_image_path]), 4)
    assert not errors
    for r in out:
        assert [f.probability for f in r.faces] == pytest.approx([f.probability for f in ref.faces], abs=1e-5)


def test_global_only_checkpoint(tmp_path, face_encoder, voice_encoder, random_weights, speech_wav, face_image_path):
    cfg = FAAConfig(face_token_dim=0, voice_token_dim=0, d_model=32, n_heads=2, n_layers=1, proj_hidden=32, embed_dim=16)
    model = FAAModel(cfg).eval()
    result = MatchPipeline(model, {}, face_encoder, voice_encoder, random_weights)(speech_wav, [face_image_path])
    assert result.faces[0].heatmap is None and result.faces[0].voice_attention is None
    assert 0.0 <= result.faces[0].probability <= 1.0


def test_checkpoint_with_other_encoder_dims_refused(face_encoder, voice_encoder, random_weights):
    model = FAAModel(FAAConfig(face_dim=64, voice_dim=32, face_token_dim=16, voice_token_dim=8, d_model=32, n_heads=2))
    with pytest.raises(CheckpointError, match="face_dim 64"):
        MatchPipeline(model, {}, face_encoder, voice_encoder, random_weights, "tiny")


def test_from_checkpoint_random_weights_warns(small_checkpoint, speech_wav, face_image_path):
    pipe = MatchPipeline.from_checkpoint(small_checkpoint, weights="random")
    assert pipe.random_encoders and pipe.synthetic_checkpoint
    assert any("RANDOM" in w for w in pipe.model_warnings())
    assert any("SYNTHETIC" in w for w in pipe.model_warnings())
    pipe.warmup()
    assert pipe(speech_wav, [face_image_path]).faces


def test_too_thin_image_reported_good_photo_scored(pipeline, speech_wav, face_image_path, tmp_path):
    """A 100000 x 16 PNG (5 kB) crashed detection with torch.cat; now it is one image's message."""
    from PIL import Image

    thin = tmp_path / "strip.png"
    Image.new("RGB", (100_000, 16), (90, 120, 160)).save(thin)
    assert thin.stat().st_size < 20_000
    result = pipeline(speech_wav, [thin, face_image_path], strict=False)
    assert [f.image_index for f in result.faces] == [1]
    assert result.images[0].error_type == "ImageTooThinError"
    assert result.images[0].error.startswith("image strip.png: the image (100000x16 pixels) is too thin")
    with pytest.raises(NoFaceError, match="strip.png"):
        pipeline(speech_wav, [thin, face_image_path])


def test_header_duration_limit_is_the_pipelines(pipeline, face_image_path, tmp_path):
    """A long file is refused from its header at the pipeline's own limit (60 s), before decoding."""
    long = tmp_path / "long.flac"
    sf.write(str(long), np.full(61 * 8000, 0.1, np.float32), 8000, format="FLAC")
    with pytest.raises(AudioTooLongError, match=r"61\.0 s \(from its header\); the limit is 60 s"):
        pipeline(long, [face_image_path])


def test_result_json_is_always_valid_json(pipeline, speech_wav, face_image_path):
    """Non-finite numbers become null: json.dumps would otherwise write bare NaN (invalid JSON)."""
    from faa_core.pipeline import json_safe

    result = pipeline(speech_wav, [face_image_path])
    result.faces[0].probability = float("nan")
    result.faces[0].cosine = float("inf")
    result.timings["total"] = float("-inf")
    text = json.dumps(result.to_dict(), allow_nan=False)
    out = json.loads(text)
    assert out["faces"][0]["probability"] is None and out["faces"][0]["cosine"] is None
    assert out["timings_s"]["total"] is None
    assert json_safe({"a": [np.float32("nan"), 1.5, (2, np.float64(3.0))]}) == {"a": [None, 1.5, [2, 3.0]]}


SHARED_MEDIA = Path(__file__).resolve().parents[2] / "shared" / "data" / "media"


def _iou(a, b) -> float:
    x1, y1, x2, y2 = max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, x2 - x1) * max(0.0, y2 - y1)
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


@pytest.mark.skipif(not SHARED_MEDIA.is_dir(), reason="../shared/data/media is absent")
def test_match_detector_keeps_every_face_of_the_real_photos(random_weights, face_encoder):
    """The pipeline's smaller pyramid (MATCH_MIN_FACE_SIZE) finds every face the full one finds.

    Tolerance: box IoU >= 0.8 with the full pyramid's box, face probability within 0.02,
    no extra faces. Photos: the press photos and every 40th VoxCeleb face image.
    """
    from faa_core.encoders import FaceEncoder
    from faa_core.media import load_image
    from faa_core.pipeline import MATCH_MIN_FACE_SIZE

    tuned = FaceEncoder(random_weights.face, min_face_size=MATCH_MIN_FACE_SIZE)
    assert tuned.detector.min_face_size > face_encoder.detector.min_face_size
    photos = sorted((SHARED_MEDIA / "photos").glob("*.jpg"))
    photos += sorted((SHARED_MEDIA / "voxceleb_subset").rglob("*.jpg"))[::40]
    assert len(photos) >= 4
    faces = 0
    for path in photos:
        image = load_image(path)
        ref, got = face_encoder.detect(image), tuned.detect(image)
        assert len(got) == len(ref), path.name
        for f in ref:
            best = max(got, key=lambda g: _iou(f.box, g.box))
            assert _iou(f.box, best.box) >= 0.8, path.name
            assert best.probability == pytest.approx(f.probability, abs=0.02), path.name
        faces += len(ref)
    assert faces >= len(photos)  # every one of these photos shows a face


def test_bf16_encoders_stay_within_the_stated_tolerance(small_checkpoint, speech_wav, group_image_path,
                                                        face_image_path, monkeypatch):
    """precision="bf16" (``auto`` where native) against fp32: the same faces and boxes (detection stays
    fp32), probabilities within 0.005 and cosines within 0.005 of the aligned embeddings."""
    import faa_core.device as dev

    monkeypatch.setattr(dev, "native_bf16", lambda device: True)  # bf16 is emulated, slowly, where it is not
    ref = MatchPipeline.from_checkpoint(small_checkpoint, weights="random", precision="fp32")
    half = MatchPipeline.from_checkpoint(small_checkpoint, weights="random", precision="bf16")
    assert ref.voice_encoder.precision == torch.float32 and half.face_encoder.precision == torch.bfloat16
    images = [group_image_path, face_image_path]
    a, b = ref(speech_wav, images), half(speech_wav, images)
    key = lambda f: (f.image_index, f.face_index)  # noqa: E731
    fa, fb = sorted(a.faces, key=key), sorted(b.faces, key=key)
    assert [key(f) for f in fa] == [key(f) for f in fb] and len(fa) == 3
    for x, y in zip(fa, fb):
        assert x.box == y.box
        assert abs(x.probability - y.probability) <= 0.005
        assert abs(x.cosine - y.cosine) <= 0.005


def test_cold_request_shares_the_threads_between_the_encoders(pipeline, speech_wav, face_image_path, monkeypatch):
    """With photo work to do, the voice encoder runs beside it on half the intra-op threads and the photos'
    work on the rest; with every photo cached, the voice gets them all (it runs alone)."""
    import faa_core.pipeline as pl

    seen = []
    real = pl.intra_op_threads

    def spy(n):
        seen.append(n)
        return real(n)

    monkeypatch.setattr(pl, "intra_op_threads", spy)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        pipeline.face_cache.clear()
        pipeline(speech_wav, [face_image_path])
        assert sorted(seen) == [1, 1]  # the face work in this thread, the voice in the worker
        seen.clear()
        pipeline(speech_wav, [face_image_path])  # photos cached: the voice alone, on all threads
        assert seen == [0, 0]
    finally:
        torch.set_num_threads(threads)
