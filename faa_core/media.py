"""Reading images and audio safely, with a specific error for each bad input.

Images are decoded with Pillow under a pixel limit (decompression bombs are
refused before decoding), turned upright by their EXIF orientation (phone
photos are often stored rotated) and converted to 8-bit RGB by value range
(16-bit and float grayscale would otherwise saturate). Audio is read with
soundfile (torchaudio's loader needs ffmpeg): rate, channels and duration are
checked from the header before anything is decoded, then at most the allowed
duration is decoded block by block and mixed to mono, so a small compressed
file claiming hours of audio costs no memory. Recordings are checked for the
problems that make a voice embedding meaningless: no samples, NaN/inf, a rate
below 8 kHz, silence or a constant level, too short or too long.
"""

from __future__ import annotations

import io
import os
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import (
    AudioTooLongError,
    AudioTooShortError,
    EmptyAudioError,
    ImageTooLargeError,
    InputError,
    NonFiniteAudioError,
    SampleRateError,
    SilentAudioError,
    UnreadableMediaError,
    UnsupportedMediaError,
)

PathLike = Union[str, os.PathLike]

#: Images above this many pixels are refused (about 8000 x 5000).
MAX_IMAGE_PIXELS = 40_000_000
#: Files above this many bytes are refused before decoding.
MAX_FILE_BYTES = 50 * 1024 * 1024

MIN_AUDIO_SECONDS = 1.0
MAX_AUDIO_SECONDS = 60.0
#: ``load_audio`` decodes at most this many seconds unless told otherwise (callers pass their own limit).
MAX_DECODE_SECONDS = 300.0
#: Speech needs at least telephone bandwidth; lower rates are refused.
MIN_SAMPLE_RATE = 8_000
#: No real recording is sampled faster; higher claimed rates are refused before decoding.
MAX_SAMPLE_RATE = 192_000
#: Files with more channels than this are refused before decoding.
MAX_AUDIO_CHANNELS = 8
#: Frames decoded per block when reading a file (mixed to mono block by block).
_DECODE_BLOCK = 1 << 16
#: Peak amplitude (full scale = 1) below which a recording counts as silent.
SILENCE_PEAK = 1e-3
#: A recording with more than this fraction of samples at full scale is clipped.
CLIPPED_FRACTION = 0.01


def _describe(src: Any, name: str | None) -> str:
    if name:
        return name
    if isinstance(src, (str, os.PathLike)):
        return str(src)
    return f"<{type(src).__name__}>"


def _read_file_bytes(path: Path, what: str, label: str | None = None) -> bytes:
    """The file's bytes; messages name it by ``label`` (a caller's name keeps server paths out of them)."""
    label = label or str(path)
    if not path.exists():
        raise UnreadableMediaError(f"{what} file not found: {label}")
    if not path.is_file():
        raise UnreadableMediaError(f"{what} path is not a file: {label}")
    size = path.stat().st_size
    if size == 0:
        raise UnreadableMediaError(f"{what} file is empty (0 bytes): {label}")
    if size > MAX_FILE_BYTES:
        too_big = ImageTooLargeError if what == "image" else AudioTooLongError
        raise too_big(
            f"{what} file {label} is {size / 2**20:.1f} MiB; the limit is "
            f"{MAX_FILE_BYTES / 2**20:.0f} MiB"
        )
    try:
        return path.read_bytes()
    except OSError as exc:
        raise UnreadableMediaError(f"cannot read {what} file {label}: {exc.strerror or type(exc).__name__}") from exc


def _check_size(width: int, height: int, label: str) -> None:
    """Refuse images with too many pixels (before decoding) or too few to hold a face."""
    if width * height > MAX_IMAGE_PIXELS:
        raise ImageTooLargeError(
            f"image {label} has {width}x{height} pixels; the limit is {MAX_IMAGE_PIXELS:,} pixels"
        )
    if width < 16 or height < 16:
        raise UnsupportedMediaError(f"image {label} is too small ({width}x{height})")


def _array_to_image(arr: np.ndarray, label: str) -> Image.Image:
    if arr.ndim == 2:
        arr = np.stack([arr] * 3, axis=-1)
    if arr.ndim != 3 or arr.shape[-1] not in (3, 4):
        raise UnsupportedMediaError(
            f"image {label}: array of shape {arr.shape} is not (H, W), (H, W, 3) or (H, W, 4)"
        )
    _check_size(arr.shape[1], arr.shape[0], label)
    if np.issubdtype(arr.dtype, np.floating):
        if not np.isfinite(arr).all():
            raise UnsupportedMediaError(f"image {label} contains NaN or infinite values")
        scale = 255.0 if arr.max() <= 1.0 else 1.0
        arr = np.clip(arr * scale, 0, 255).astype(np.uint8)
    elif arr.dtype != np.uint8:
        raise UnsupportedMediaError(f"image {label}: unsupported array dtype {arr.dtype}")
    return Image.fromarray(np.ascontiguousarray(arr[..., :3]), mode="RGB")


def _upright(img: Image.Image) -> Image.Image:
    """Apply the EXIF orientation tag (a phone photo stored sideways would hide its face from the detector)."""
    try:
        return ImageOps.exif_transpose(img)
    except (OSError, ValueError, SyntaxError, KeyError, TypeError, AttributeError):
        return img  # unreadable EXIF: keep the pixels as stored


def _to_rgb(img: Image.Image) -> Image.Image:
    """8-bit RGB by value range: ``convert("RGB")`` clips 16-bit/32-bit/float grayscale to 255.

    16-bit modes (``I;16*``) are scaled from 0..65535. Mode ``I`` and ``F``
    keep values already in 0..255 (``F`` in 0..1 is scaled by 255), treat
    non-negative ``I`` up to 65535 as 16-bit, and stretch anything else
    from its minimum to its maximum.
    """
    mode = img.mode
    if not (mode.startswith("I") or mode == "F"):
        return img.convert("RGB")
    arr = np.asarray(img).astype(np.float32)
    arr = np.nan_to_num(arr, nan=0.0, posinf=0.0, neginf=0.0)
    lo, hi = (float(arr.min()), float(arr.max())) if arr.size else (0.0, 0.0)
    if mode.startswith("I;16"):
        scale, offset = 255.0 / 65535.0, 0.0
    elif mode == "F" and lo >= 0.0 and hi <= 1.0:
        scale, offset = 255.0, 0.0
    elif lo >= 0.0 and hi <= 255.0:
        scale, offset = 1.0, 0.0
    elif mode == "I" and lo >= 0.0 and hi <= 65535.0:
        scale, offset = 255.0 / 65535.0, 0.0
    else:
        scale, offset = 255.0 / max(hi - lo, 1e-12), lo
    gray = np.clip(np.rint((arr - offset) * scale), 0, 255).astype(np.uint8)
    return Image.fromarray(gray, mode="L").convert("RGB")


def load_image(src: Any, name: str | None = None) -> Image.Image:
    """Return an upright 8-bit RGB PIL image from a path, bytes, PIL image or uint8/float array.

    The one image reader of the project (CLI, app, extraction): EXIF
    orientation is applied and high-bit-depth grayscale is scaled by its value
    range. Raises a subclass of ``InputError`` naming the image for every failure.
    """
    label = _describe(src, name)
    if isinstance(src, Image.Image):
        _check_size(src.width, src.height, label)
        return _to_rgb(_upright(src))
    if isinstance(src, np.ndarray):
        return _array_to_image(src, label)
    if isinstance(src, (str, os.PathLike)):
        data = _read_file_bytes(Path(src), "image", label)
    elif isinstance(src, (bytes, bytearray)):
        data = bytes(src)
    else:
        raise UnsupportedMediaError(
            f"image {label}: cannot read a {type(src).__name__}; give a path, bytes, "
            "a PIL image or a numpy array"
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
            _check_size(img.width, img.height, label)
            img.load()
    except (ImageTooLargeError, UnsupportedMediaError):
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageTooLargeError(f"image {label} is too large to decode safely: {exc}") from exc
    except UnidentifiedImageError as exc:
        raise UnsupportedMediaError(
            f"image {label} is not an image format Pillow can read (JPEG, PNG, WebP, ...)"
        ) from exc
    except (OSError, SyntaxError, ValueError) as exc:
        raise UnreadableMediaError(f"image {label} is truncated or corrupt: {exc}") from exc
    return _to_rgb(_upright(img))


@dataclass
class Audio:
    """A mono recording: float32 samples in [-1, 1] and their sample rate."""

    samples: np.ndarray
    sample_rate: int
    warnings: list[str] = field(default_factory=list)

    @property
    def duration_s(self) -> float:
        return len(self.samples) / float(self.sample_rate)


def _to_mono_float(arr: np.ndarray, label: str) -> np.ndarray:
    arr = np.asarray(arr)
    if arr.dtype.kind == "u":  # unsigned PCM is centred on half scale
        half = (float(np.iinfo(arr.dtype).max) + 1.0) / 2.0
        arr = (arr.astype(np.float32) - half) / half
    elif arr.dtype.kind == "i":
        info = np.iinfo(arr.dtype)
        arr = arr.astype(np.float32) / float(max(abs(info.min), info.max))
    elif arr.dtype.kind == "f":
        arr = arr.astype(np.float32, copy=False)
    else:
        raise UnsupportedMediaError(f"audio {label}: unsupported sample dtype {arr.dtype}")
    if arr.ndim == 2:
        # soundfile gives (frames, channels); Gradio gives the same layout.
        channels_last = arr.shape[1] <= 8 or arr.shape[1] < arr.shape[0]
        arr = arr.mean(axis=1 if channels_last else 0)
    elif arr.ndim != 1:
        raise UnsupportedMediaError(f"audio {label}: array of shape {arr.shape} is not mono or stereo")
    return np.ascontiguousarray(arr, dtype=np.float32)


def _check_rate(rate: int, what: str) -> None:
    """Refuse rates that cannot carry speech (below 8 kHz) or that no recorder produces."""
    if rate <= 0:
        raise UnsupportedMediaError(f"{what}: invalid sample rate {rate}")
    if rate < MIN_SAMPLE_RATE:
        raise SampleRateError(
            f"{what} is sampled at {rate} Hz; speech needs at least {MIN_SAMPLE_RATE} Hz "
            "(record again at 16 kHz or more)"
        )
    if rate > MAX_SAMPLE_RATE:
        raise SampleRateError(
            f"{what} claims a sample rate of {rate} Hz; at most {MAX_SAMPLE_RATE} Hz is "
            "accepted (resample it to 16-48 kHz)"
        )


def load_audio(
    src: Any,
    sample_rate: int | None = None,
    name: str | None = None,
    max_seconds: float = MAX_DECODE_SECONDS,
) -> Audio:
    """Read a recording from a path, bytes, (rate, array) pair or an array plus rate.

    Stereo is averaged to mono; integer samples are scaled to [-1, 1]. Rates
    outside 8-192 kHz are refused. A file whose header claims more than
    ``max_seconds`` (or more than 8 channels) is refused before decoding, and
    at most ``max_seconds`` are ever decoded, so memory stays bounded whatever
    the file claims.
    """
    label = _describe(src, name)
    if isinstance(src, tuple) and len(src) == 2 and np.isscalar(src[0]):
        sample_rate, src = src[0], src[1]
    if isinstance(src, np.ndarray) or _is_tensor(src):
        if sample_rate is None:
            raise UnsupportedMediaError(f"audio {label}: an array needs its sample rate")
        try:
            rate = int(sample_rate)
        except (TypeError, ValueError, OverflowError):
            raise UnsupportedMediaError(
                f"audio {label}: sample rate {sample_rate!r} is not a number of samples per second"
            ) from None
        _check_rate(rate, f"audio {label}")
        samples = _to_mono_float(np.asarray(src), label)
    else:
        if isinstance(src, (str, os.PathLike)):
            data = _read_file_bytes(Path(src), "audio", label)
        elif isinstance(src, (bytes, bytearray)):
            data = bytes(src)
        else:
            raise UnsupportedMediaError(
                f"audio {label}: cannot read a {type(src).__name__}; give a path, bytes, "
                "a (sample_rate, array) pair or an array with its sample rate"
            )
        samples, rate = _decode_audio_bytes(data, label, max_seconds)
    return Audio(samples=samples, sample_rate=rate)


def _is_tensor(obj: Any) -> bool:
    return type(obj).__module__.startswith("torch") and hasattr(obj, "numpy")


def _decode_audio_bytes(data: bytes, label: str, max_seconds: float = MAX_DECODE_SECONDS) -> tuple[np.ndarray, int]:
    """Header checks first, then at most ``max_seconds`` decoded block by block and mixed to mono."""
    import soundfile as sf

    try:
        with sf.SoundFile(io.BytesIO(data)) as f:
            rate, channels, frames = int(f.samplerate), int(f.channels), int(f.frames)
            _check_rate(rate, f"audio {label}")
            if channels > MAX_AUDIO_CHANNELS:
                raise UnsupportedMediaError(
                    f"audio {label} has {channels} channels; at most {MAX_AUDIO_CHANNELS} are accepted "
                    "(mix it down to mono or stereo)"
                )
            limit = int(max_seconds * rate) + 1  # one frame over the limit is enough to say "too long"
            if 0 < limit < frames:
                raise AudioTooLongError(
                    f"audio {label} lasts {frames / rate:.1f} s (from its header); the limit is "
                    f"{max_seconds:.0f} s"
                )
            parts, total = [], 0
            while total <= limit:
                block = f.read(min(_DECODE_BLOCK, limit + 1 - total), dtype="float32", always_2d=True)
                if len(block) == 0:
                    break
                parts.append(block.mean(axis=1, dtype=np.float32) if channels > 1 else block[:, 0].copy())
                total += len(block)
            if total > limit:  # the header understated the length
                raise AudioTooLongError(
                    f"audio {label} lasts more than {max_seconds:.0f} s, the limit"
                )
    except sf.LibsndfileError as exc:
        text = re.sub(r"Error opening <[^>]*>: ", "", str(exc))  # the in-memory buffer's repr says nothing
        if "Format not recognised" in text or "unknown format" in text.lower():
            raise UnsupportedMediaError(
                f"audio {label} is not a format soundfile can read (WAV, FLAC, OGG, MP3): {text}"
            ) from exc
        raise UnreadableMediaError(f"audio {label} is truncated or corrupt: {text}") from exc
    except (RuntimeError, ValueError, TypeError) as exc:
        if isinstance(exc, InputError):
            raise
        raise UnreadableMediaError(f"audio {label} cannot be decoded: {exc}") from exc
    samples = np.concatenate(parts) if parts else np.zeros(0, np.float32)
    return np.ascontiguousarray(samples, dtype=np.float32), rate


def check_audio(
    audio: Audio,
    name: str = "the recording",
    min_seconds: float = MIN_AUDIO_SECONDS,
    max_seconds: float = MAX_AUDIO_SECONDS,
) -> Audio:
    """Raise a specific ``AudioError`` when a recording cannot give a voice embedding.

    Refused: no samples, NaN/inf, a rate outside 8-192 kHz, too short or too
    long, silence, and a constant level (DC) with no variation. Clipping does
    not stop scoring; it is reported in ``audio.warnings``.
    """
    x = audio.samples
    if x.size == 0:
        raise EmptyAudioError(f"{name} is empty (no samples)")
    if not np.isfinite(x).all():
        raise NonFiniteAudioError(f"{name} contains NaN or infinite samples")
    _check_rate(int(audio.sample_rate), name)
    dur = audio.duration_s
    if dur < min_seconds:
        raise AudioTooShortError(
            f"{name} lasts {dur:.2f} s; at least {min_seconds:.1f} s of speech is needed"
        )
    if dur > max_seconds:
        raise AudioTooLongError(f"{name} lasts {dur:.1f} s; the limit is {max_seconds:.0f} s")
    peak = float(np.abs(x).max())
    if peak < SILENCE_PEAK:
        raise SilentAudioError(
            f"{name} is silent (peak amplitude {peak:.1e}); check the microphone"
        )
    level = float(np.mean(x, dtype=np.float64))
    swing = float(np.abs(x - level).max())
    if swing < SILENCE_PEAK:
        raise SilentAudioError(
            f"{name} holds no sound: a constant level of {level:.3f} with no variation (peak deviation "
            f"{swing:.1e}); check the microphone"
        )
    clipped = float(np.mean(np.abs(x) >= 0.999))
    if clipped > CLIPPED_FRACTION:
        audio.warnings.append(
            f"{name} is clipped ({clipped:.1%} of samples at full scale); "
            "the match may be less reliable"
        )
    return audio
