"""Tests for faa_core.media: every supported input kind and a specific, named error for each bad one."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
import soundfile as sf
import torch
from PIL import Image

import faa_core.media as media
from faa_core.errors import (
    AudioError,
    AudioTooLongError,
    AudioTooShortError,
    EmptyAudioError,
    ImageTooLargeError,
    InputError,
    NonFiniteAudioError,
    SilentAudioError,
    UnreadableMediaError,
    UnsupportedMediaError,
)
from faa_core.media import Audio, check_audio, load_audio, load_image

RATE = 22050


def _png_bytes(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def _jpeg_bytes(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def _png_header(width: int, height: int) -> bytes:
    """A PNG signature plus a valid IHDR chunk claiming width x height (no pixel data)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def _voice(seconds: float = 2.0, rate: int = 16000, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (amp * np.sin(2 * np.pi * 220 * t) * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t))).astype(np.float32)


# --------------------------------------------------------------------------- load_image: inputs


def test_load_image_from_path_str_and_pathlike(face_image_path):
    for src in (face_image_path, str(face_image_path)):
        img = load_image(src)
        assert img.mode == "RGB"
        assert img.size == (640, 480)
    assert np.array_equal(np.asarray(load_image(face_image_path)), np.asarray(Image.open(face_image_path).convert("RGB")))


def test_load_image_from_bytes_and_bytearray(face_image_path):
    data = face_image_path.read_bytes()
    a = load_image(data)
    b = load_image(bytearray(data))
    assert a.mode == b.mode == "RGB" and a.size == (640, 480)
    assert np.array_equal(np.asarray(a), np.asarray(b))


def test_load_image_from_jpeg_bytes():
    img = Image.new("RGB", (64, 48), (10, 200, 30))
    out = load_image(_jpeg_bytes(img))
    assert out.size == (64, 48) and out.mode == "RGB"
    assert np.abs(np.asarray(out).astype(int) - [10, 200, 30]).max() < 8


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "L", "P", "CMYK"])
def test_load_image_from_pil_any_mode_gives_rgb(mode):
    img = Image.new("RGB", (40, 30), (200, 100, 50)).convert(mode)
    out = load_image(img)
    assert out.mode == "RGB" and out.size == (40, 30)


def test_load_image_from_uint8_arrays():
    rgb = np.random.default_rng(0).integers(0, 256, (30, 40, 3), dtype=np.uint8)
    out = load_image(rgb)
    assert out.mode == "RGB" and out.size == (40, 30)
    assert np.array_equal(np.asarray(out), rgb)
    rgba = np.concatenate([rgb, np.full((30, 40, 1), 7, np.uint8)], axis=-1)
    assert np.array_equal(np.asarray(load_image(rgba)), rgb)  # alpha dropped


def test_load_image_from_non_contiguous_array():
    rgb = np.random.default_rng(1).integers(0, 256, (40, 60, 3), dtype=np.uint8)
    view = rgb[:, ::2]  # (40, 30, 3), not contiguous
    assert np.array_equal(np.asarray(load_image(view)), view)


def test_load_image_from_float_arrays():
    unit = np.full((20, 20, 3), 0.5, np.float32)
    assert np.asarray(load_image(unit)).max() == 127  # [0, 1] floats are scaled by 255
    big = np.full((20, 20, 3), 200.0, np.float64)
    assert np.asarray(load_image(big)).max() == 200  # [0, 255] floats are kept
    over = np.full((20, 20, 3), 300.0)
    assert np.asarray(load_image(over)).max() == 255  # clipped


def test_load_image_grayscale_array_and_file(tmp_path):
    gray = np.tile(np.arange(32, dtype=np.uint8)[None] * 8, (24, 1))
    out = load_image(gray)
    assert out.mode == "RGB" and out.size == (32, 24)
    arr = np.asarray(out)
    assert np.array_equal(arr[..., 0], gray) and np.array_equal(arr[..., 1], gray) and np.array_equal(arr[..., 2], gray)
    path = tmp_path / "gray.png"
    Image.fromarray(gray, mode="L").save(path)
    assert np.array_equal(np.asarray(load_image(path)), arr)


def test_load_image_errors_are_input_errors_and_value_errors():
    assert issubclass(UnreadableMediaError, InputError) and issubclass(UnreadableMediaError, ValueError)
    assert issubclass(ImageTooLargeError, InputError)
    assert issubclass(SilentAudioError, AudioError) and issubclass(AudioError, InputError)


# --------------------------------------------------------------------------- load_image: errors


def test_load_image_missing_file(tmp_path):
    path = tmp_path / "nope.jpg"
    with pytest.raises(UnreadableMediaError, match="not found") as info:
        load_image(path)
    assert str(path) in str(info.value)


def test_load_image_directory(tmp_path):
    with pytest.raises(UnreadableMediaError, match="not a file") as info:
        load_image(tmp_path)
    assert str(tmp_path) in str(info.value)


def test_load_image_empty_file(tmp_path):
    path = tmp_path / "empty.png"
    path.write_bytes(b"")
    with pytest.raises(UnreadableMediaError, match="empty") as info:
        load_image(path)
    assert str(path) in str(info.value)


def test_load_image_truncated_jpeg(tmp_path, face_image_path):
    data = _jpeg_bytes(Image.open(face_image_path))
    path = tmp_path / "cut.jpg"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(UnreadableMediaError, match="truncated or corrupt") as info:
        load_image(path)
    assert str(path) in str(info.value)
    with pytest.raises(UnreadableMediaError, match="upload.jpg"):
        load_image(data[: len(data) // 2], name="upload.jpg")


def test_load_image_truncated_png(face_image_path):
    data = face_image_path.read_bytes()
    with pytest.raises(UnreadableMediaError):
        load_image(data[: len(data) // 2], name="cut.png")


def test_load_image_text_file_renamed_jpg(tmp_path):
    path = tmp_path / "notes.jpg"
    path.write_text("this is a text file, not a photo\n" * 10)
    with pytest.raises(UnsupportedMediaError, match="not an image format") as info:
        load_image(path)
    assert str(path) in str(info.value)


def test_load_image_bytes_label_without_name():
    with pytest.raises(UnsupportedMediaError, match="<bytes>"):
        load_image(b"definitely not an image" * 4)


@pytest.mark.parametrize("src", [42, 3.5, None, ["a.jpg"], {"path": "a.jpg"}, object()])
def test_load_image_unsupported_python_type(src):
    with pytest.raises(UnsupportedMediaError, match="cannot read a") as info:
        load_image(src)
    assert type(src).__name__ in str(info.value)


@pytest.mark.parametrize(
    "arr",
    [
        np.zeros((20, 20, 2), np.uint8),  # two channels
        np.zeros((20, 20, 3, 1), np.uint8),  # 4-D
        np.zeros((20,), np.uint8),  # 1-D
    ],
)
def test_load_image_bad_array_shapes(arr):
    with pytest.raises(UnsupportedMediaError, match="shape"):
        load_image(arr, name="frame")


@pytest.mark.parametrize("dtype", [np.uint16, np.int32, np.int64, np.bool_])
def test_load_image_bad_array_dtype(dtype):
    with pytest.raises(UnsupportedMediaError, match="dtype"):
        load_image(np.zeros((20, 20, 3), dtype))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_load_image_float_array_with_nonfinite(bad):
    arr = np.zeros((20, 20, 3), np.float32)
    arr[3, 4, 1] = bad
    with pytest.raises(UnsupportedMediaError, match="NaN or infinite"):
        load_image(arr, name="webcam frame")


def test_load_image_too_large_file_path_bytes_pil_array(tmp_path, monkeypatch, face_image_path):
    monkeypatch.setattr(media, "MAX_IMAGE_PIXELS", 100 * 100)
    with pytest.raises(ImageTooLargeError, match="640x480") as info:
        load_image(face_image_path)
    assert str(face_image_path) in str(info.value)
    with pytest.raises(ImageTooLargeError):
        load_image(face_image_path.read_bytes())
    with pytest.raises(ImageTooLargeError, match="limit"):
        load_image(Image.new("RGB", (101, 100)))
    with pytest.raises(ImageTooLargeError):
        load_image(np.zeros((100, 101, 3), np.uint8))
    # exactly at the limit is fine
    assert load_image(np.zeros((100, 100, 3), np.uint8)).size == (100, 100)
    assert load_image(Image.new("RGB", (100, 100))).size == (100, 100)


@pytest.mark.parametrize("side", [9000, 100_000])
def test_load_image_png_header_claiming_huge_dimensions(tmp_path, side):
    """Refused from the header alone: 9000^2 is over faa_core's limit, 100000^2 over Pillow's bomb limit."""
    path = tmp_path / "bomb.png"
    path.write_bytes(_png_header(side, side))
    assert path.stat().st_size < 200
    with pytest.raises(ImageTooLargeError) as info:
        load_image(path)
    assert str(path) in str(info.value)


def test_load_image_file_over_byte_limit(tmp_path, monkeypatch, face_image_path):
    monkeypatch.setattr(media, "MAX_FILE_BYTES", 100)
    with pytest.raises(ImageTooLargeError, match="MiB") as info:
        load_image(face_image_path)
    assert str(face_image_path) in str(info.value)


@pytest.mark.parametrize("size", [(10, 10), (15, 200), (200, 15)])
def test_load_image_too_small_file_and_array(tmp_path, size):
    path = tmp_path / "tiny.png"
    Image.new("RGB", size, (1, 2, 3)).save(path)
    with pytest.raises(UnsupportedMediaError, match="too small") as info:
        load_image(path)
    assert str(path) in str(info.value)
    with pytest.raises(UnsupportedMediaError, match="too small"):
        load_image(np.zeros((size[1], size[0], 3), np.uint8))


def test_load_image_minimum_size_accepted():
    assert load_image(np.zeros((16, 16, 3), np.uint8)).size == (16, 16)
    assert load_image(_png_bytes(Image.new("RGB", (16, 16)))).size == (16, 16)


def test_load_image_too_small_pil_image():
    with pytest.raises(UnsupportedMediaError, match="too small"):
        load_image(Image.new("RGB", (10, 10)), name="tiny upload")


# --------------------------------------------------------------------------- load_audio


def test_load_audio_from_path_stereo_22050_to_mono(tmp_path):
    left = _voice(1.5, RATE, 0.4)
    right = -0.5 * left
    path = tmp_path / "stereo.wav"
    sf.write(str(path), np.stack([left, right], axis=1), RATE, subtype="FLOAT")
    audio = load_audio(path)
    assert isinstance(audio, Audio)
    assert audio.sample_rate == RATE
    assert audio.samples.ndim == 1 and audio.samples.dtype == np.float32
    assert len(audio.samples) == len(left)
    np.testing.assert_allclose(audio.samples, (left + right) / 2, atol=1e-6)
    assert audio.duration_s == pytest.approx(1.5, abs=1e-3)
    assert audio.warnings == []


def test_load_audio_speech_wav(speech_wav):
    audio = load_audio(speech_wav)
    assert audio.sample_rate == 22050
    assert 2.0 < audio.duration_s < 8.0
    assert np.abs(audio.samples).max() <= 1.0
    check_audio(audio)


def test_load_audio_from_bytes(speech_wav):
    a = load_audio(speech_wav.read_bytes())
    b = load_audio(bytearray(speech_wav.read_bytes()))
    c = load_audio(speech_wav)
    assert a.sample_rate == b.sample_rate == c.sample_rate
    assert np.array_equal(a.samples, c.samples) and np.array_equal(b.samples, c.samples)


def test_load_audio_from_flac_bytes(tmp_path):
    x = _voice(1.2, 16000)
    buf = io.BytesIO()
    sf.write(buf, x, 16000, format="FLAC")
    audio = load_audio(buf.getvalue())
    assert audio.sample_rate == 16000
    np.testing.assert_allclose(audio.samples, x, atol=1e-4)


def test_load_audio_gradio_tuple_int16_mono_and_stereo():
    x = (np.array([0, 16384, -16384, 32767, -32768] * 1000, dtype=np.int16))
    audio = load_audio((48000, x))
    assert audio.sample_rate == 48000
    assert audio.samples.dtype == np.float32
    np.testing.assert_allclose(audio.samples[:5], [0, 0.5, -0.5, 32767 / 32768, -1.0], atol=1e-6)
    stereo = np.stack([x, np.zeros_like(x)], axis=1)  # Gradio's (samples, channels)
    audio2 = load_audio((44100, stereo))
    assert audio2.sample_rate == 44100 and audio2.samples.shape == (len(x),)
    np.testing.assert_allclose(audio2.samples[:3], [0, 0.25, -0.25], atol=1e-6)
    # numpy scalar rate (as some callers give it)
    assert load_audio((np.int64(16000), x)).sample_rate == 16000


@pytest.mark.parametrize("rate", ["abc", float("nan"), float("inf")])
def test_load_audio_rate_that_is_not_a_number_is_explained(rate):
    with pytest.raises(UnsupportedMediaError, match="is not a number of samples per second"):
        load_audio((rate, np.zeros(16000, np.int16)), name="the clip")


def test_load_audio_array_and_tensor_with_rate():
    x = _voice(1.0, 16000)
    a = load_audio(x, sample_rate=16000)
    np.testing.assert_array_equal(a.samples, x)
    t = load_audio(torch.from_numpy(x), sample_rate=16000)
    np.testing.assert_array_equal(t.samples, x)
    channels_first = torch.from_numpy(np.stack([x, x * 0]))  # (2, samples)
    cf = load_audio(channels_first, sample_rate=16000)
    assert cf.samples.shape == x.shape
    np.testing.assert_allclose(cf.samples, x / 2, atol=1e-7)
    f64 = load_audio(x.astype(np.float64), sample_rate=8000)
    assert f64.samples.dtype == np.float32 and f64.sample_rate == 8000


def test_load_audio_array_without_rate():
    with pytest.raises(UnsupportedMediaError, match="sample rate"):
        load_audio(np.zeros(16000, np.float32), name="mic")
    with pytest.raises(UnsupportedMediaError, match="sample rate"):
        load_audio(torch.zeros(16000))


@pytest.mark.parametrize("rate", [0, -16000])
def test_load_audio_invalid_rate(rate):
    with pytest.raises(UnsupportedMediaError, match="sample rate"):
        load_audio((rate, np.zeros(16000, np.int16)))


def test_load_audio_bad_array_shape_and_dtype():
    with pytest.raises(UnsupportedMediaError, match="shape"):
        load_audio(np.zeros((2, 2, 100), np.float32), sample_rate=16000)
    with pytest.raises(UnsupportedMediaError, match="dtype"):
        load_audio(np.zeros(100, np.complex64), sample_rate=16000)
    with pytest.raises(UnsupportedMediaError, match="dtype"):
        load_audio(np.array(["a", "b"]), sample_rate=16000)


def test_load_audio_uint8_pcm_is_centred():
    x = np.array([128, 255, 0, 128] * 4000, dtype=np.uint8)  # 8-bit PCM: 128 is zero
    audio = load_audio((16000, x))
    np.testing.assert_allclose(audio.samples[:4], [0.0, 127 / 128, -1.0, 0.0], atol=1e-2)


@pytest.mark.parametrize("cut", [30, 21])
def test_load_audio_corrupt_wav(speech_wav, tmp_path, cut):
    data = speech_wav.read_bytes()
    path = tmp_path / "broken.wav"
    path.write_bytes(data[:cut] + b"\xff\xff" + data[cut + 2 : cut + 10])
    with pytest.raises(UnreadableMediaError, match="truncated or corrupt") as info:
        load_audio(path)
    assert str(path) in str(info.value)


def test_load_audio_malformed_fmt_chunk_bytes(speech_wav):
    data = speech_wav.read_bytes()
    with pytest.raises(UnreadableMediaError, match="voice.wav"):
        load_audio(data[:20] + b"\xff\xff" + data[22:], name="voice.wav")


def test_load_audio_header_only_wav_is_empty(speech_wav):
    audio = load_audio(speech_wav.read_bytes()[:44], name="header.wav")
    assert audio.samples.size == 0
    with pytest.raises(EmptyAudioError, match="header.wav"):
        check_audio(audio, name="header.wav")


def test_load_audio_non_audio_files(tmp_path, face_image_path):
    text = tmp_path / "speech.wav"
    text.write_text("not audio\n" * 100)
    with pytest.raises(UnsupportedMediaError, match="not a format") as info:
        load_audio(text)
    assert str(text) in str(info.value)
    with pytest.raises(UnsupportedMediaError) as info:
        load_audio(face_image_path)
    assert str(face_image_path) in str(info.value)


def test_load_audio_missing_and_empty_file(tmp_path):
    missing = tmp_path / "gone.wav"
    with pytest.raises(UnreadableMediaError, match="not found") as info:
        load_audio(missing)
    assert str(missing) in str(info.value)
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    with pytest.raises(UnreadableMediaError, match="empty") as info:
        load_audio(empty)
    assert str(empty) in str(info.value)


def test_load_audio_file_over_byte_limit(monkeypatch, speech_wav):
    monkeypatch.setattr(media, "MAX_FILE_BYTES", 1000)
    with pytest.raises(AudioTooLongError, match="MiB") as info:
        load_audio(speech_wav)
    assert str(speech_wav) in str(info.value)


@pytest.mark.parametrize("src", [42, None, [0.0, 0.1], {"a": 1}, (1, 2, 3)])
def test_load_audio_unsupported_type(src):
    with pytest.raises(UnsupportedMediaError, match="cannot read a"):
        load_audio(src)


# --------------------------------------------------------------------------- check_audio


def _audio(x, rate: int = 16000) -> Audio:
    return Audio(samples=np.asarray(x, dtype=np.float32), sample_rate=rate)


def test_check_audio_accepts_speech_without_warnings():
    a = _audio(_voice(2.0))
    assert check_audio(a) is a
    assert a.warnings == []


def test_check_audio_empty():
    with pytest.raises(EmptyAudioError, match="mic.wav"):
        check_audio(_audio([]), name="mic.wav")


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_check_audio_nonfinite(bad):
    x = _voice(2.0)
    x[1000] = bad
    with pytest.raises(NonFiniteAudioError, match="mic.wav"):
        check_audio(_audio(x), name="mic.wav")


def test_check_audio_too_short():
    with pytest.raises(AudioTooShortError, match=r"0\.50 s") as info:
        check_audio(_audio(_voice(0.5)), name="short.wav")
    assert "short.wav" in str(info.value)
    check_audio(_audio(_voice(1.0)))  # exactly the minimum passes
    with pytest.raises(AudioTooShortError):
        check_audio(_audio(_voice(1.0)), min_seconds=1.5)


def test_check_audio_too_long():
    with pytest.raises(AudioTooLongError, match="long.wav") as info:
        check_audio(_audio(_voice(3.0)), name="long.wav", max_seconds=2.0)
    assert "3.0 s" in str(info.value)
    with pytest.raises(AudioTooLongError):
        check_audio(_audio(np.tile(_voice(1.0, 8000), 61), rate=8000))  # 61 s > default 60 s


@pytest.mark.parametrize("kind", ["zeros", "noise"])
def test_check_audio_silent(kind):
    n = 32000
    x = np.zeros(n, np.float32) if kind == "zeros" else 1e-5 * np.random.default_rng(0).standard_normal(n)
    with pytest.raises(SilentAudioError, match="quiet.wav") as info:
        check_audio(_audio(x), name="quiet.wav")
    assert "silent" in str(info.value)


def test_check_audio_clipped_passes_with_warning():
    x = np.clip(3.0 * _voice(2.0), -1.0, 1.0)
    a = check_audio(_audio(x), name="loud.wav")
    assert len(a.warnings) == 1
    assert "clipped" in a.warnings[0] and "loud.wav" in a.warnings[0]


def test_check_audio_default_name():
    with pytest.raises(EmptyAudioError, match="the recording"):
        check_audio(_audio([]))


# --------------------------------------------------------------------------- orientation and bit depth


def test_exif_orientation_is_applied(tmp_path):
    """A phone photo stored sideways with Orientation=6 is read upright (the detector needs upright faces)."""
    from media_fixtures import face_photo

    upright = face_photo(320, 240, 150)
    stored = upright.transpose(Image.Transpose.ROTATE_90)  # what the sensor wrote: 240x320
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    path = tmp_path / "phone.jpg"
    stored.save(path, format="JPEG", quality=95, exif=exif.tobytes())
    for src in (path, path.read_bytes(), Image.open(path)):
        img = load_image(src)
        assert img.size == (320, 240)
        diff = np.abs(np.asarray(img, dtype=int) - np.asarray(upright, dtype=int))
        assert diff.mean() < 3.0  # JPEG noise only; unrotated it is not even the same shape


def test_16bit_grayscale_png_is_scaled_not_saturated():
    ramp = np.linspace(0, 65535, 64 * 64).round().astype(np.uint16).reshape(64, 64)
    buf = io.BytesIO()
    Image.fromarray(ramp).save(buf, format="PNG")
    assert Image.open(io.BytesIO(buf.getvalue())).mode.startswith("I")
    img = load_image(buf.getvalue())
    arr = np.asarray(img)
    expected = np.rint(ramp / 257.0).astype(np.uint8)
    assert np.array_equal(arr[..., 0], expected) and np.array_equal(arr[..., 2], expected)
    assert (arr == 255).mean() < 0.01  # convert("RGB") made 99.6% of these pixels 255


@pytest.mark.parametrize(
    "mode,values,expected",
    [
        ("I", [0, 100, 255], [0, 100, 255]),  # already 8-bit range: kept
        ("I", [0, 32768, 65535], [0, 128, 255]),  # 16-bit range
        ("I", [-100, 0, 100], [0, 128, 255]),  # anything else: stretched
        ("F", [0.0, 0.5, 1.0], [0, 128, 255]),  # unit range
        ("F", [0.0, 127.0, 255.0], [0, 127, 255]),
    ],
)
def test_high_depth_modes_convert_by_value_range(mode, values, expected):
    arr = np.repeat(np.array(values, dtype=np.float32 if mode == "F" else np.int32)[None], 16, axis=0)
    arr = np.repeat(arr, 6, axis=1)  # 16 x 18
    img = load_image(Image.fromarray(arr, mode=mode))
    assert img.mode == "RGB"
    assert np.asarray(img)[0, ::6, 1].tolist() == expected


# --------------------------------------------------------------------------- meaningless or oversized audio


@pytest.mark.parametrize("rate", [1, 100, 7999])
def test_rates_below_8k_are_refused(rate):
    from faa_core.errors import SampleRateError

    with pytest.raises(SampleRateError, match=f"{rate} Hz.*8000 Hz"):
        load_audio((rate, np.array([0.1, -0.2, 0.3], np.float32)), name="x")
    with pytest.raises(SampleRateError, match="8000 Hz"):
        check_audio(_audio(_voice(2.0, rate=8000), rate=rate))
    load_audio((8000, _voice(2.0, rate=8000)))  # the minimum passes


def test_rate_below_8k_in_a_file_is_refused(tmp_path):
    from faa_core.errors import SampleRateError

    path = tmp_path / "low.wav"
    sf.write(str(path), np.array([0.1, -0.2, 0.3], np.float32), 1, subtype="FLOAT")
    with pytest.raises(SampleRateError, match="low.wav is sampled at 1 Hz"):
        load_audio(path)


@pytest.mark.parametrize("level", [0.5, -0.25])
def test_constant_level_is_refused(level):
    x = np.full(3 * 16000, level, np.float32)
    with pytest.raises(SilentAudioError, match="constant level") as info:
        check_audio(_audio(x, rate=16000), name="dc.wav")
    assert "dc.wav" in str(info.value)


def test_duration_and_channels_checked_from_the_header(tmp_path, monkeypatch):
    """A long file is refused before any frame is decoded; one within the limit decodes as before."""
    path = tmp_path / "long.flac"
    sf.write(str(path), np.zeros((61 * 8000, 2), np.float32), 8000, format="FLAC")
    reads = []
    real_read = sf.SoundFile.read
    monkeypatch.setattr(sf.SoundFile, "read", lambda self, *a, **k: reads.append(a) or real_read(self, *a, **k))
    with pytest.raises(AudioTooLongError, match=r"61\.0 s \(from its header\); the limit is 60 s"):
        load_audio(path, max_seconds=60.0)
    assert reads == []
    assert load_audio(path, max_seconds=61.0).samples.shape == (61 * 8000,)
    nine = tmp_path / "nine.wav"
    sf.write(str(nine), np.zeros((8000, 9), np.float32), 8000)
    with pytest.raises(UnsupportedMediaError, match="9 channels"):
        load_audio(nine)


def test_multichannel_file_is_mixed_block_by_block_like_a_full_read(tmp_path):
    rng = np.random.default_rng(3)
    x = (0.3 * rng.standard_normal((200_000, 3))).astype(np.float32)  # several decode blocks
    path = tmp_path / "three.wav"
    sf.write(str(path), x, 16000, subtype="FLOAT")
    a = load_audio(path)
    assert a.sample_rate == 16000
    np.testing.assert_allclose(a.samples, x.mean(axis=1), rtol=0, atol=1e-7)


def test_sixty_minute_flac_is_refused_within_memory(tmp_path):
    """A small compressed file claiming an hour of 8 channels: refused from its header, peak RSS bounded."""
    import subprocess
    import sys

    path = tmp_path / "hour.flac"
    with sf.SoundFile(str(path), "w", samplerate=8000, channels=8, format="FLAC") as f:
        block = np.zeros((8000 * 60, 8), np.float32)
        for _ in range(60):
            f.write(block)
    assert path.stat().st_size < 5 * 2**20
    code = (
        "import resource, sys\n"
        "from faa_core.media import load_audio\n"
        "from faa_core.errors import AudioTooLongError\n"
        "base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "try:\n"
        "    load_audio(sys.argv[1], max_seconds=60.0)\n"
        "except AudioTooLongError as exc:\n"
        "    print('refused', exc)\n"
        "print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) // 1024)\n"
    )
    out = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=120)
    lines = out.stdout.strip().splitlines()
    assert lines[0].startswith("refused") and "3600.0 s (from its header)" in lines[0], out.stderr
    assert int(lines[-1]) < 100  # MiB above the interpreter's own; it was 5.15 GiB before
