"""Tests for faa_core.encoders.face: MTCNN detection on drawn faces and the InceptionResnetV1 features.

The encoder uses random weights (the session fixture); MTCNN's weights ship
inside facenet-pytorch, so detection is real.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from faa_core.encoders import FACE_DIM, FACE_GRID, FACE_TOKEN_DIM, DetectedFace, FaceFeatures
from faa_core.encoders.face import CROP_SIZE, crop_face
from faa_core.media import load_image
from media_fixtures import BACKGROUND, draw_face, face_photo


def _iou(a, b) -> float:
    x1, y1 = max(a[0], b[0]), max(a[1], b[1])
    x2, y2 = min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, x2 - x1) * max(0.0, y2 - y1)
    area = lambda r: (r[2] - r[0]) * (r[3] - r[1])  # noqa: E731
    return inter / (area(a) + area(b) - inter)


def _skin_box(left: float, top: float, size: float) -> list[float]:
    """Where draw_face's skin ellipse lies once the face is pasted at (left, top)."""
    s = size / 400
    return [left + 100 * s, top + 60 * s, left + 300 * s, top + 330 * s]


def _crops(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, CROP_SIZE, CROP_SIZE, 3), dtype=np.uint8)


def _standardise(crops: np.ndarray) -> torch.Tensor:
    return (torch.from_numpy(crops).permute(0, 3, 1, 2).float() - 127.5) / 128.0


@pytest.fixture(scope="module")
def face_image(face_image_path):
    return load_image(face_image_path)


@pytest.fixture(scope="module")
def detected(face_encoder, face_image):
    return face_encoder.detect(face_image)


# --------------------------------------------------------------------------- detection


def test_detect_one_face(detected, face_image, face_encoder):
    assert len(detected) == 1
    face = detected[0]
    assert isinstance(face, DetectedFace)
    assert face.probability > 0.95 and face.probability >= face_encoder.min_face_probability
    x1, y1, x2, y2 = face.box
    assert face.box.shape == (4,)
    assert 0 <= x1 < x2 <= face_image.width and 0 <= y1 < y2 <= face_image.height
    # the drawn face is pasted at (170, 90), 300 px
    assert _iou(face.box, _skin_box(170, 90, 300)) > 0.6
    assert face.crop.shape == (CROP_SIZE, CROP_SIZE, 3) and face.crop.dtype == np.uint8


def test_detect_crop_is_cut_from_the_box(detected, face_image):
    face = detected[0]
    assert np.array_equal(face.crop, crop_face(face_image, face.box))
    # the crop shows skin in the middle, not the blue background
    centre = face.crop[60:100, 60:100].reshape(-1, 3).mean(axis=0)
    assert centre[0] > centre[2]


def test_detect_group_left_to_right(face_encoder, group_image_path):
    image = load_image(group_image_path)
    assert image.width >= 800
    faces = face_encoder.detect(image)
    assert len(faces) == 2
    xs = [f.box[0] for f in faces]
    assert xs == sorted(xs)
    # each face is the one drawn at that place (group_photo: 960 px, 2 faces of 300 px, gap 120)
    for face, left in zip(faces, (120, 540)):
        assert _iou(face.box, _skin_box(left, 50, 300)) > 0.5
        assert face.probability >= face_encoder.min_face_probability
        assert face.crop.shape == (CROP_SIZE, CROP_SIZE, 3)
    assert faces[0].box[2] < faces[1].box[0]


def test_detect_three_faces_sorted(face_encoder):
    canvas = Image.new("RGB", (960, 420), BACKGROUND)
    for left in (640, 20, 330):  # pasted out of order
        canvas.paste(draw_face(290), (left, 60))
    faces = face_encoder.detect(canvas)
    assert len(faces) == 3
    assert [f.box[0] for f in faces] == sorted(f.box[0] for f in faces)
    for face, left in zip(faces, (20, 330, 640)):
        assert _iou(face.box, _skin_box(left, 60, 290)) > 0.5


def test_detect_blank_image(face_encoder, blank_image_path):
    assert face_encoder.detect(load_image(blank_image_path)) == []


def test_detect_uniform_image(face_encoder):
    assert face_encoder.detect(Image.new("RGB", (320, 240), (128, 128, 128))) == []


def test_detect_large_image_uses_downscaled_copy(face_encoder, face_image, detected, monkeypatch):
    big = face_image.resize((2400, 1800), Image.BICUBIC)
    seen = []
    original = face_encoder.detector.detect

    def spy(img, *args, **kwargs):
        seen.append(tuple(img.shape))
        return original(img, *args, **kwargs)

    monkeypatch.setattr(face_encoder.detector, "detect", spy)
    faces = face_encoder.detect(big)
    assert seen == [(1, 480, 640, 3)]  # detection ran on the copy scaled to detect_max_side
    assert len(faces) == 1
    box = faces[0].box
    assert 0 <= box[0] < box[2] <= 2400 and 0 <= box[1] < box[3] <= 1800
    # in original coordinates: 3.75 x the box found on the 640 x 480 image
    scaled = detected[0].box * 3.75
    assert np.abs(box - scaled).max() < 0.05 * (scaled[2] - scaled[0])
    assert _iou(box, [v * 3.75 for v in _skin_box(170, 90, 300)]) > 0.6
    # the crop is cut from the full-resolution original
    assert np.array_equal(faces[0].crop, crop_face(big, box))


def test_detect_small_image_is_not_rescaled(face_encoder, face_image, monkeypatch):
    seen = []
    original = face_encoder.detector.detect

    def spy(img, *args, **kwargs):
        seen.append(img)
        return original(img, *args, **kwargs)

    monkeypatch.setattr(face_encoder.detector, "detect", spy)
    face_encoder.detect(face_image)
    assert torch.equal(seen[0][0], torch.from_numpy(np.asarray(face_image)))  # the original's own pixels


@pytest.mark.parametrize("offset", [(-80, 90), (170, -100)])
def test_detect_face_cut_by_the_border(face_encoder, offset):
    """MTCNN's box may reach outside the photo; the crop is clamped to the photo and still 160 x 160."""
    canvas = Image.new("RGB", (640, 480), BACKGROUND)
    canvas.paste(draw_face(300), offset)
    faces = face_encoder.detect(canvas)
    assert len(faces) == 1
    face = faces[0]
    assert face.box[2] > 0 and face.box[3] > 0 and face.box[0] < 640 and face.box[1] < 480
    assert face.crop.shape == (CROP_SIZE, CROP_SIZE, 3) and face.crop.dtype == np.uint8
    assert np.array_equal(face.crop, crop_face(canvas, face.box))


# --------------------------------------------------------------------------- crop_face


def test_crop_face_size_margin_and_clamping():
    img = Image.fromarray(np.random.default_rng(0).integers(0, 256, (200, 300, 3), dtype=np.uint8))
    box = np.array([50.0, 40.0, 150.0, 160.0])
    plain = crop_face(img, box)
    assert plain.shape == (CROP_SIZE, CROP_SIZE, 3) and plain.dtype == np.uint8
    expected = np.asarray(img.crop((50, 40, 150, 160)).resize((CROP_SIZE, CROP_SIZE), Image.BILINEAR))
    assert np.array_equal(plain, expected)
    assert not np.array_equal(crop_face(img, box, margin=32), plain)
    outside = crop_face(img, np.array([-30.0, -20.0, 80.0, 90.0]), size=64)
    assert outside.shape == (64, 64, 3)
    edge = crop_face(img, np.array([250.0, 150.0, 330.0, 230.0]), margin=20)
    assert edge.shape == (CROP_SIZE, CROP_SIZE, 3)


# --------------------------------------------------------------------------- encoding


def test_encode_shapes_and_norm(face_encoder, detected):
    out = face_encoder.encode([detected[0].crop, _crops(1)[0]])
    assert isinstance(out, FaceFeatures)
    assert out.embeddings.shape == (2, FACE_DIM)
    assert out.tokens.shape == (2, FACE_GRID[0] * FACE_GRID[1], FACE_TOKEN_DIM) == (2, 64, 896)
    assert out.embeddings.dtype == torch.float32
    torch.testing.assert_close(out.embeddings.norm(dim=1), torch.ones(2), atol=1e-5, rtol=0)
    assert torch.isfinite(out.tokens).all()
    assert not out.embeddings.requires_grad


def test_encode_accepts_array_batch(face_encoder):
    crops = _crops(2, seed=3)
    a = face_encoder.encode(crops)
    b = face_encoder.encode(list(crops))
    assert torch.equal(a.embeddings, b.embeddings) and torch.equal(a.tokens, b.tokens)


def test_embedding_equals_plain_network_forward(face_encoder):
    crops = _crops(2, seed=1)
    out = face_encoder.encode(crops)
    net = face_encoder.network
    assert not net.training and net.classify is False
    captured = {}
    handle = net.repeat_2.register_forward_hook(lambda m, i, o: captured.setdefault("map", o))
    try:
        with torch.no_grad():
            ref = net(_standardise(crops))  # facenet's own forward: normalised embedding
    finally:
        handle.remove()
    torch.testing.assert_close(out.embeddings, ref, atol=1e-5, rtol=1e-4)
    fmap = captured["map"]
    assert fmap.shape == (2, 896, 8, 8)
    tokens = fmap.flatten(2).transpose(1, 2)  # row-major over the grid
    torch.testing.assert_close(out.tokens, tokens, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(out.tokens[:, 8 * 2 + 5], fmap[:, :, 2, 5], atol=1e-5, rtol=1e-4)


def test_batch_equals_one_by_one(face_encoder):
    crops = _crops(3, seed=2)
    batch = face_encoder.encode(crops)
    for i in range(3):
        single = face_encoder.encode(crops[i : i + 1])
        torch.testing.assert_close(batch.embeddings[i : i + 1], single.embeddings, atol=1e-5, rtol=0)
        torch.testing.assert_close(batch.tokens[i : i + 1], single.tokens, atol=1e-5, rtol=1e-5)


def test_different_crops_give_different_embeddings(face_encoder):
    out = face_encoder.encode(_crops(2, seed=4))
    assert not torch.allclose(out.embeddings[0], out.embeddings[1], atol=1e-4)


@pytest.mark.parametrize(
    "crops",
    [
        np.zeros((2, 100, 100, 3), np.uint8),
        np.zeros((1, 160, 160), np.uint8),
        np.zeros((1, 160, 160, 4), np.uint8),
        np.zeros((1, 3, 160, 160), np.uint8),
        np.zeros((160, 160, 3), np.uint8),  # one crop not wrapped in a batch
    ],
)
def test_bad_crop_shape(face_encoder, crops):
    with pytest.raises(ValueError):
        face_encoder.encode(crops)


def test_empty_or_ragged_crops(face_encoder):
    with pytest.raises(ValueError):
        face_encoder.encode([])
    with pytest.raises(ValueError):
        face_encoder.encode([np.zeros((160, 160, 3), np.uint8), np.zeros((100, 100, 3), np.uint8)])


def test_detect_then_encode_large_face_photo(face_encoder):
    photo = face_photo(1280, 960, 600)
    faces = face_encoder.detect(photo)
    assert len(faces) == 1
    out = face_encoder.encode([f.crop for f in faces])
    assert out.embeddings.shape == (1, 512)


def test_embed_image_from_path_and_no_face(face_encoder, face_image_path, blank_image_path):
    faces, feats = face_encoder.embed_image(face_image_path)
    assert len(faces) == 1 and feats.embeddings.shape == (1, 512)
    assert face_encoder.embed_image(blank_image_path) == ([], None)


# --------------------------------------------------------------------------- crops as facenet cuts them, odd shapes


@pytest.mark.parametrize("margin", [0, 20, 32])
def test_crop_face_equals_facenet_extract_face(margin):
    """Fractional boxes are cut as facenet-pytorch's extract_face cuts them (it truncates every edge)."""
    from facenet_pytorch.models.utils.detect_face import extract_face

    img = Image.fromarray(np.random.default_rng(1).integers(0, 256, (240, 320, 3), dtype=np.uint8))
    for box in ([50.6, 40.7, 150.8, 160.9], [10.2, 5.5, 300.7, 239.6], [-3.4, -2.2, 80.5, 90.5]):
        box = np.array(box, dtype=np.float32)
        theirs = extract_face(img, box, image_size=CROP_SIZE, margin=margin)  # float tensor (3, H, W), 0..255
        ours = crop_face(img, box, margin=margin)
        assert np.array_equal(ours, theirs.permute(1, 2, 0).numpy().astype(np.uint8))


@pytest.mark.parametrize("size", [(100_000, 16), (16, 100_000), (5000, 19), (100_000, 40)])
def test_too_thin_images_say_so(face_encoder, size):
    """MTCNN's pyramid is empty below 20 px on the short side (torch.cat crashed on these)."""
    from faa_core.errors import ImageTooThinError, NoFaceError

    with pytest.raises(ImageTooThinError, match=rf"{size[0]}x{size[1]} pixels\) is too thin") as info:
        face_encoder.detect(Image.new("RGB", size, BACKGROUND))
    assert isinstance(info.value, NoFaceError)
    [entry] = face_encoder.detect_batch([Image.new("RGB", size, BACKGROUND)])
    assert entry.faces == [] and isinstance(entry.error, ImageTooThinError)


def test_elongated_image_keeps_the_detector_minimum(face_encoder, monkeypatch):
    """A 20000 x 100 strip is searched on a 4000 x 20 copy (not 640 x 3) and gives no error."""
    seen = []
    original = face_encoder.detector.detect
    monkeypatch.setattr(face_encoder.detector, "detect", lambda img, *a, **k: seen.append(tuple(img.shape)) or original(img, *a, **k))
    assert face_encoder.detect(Image.new("RGB", (20_000, 100), BACKGROUND)) == []
    assert seen == [(1, 20, 4000, 3)]


def test_panorama_with_a_face_is_still_found(face_encoder):
    wide = Image.new("RGB", (6000, 200), BACKGROUND)
    wide.paste(draw_face(200), (2900, 0))
    faces = face_encoder.detect(wide)  # copy 640 x 21: too small for this face, but no crash
    assert isinstance(faces, list)


def test_exif_rotated_phone_photo_is_detected(face_encoder, tmp_path):
    upright = face_photo(640, 480, 300)
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / "phone.jpg"
    upright.transpose(Image.Transpose.ROTATE_90).save(path, format="JPEG", quality=95, exif=exif.tobytes())
    faces, feats = face_encoder.embed_image(path)
    assert len(faces) == 1 and feats is not None


def test_channels_last_detector_equals_facenets_mtcnn(face_encoder, group_image_path):
    """The detector's nets run channels-last (faster on CPU); boxes and probabilities equal facenet's own MTCNN."""
    from facenet_pytorch import MTCNN

    from faa_core.encoders.face import ChannelsLast

    assert all(isinstance(getattr(face_encoder.detector, n), ChannelsLast) for n in ("pnet", "rnet", "onet"))
    plain = MTCNN(keep_all=True, min_face_size=face_encoder.detector.min_face_size).eval()
    image = load_image(group_image_path)
    got_boxes, got_probs = face_encoder.detector.detect(image)
    ref_boxes, ref_probs = plain.detect(image)
    got_boxes, ref_boxes = np.asarray(got_boxes, float), np.asarray(ref_boxes, float)
    assert got_boxes.shape == ref_boxes.shape and len(ref_boxes) >= 2
    np.testing.assert_allclose(got_boxes, ref_boxes, atol=1e-3, rtol=0)
    np.testing.assert_allclose(np.asarray(got_probs, float), np.asarray(ref_probs, float), atol=1e-5, rtol=0)


def test_detector_input_gives_the_boxes_of_pil_input(face_encoder, group_image_path, face_image):
    """The channels-first view handed to MTCNN (faster resampling) finds exactly what PIL input finds."""
    from faa_core.encoders.face import detector_input

    group = load_image(group_image_path)
    images = [group, group.transpose(Image.Transpose.FLIP_LEFT_RIGHT)]
    view = detector_input(images)
    assert view.shape == (2, 400, 960, 3) and view.permute(0, 3, 1, 2).is_contiguous()
    got_boxes, got_probs = face_encoder.detector.detect(view)
    ref_boxes, ref_probs = face_encoder.detector.detect(images)
    assert [len(b) for b in ref_boxes] == [2, 2]
    for g, r, gp, rp in zip(got_boxes, ref_boxes, got_probs, ref_probs):
        assert np.array_equal(np.asarray(g, float), np.asarray(r, float))
        assert np.array_equal(np.asarray(gp, float), np.asarray(rp, float))
    gray = detector_input([face_image.convert("L")])  # any mode is read as RGB
    assert torch.equal(gray[0], torch.from_numpy(np.asarray(face_image.convert("L").convert("RGB"))))


def test_bf16_encoder_stays_within_the_stated_tolerance(face_encoder):
    """bf16 convolutions (the app's choice where native): embeddings within cosine 1e-4, tokens within 2 %."""
    from faa_core.encoders import FaceEncoder

    half = FaceEncoder(face_encoder.weights, precision=torch.bfloat16)
    assert half.network.conv2d_1a.conv.weight.dtype == torch.bfloat16
    assert half.network.last_linear.weight.dtype == torch.float32
    crops = _crops(3, seed=5)
    ref, got = face_encoder.encode(crops), half.encode(crops)
    assert got.embeddings.dtype == got.tokens.dtype == torch.float32
    cos = (ref.embeddings * got.embeddings).sum(1)
    assert float(cos.min()) > 1 - 1e-4
    rel = (got.tokens - ref.tokens).norm() / ref.tokens.norm()
    assert 0 < float(rel) < 0.02  # really computed in bf16 (not equal), and close
    with pytest.raises(ValueError, match="precision"):
        FaceEncoder(face_encoder.weights, precision=torch.float16)


def test_channels_last_network_equals_default_layout(face_encoder):
    """The face network's channels-last run gives the default NCHW run's embeddings and tokens."""
    import copy

    crops = _crops(3, seed=4)
    out = face_encoder.encode(crops)
    plain = copy.deepcopy(face_encoder.network).to(memory_format=torch.contiguous_format)
    x = _standardise(crops).contiguous()
    with torch.no_grad():
        for name in ("conv2d_1a", "conv2d_2a", "conv2d_2b", "maxpool_3a", "conv2d_3b", "conv2d_4a", "conv2d_4b",
                     "repeat_1", "mixed_6a", "repeat_2"):
            x = getattr(plain, name)(x)
        assert x.is_contiguous()  # the reference really ran in the default layout
        tokens = x.flatten(2).transpose(1, 2)
        emb = plain.last_bn(plain.last_linear(plain.avgpool_1a(plain.block8(plain.repeat_3(plain.mixed_7a(x)))).flatten(1)))
    torch.testing.assert_close(out.tokens, tokens, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(out.embeddings, torch.nn.functional.normalize(emb, dim=1), atol=1e-5, rtol=1e-4)
