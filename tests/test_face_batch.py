"""FaceEncoder.detect_batch: per image exactly what detect gives, with failures confined to their image."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from faa_core.media import load_image
from media_fixtures import draw_face

BACKGROUND = (200, 210, 220)


def _canvas(size: tuple[int, int], lefts: tuple[int, ...], face: int = 200) -> Image.Image:
    canvas = Image.new("RGB", size, BACKGROUND)
    for left in lefts:
        canvas.paste(draw_face(face), (left, 20))
    return canvas


def _same(a, b) -> None:
    assert len(a) == len(b)
    for fa, fb in zip(a, b):
        np.testing.assert_allclose(fa.box, fb.box, atol=1e-3)
        assert fa.probability == pytest.approx(fb.probability, abs=1e-5)
        assert np.array_equal(fa.crop, fb.crop)


def test_batch_equals_detect_per_image(face_encoder, face_image_path, blank_image_path):
    images = [
        _canvas((640, 260), (20, 330)),  # two faces
        load_image(face_image_path),
        _canvas((640, 260), (220,)),  # same size as the first: one MTCNN call for both
        load_image(blank_image_path),
        _canvas((1600, 650), (100, 800), face=500),  # detected on a shrunk copy
    ]
    got = face_encoder.detect_batch(images)
    assert len(got) == len(images)
    counts = [len(g.faces) for g in got]
    assert counts[0] == 2 and counts[2] == 1 and counts[3] == 0 and counts[4] == 2
    for image, result in zip(images, got):
        assert result.error is None
        _same(result.faces, face_encoder.detect(image))


def test_one_bad_image_does_not_fail_the_others(face_encoder, monkeypatch):
    good = [_canvas((640, 260), (20,)), _canvas((640, 260), (330,))]
    bad = Image.new("RGB", (640, 260), BACKGROUND)
    real = face_encoder.detector.detect

    blank = torch.from_numpy(np.asarray(bad))

    def detect(imgs, *args, **kwargs):  # imgs: the (N, H, W, 3) batch of detection copies
        if any(torch.equal(im, blank) for im in imgs):
            raise RuntimeError("detector cannot take this image")
        return real(imgs, *args, **kwargs)

    monkeypatch.setattr(face_encoder.detector, "detect", detect)
    got = face_encoder.detect_batch([good[0], bad, good[1]])
    assert [len(g.faces) for g in got] == [1, 0, 1]
    assert got[0].error is None and got[2].error is None
    assert isinstance(got[1].error, RuntimeError) and "cannot take" in str(got[1].error)
    _same(got[0].faces, face_encoder.detect(good[0]))


def test_empty_batch(face_encoder):
    assert face_encoder.detect_batch([]) == []
