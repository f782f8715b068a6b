"""The live microphone without a browser: when updates are due, what they rank, and that photos are encoded once."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

import app
from app_fixtures import random_pipeline


@pytest.fixture(scope="module")
def pipeline(small_checkpoint, face_encoder, voice_encoder, random_weights):
    return random_pipeline(small_checkpoint, face_encoder, voice_encoder, random_weights)


def _chunks(speech_wav, seconds: float = 0.5):
    """The speech file as a browser streams it: int16 pieces of ``seconds``."""
    x, rate = sf.read(speech_wav, dtype="int16")
    step = int(rate * seconds)
    return rate, [x[i:i + step] for i in range(0, len(x), step)]


def test_updates_once_a_second_after_the_first_second(pipeline, speech_wav, face_image_path, group_image_path, monkeypatch):
    files = [str(face_image_path), str(group_image_path)]
    pipeline.face_cache.clear()
    note = app.prepare_photos(pipeline, files, None)
    assert note.startswith("3 faces ready in 2 photo(s)")

    calls = {"detect": 0, "encode": 0}
    real_encode = pipeline.face_encoder.encode

    def count_encode(crops):
        calls["encode"] += 1
        return real_encode(crops)

    monkeypatch.setattr(pipeline.face_encoder, "encode", count_encode)
    rate, chunks = _chunks(speech_wav)
    live, due_at = None, []
    for k, chunk in enumerate(chunks):
        view, live = app.live_update(pipeline, live, (rate, chunk), files, None)
        if view is not None:
            due_at.append(k)
            assert view.summary["ok"] and len(view.summary["faces"]) == 3
            assert view.summary["live"]["update"] == len(due_at) and not view.summary["live"]["final"]
            assert "heard so far" in view.status
            assert view.bars.startswith("<svg") and view.voice_plot.startswith("<svg") and len(view.gallery) == 3
    # chunks of 0.5 s (the last one shorter): the first ranking at 1.0 s, then after every further 1.0 s
    full = len(chunks) - 1
    assert len(chunks[0]) == rate // 2 and 0 < len(chunks[-1]) <= rate // 2 and full >= 6
    assert due_at == list(range(1, full, 2))
    view, live = app.live_update(pipeline, live, None, files, None, final=True)
    assert view is not None  # the audio after the last update is ranked when the recording stops
    if view is not None:
        assert view.summary["live"]["final"] and "Recording stopped" in view.status
        assert view.summary["voice"]["duration_s"] == pytest.approx(live.seconds, abs=1e-3)
    # stopped again with nothing new since (the stop can arrive right after the last update): the page is
    # still told the recording stopped, with the same ranking
    again, live = app.live_update(pipeline, live, None, files, None, final=True)
    assert again is not None and "Recording stopped" in again.status and again.summary["live"]["final"]
    assert [(f["label"], f["probability"]) for f in again.summary["faces"]] == \
        [(f["label"], f["probability"]) for f in view.summary["faces"]]
    assert calls["encode"] == 0  # every update took the faces from the cache


def test_stopping_under_a_second_explains_the_short_recording(pipeline, speech_wav, face_image_path):
    rate, chunks = _chunks(speech_wav)
    view, live = app.live_update(pipeline, None, (rate, chunks[0]), [str(face_image_path)], None)
    assert view is None  # 0.5 s: no ranking yet while recording
    view, live = app.live_update(pipeline, live, None, [str(face_image_path)], None, final=True)
    assert view is not None and view.status.startswith("**Recording stopped**")
    assert view.summary["error_types"] == ["AudioTooShortError"] and not view.summary["ok"]


def test_stopping_without_any_audio_says_so(pipeline, face_image_path):
    view, live = app.live_update(pipeline, None, None, [str(face_image_path)], None, final=True)
    assert view is not None and view.status.startswith(f"**Recording stopped**: {app.NO_LIVE_AUDIO}")
    assert view.summary["error_types"] == ["MissingInput"] and view.summary["live"]["final"]
    assert live.seconds == 0.0


def test_nothing_before_a_second_and_bad_audio_explained(pipeline, face_image_path):
    files = [str(face_image_path)]
    quiet = np.zeros(8000, np.int16)
    view, live = app.live_update(pipeline, None, (16000, quiet), files, None)
    assert view is None and live.seconds == pytest.approx(0.5)
    view, live = app.live_update(pipeline, live, (16000, quiet), files, None)
    assert view is not None and not view.summary["ok"]
    assert view.summary["error_types"] == ["SilentAudioError"] and "silent" in view.status


def test_long_live_recording_keeps_its_last_minute(pipeline, face_image_path):
    rate = 8000
    rng = np.random.default_rng(0)
    live = app.LiveRecording()
    for _ in range(62):
        live.add((rate, (rng.standard_normal(rate) * 3000).astype(np.int16)), keep_seconds=pipeline.max_audio_s)
    rec = live.recording(pipeline.max_audio_s)
    assert live.seconds == pytest.approx(62.0) and rec.duration_s == pytest.approx(pipeline.max_audio_s)
    # only the scoring window is held: an open microphone does not grow the session's memory
    assert sum(len(c) for c in live.chunks) == int(pipeline.max_audio_s) * rate


def test_prepare_photos_reports_photos_without_faces(pipeline, face_image_path, blank_image_path):
    note = app.prepare_photos(pipeline, [str(face_image_path), str(blank_image_path)], None)
    assert note == f"1 face ready in 1 photo(s); no usable face in: {blank_image_path.name}"
    assert app.prepare_photos(pipeline, [], None) == ""


@pytest.mark.parametrize("chunk, error_type, words", [
    ((16000, np.ones((8000, 1, 1), np.int16)), "UnsupportedMediaError", "is not mono or stereo"),
    ((16000, np.array(["a"] * 8000, dtype=object)), "UnsupportedMediaError", "unsupported sample dtype"),
    (("fast", np.ones(8000, np.int16)), "UnsupportedMediaError", "is not a number of samples per second"),
    ((10**12, np.ones(8000, np.int16)), "SampleRateError", "at most 192000 Hz"),
    ("/etc/hostname", "UnsupportedMediaError", "must be a (sample rate, samples) pair"),
])
def test_a_chunk_that_is_not_audio_is_explained_and_the_recording_kept(pipeline, face_image_path, chunk, error_type,
                                                                       words):
    files = [str(face_image_path)]
    rng = np.random.default_rng(0)
    speech = (rng.standard_normal(8000) * 3000).astype(np.int16)
    _, live = app.live_update(pipeline, None, (16000, speech), files, None)
    view, live = app.live_update(pipeline, live, chunk, files, None)
    assert view.summary["error_types"] == [error_type] and not view.summary["ok"]
    assert words in view.status and live.seconds == pytest.approx(0.5)  # the bad chunk left nothing behind
    view, live = app.live_update(pipeline, live, (16000, speech), files, None)
    assert view.summary["ok"] and live.seconds == pytest.approx(1.0)  # and the next good one is ranked


def test_stereo_chunks_join_mono_ones(pipeline, face_image_path):
    """A microphone that switches to two channels mid-recording is averaged to mono, as a stereo upload is."""
    rng = np.random.default_rng(1)
    mono = (rng.standard_normal(8000) * 3000).astype(np.int16)
    stereo = np.stack([mono, np.zeros_like(mono)], axis=1)
    _, live = app.live_update(pipeline, None, (16000, mono), [str(face_image_path)], None)
    view, live = app.live_update(pipeline, live, (16000, stereo), [str(face_image_path)], None)
    assert view.summary["ok"] and live.seconds == pytest.approx(1.0)
    rec = live.recording(pipeline.max_audio_s)
    np.testing.assert_array_equal(rec.samples, np.concatenate([mono / 32768.0, mono / 65536.0]).astype(np.float32))
