"""The face cache: LRU bounds, keys, memory accounting, thread safety, and the pipeline served from it."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from faa_core.encoders import DetectedFace
from faa_core.face_cache import CachedImage, FaceCache, content_key, encoder_identity
from faa_core.pipeline import MatchPipeline
from media_fixtures import synthetic_voice
from thread_fixtures import call_in_threads


def _entry(n_faces: int, features: bool = True) -> CachedImage:
    faces = tuple(
        DetectedFace(box=np.array([0.0, 0.0, 10.0, 10.0]), probability=0.99, crop=np.zeros((160, 160, 3), np.uint8))
        for _ in range(n_faces)
    )
    entry = CachedImage(faces)
    if features:
        entry = entry.with_features({j: (torch.zeros(512), torch.zeros(64, 896)) for j in range(n_faces)})
    return entry


def test_lru_evicts_least_recently_used():
    cache = FaceCache(2)
    a, b, c = _entry(1), _entry(1), _entry(0)
    cache.put("a", a)
    cache.put("b", b)
    assert cache.get("a") is a  # a is now the most recent
    cache.put("c", c)
    assert "b" not in cache and "a" in cache and "c" in cache
    assert cache.get("b") is None
    assert cache.stats()["hits"] == 1 and cache.stats()["misses"] == 1
    assert cache.peek("a") is cache.get("a") and cache.peek("zz") is None and cache.peek(None) is None
    assert cache.stats()["hits"] == 2 and cache.stats()["misses"] == 1  # peek counts nothing


def test_size_zero_keeps_nothing_and_none_key_is_never_stored():
    cache = FaceCache(0)
    cache.put("a", _entry(1))
    assert len(cache) == 0 and cache.get("a") is None
    cache = FaceCache(3)
    cache.put(None, _entry(1))
    assert len(cache) == 0
    with pytest.raises(ValueError, match="max_images"):
        FaceCache(-1)


def test_memory_per_face_as_documented():
    """Crop 76,800 B + embedding 2,048 B + tokens 229,376 B = 308,224 B per encoded face."""
    assert _entry(1).nbytes() == 308_224
    assert _entry(3).nbytes() == 3 * 308_224
    assert _entry(2, features=False).nbytes() == 2 * 76_800
    cache = FaceCache(4)
    cache.put("x", _entry(2))
    assert cache.stats()["bytes"] == 2 * 308_224 and cache.stats()["faces"] == 2


def test_with_features_leaves_the_original_unchanged():
    e = _entry(2, features=False)
    f = e.with_features({1: (torch.ones(512), torch.ones(64, 896))})
    assert not e.has_features(1) and f.has_features(1) and not f.has_features(0)


def test_content_key_by_bytes_and_identity(tmp_path, face_image_path, group_image_path):
    ident = "enc-A"
    k_path = content_key(face_image_path, ident)
    assert k_path == content_key(str(face_image_path), ident) == content_key(face_image_path.read_bytes(), ident)
    copy = tmp_path / "renamed.png"
    copy.write_bytes(face_image_path.read_bytes())
    assert content_key(copy, ident) == k_path  # the content, not the name
    assert content_key(group_image_path, ident) != k_path
    assert content_key(face_image_path, "enc-B") != k_path
    assert content_key(tmp_path / "missing.jpg", ident) is None
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    assert content_key(empty, ident) is None
    assert content_key(tmp_path, ident) is None
    assert content_key(12345, ident) is None
    arr = np.zeros((20, 30, 3), np.uint8)
    assert content_key(arr, ident) == content_key(arr.copy(), ident)
    arr2 = arr.copy()
    arr2[0, 0, 0] = 1
    assert content_key(arr2, ident) != content_key(arr, ident)
    img = Image.fromarray(arr)
    assert content_key(img, ident) == content_key(Image.fromarray(arr.copy()), ident)


def test_encoder_identity_follows_detection_settings(face_encoder, monkeypatch):
    before = encoder_identity(face_encoder)
    assert before == encoder_identity(face_encoder)
    monkeypatch.setattr(face_encoder.detector, "min_face_size", face_encoder.detector.min_face_size + 1)
    assert encoder_identity(face_encoder) != before
    monkeypatch.undo()
    monkeypatch.setattr(face_encoder, "margin", face_encoder.margin + 4)
    assert encoder_identity(face_encoder) != before


def test_cache_is_thread_safe():
    cache = FaceCache(8)

    def hammer(k: int) -> None:
        for i in range(400):
            key = f"{(i * 7 + k) % 13}"
            if cache.get(key) is None:
                cache.put(key, _entry(0))
            assert len(cache) <= 8

    _, errors = call_in_threads(hammer, 6)
    assert not errors and len(cache) == 8
    s = cache.stats()
    assert s["hits"] + s["misses"] == 6 * 400


# -- the pipeline with the cache ----------------------------------------------------------------
@pytest.fixture
def pipelines(small_checkpoint, face_encoder, voice_encoder, random_weights):
    """A pipeline with a fresh cache and one without a cache, on the same model and encoders."""
    from faa_core.checkpoint import load_checkpoint

    model, card = load_checkpoint(small_checkpoint)
    cached = MatchPipeline(model, card, face_encoder, voice_encoder, random_weights, "small", face_cache_size=8)
    plain = MatchPipeline(model, card, face_encoder, voice_encoder, random_weights, "small", face_cache_size=0)
    return cached, plain


def _assert_identical(a, b) -> None:
    assert [(f.image_index, f.face_index, f.rank) for f in a.faces] == [(f.image_index, f.face_index, f.rank) for f in b.faces]
    for fa, fb in zip(a.faces, b.faces):
        assert fa.probability == fb.probability and fa.cosine == fb.cosine
        assert fa.box == fb.box and fa.detection_probability == fb.detection_probability
        assert np.array_equal(fa.crop, fb.crop)
        assert np.array_equal(fa.face_attention, fb.face_attention)
        assert np.array_equal(fa.voice_attention, fb.voice_attention)
        assert np.array_equal(fa.heatmap, fb.heatmap)
    assert [vars(r) for r in a.images] == [vars(r) for r in b.images]


def test_cached_results_equal_uncached_exactly(pipelines, speech_wav, face_image_path, group_image_path):
    cached, plain = pipelines
    images = [face_image_path, group_image_path]
    other_voice = (16000, synthetic_voice(2.5, 16000, f0=210.0))
    first = cached(other_voice, images)
    assert first.face_cache == {"images_from_cache": 0, "faces_encoded": 3}
    again = cached(speech_wav, images)
    assert again.face_cache == {"images_from_cache": 2, "faces_encoded": 0}
    reference = plain(speech_wav, images)
    assert reference.face_cache == {"images_from_cache": 0, "faces_encoded": 3}
    _assert_identical(again, reference)
    _assert_identical(cached(other_voice, images), plain(other_voice, images))


def test_new_voice_on_cached_photos_runs_only_voice_and_fusion(pipelines, speech_wav, face_image_path, group_image_path, monkeypatch):
    cached, _ = pipelines
    reports = cached.prepare_images([face_image_path, group_image_path])
    assert [r.faces for r in reports] == [1, 2] and len(cached.face_cache) == 2

    def forbidden(*args, **kwargs):
        raise AssertionError("face work on cached photos")

    for name in ("detect", "detect_batch", "encode"):
        if hasattr(cached.face_encoder, name):
            monkeypatch.setattr(cached.face_encoder, name, forbidden)
    monkeypatch.setattr("faa_core.pipeline.load_image", forbidden)
    result = cached(speech_wav, [group_image_path, face_image_path])
    assert len(result.faces) == 3 and result.face_cache == {"images_from_cache": 2, "faces_encoded": 0}


def test_same_image_twice_in_one_call_is_detected_once(pipelines, speech_wav, face_image_path, monkeypatch):
    cached, plain = pipelines
    calls = []
    real = cached.face_encoder.detector.detect

    def counting(images, *args, **kwargs):  # images MTCNN searched, batched or one by one
        calls.extend(images)  # the (N, H, W, 3) batch: one entry per image
        return real(images, *args, **kwargs)

    monkeypatch.setattr(cached.face_encoder.detector, "detect", counting)
    result = cached(speech_wav, [face_image_path, face_image_path])
    assert len(calls) == 1 and len(result.faces) == 2
    calls.clear()
    ref = plain(speech_wav, [face_image_path, face_image_path])
    assert len(calls) == 2
    # MTCNN on a batch of two equal images places boxes ~1e-5 px apart from one image alone
    for a, b in zip(result.faces, ref.faces):
        np.testing.assert_allclose(a.box, b.box, atol=1e-3)
        assert a.probability == pytest.approx(b.probability, abs=1e-5)


def test_bad_and_faceless_images_reported_every_time(pipelines, speech_wav, face_image_path, blank_image_path, tmp_path):
    cached, _ = pipelines
    text = tmp_path / "notes.jpg"
    text.write_text("not an image")
    for _ in range(2):
        result = cached(speech_wav, [blank_image_path, face_image_path, text], strict=False)
        assert [r.error_type for r in result.images] == ["NoFaceError", None, "UnsupportedMediaError"]
        assert blank_image_path.name in result.images[0].error
    assert len(cached.face_cache) == 2  # the faceless photo (no faces) and the face; never the unreadable file


def test_lru_bound_holds_in_the_pipeline(small_checkpoint, face_encoder, voice_encoder, random_weights, speech_wav, tmp_path):
    from faa_core.checkpoint import load_checkpoint
    from media_fixtures import face_photo

    model, card = load_checkpoint(small_checkpoint)
    pipe = MatchPipeline(model, card, face_encoder, voice_encoder, random_weights, face_cache_size=2)
    paths = []
    for k in range(3):
        p = tmp_path / f"f{k}.png"
        img = face_photo(640, 480, 300)
        img.putpixel((0, 0), (k, k, k))  # different content, same face
        img.save(p)
        paths.append(p)
    pipe.prepare_images(paths)
    assert len(pipe.face_cache) == 2
    assert pipe(speech_wav, [paths[0]]).face_cache["images_from_cache"] == 0  # evicted
    assert pipe(speech_wav, [paths[2]]).face_cache["images_from_cache"] == 1


def test_concurrent_cold_calls_share_the_cache(pipelines, speech_wav, face_image_path, group_image_path):
    cached, plain = pipelines
    ref = plain(speech_wav, [face_image_path, group_image_path])
    out, errors = call_in_threads(lambda k: cached(speech_wav, [face_image_path, group_image_path]), 4)
    assert not errors
    for r in out:
        assert [f.probability for f in r.faces] == pytest.approx([f.probability for f in ref.faces], abs=1e-5)
    assert len(cached.face_cache) == 2
