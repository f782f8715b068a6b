"""Reading images and audio safely, with a specific error for each bad input.

Images are decoded with Pillow under a pixel limit (decompression bombs are
refused before decoding); audio is read with soundfile (torchaudio's loader
needs ffmpeg), mixed to mono and checked for the problems that make a voice
embedding meaningless: no samples, NaN/inf, silence, too short or too long.
"""

from __future__ import annotations

import io
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

import numpy as np
from PIL import Image, UnidentifiedImageError

from .errors import (
    AudioTooLongError,
    AudioTooShortError,
    EmptyAudioError,
    ImageTooLargeError,
    NonFiniteAudioError,
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


def _read_file_bytes(path: Path, what: str) -> bytes:
    if not path.exists():
        raise UnreadableMediaError(f"{what} file not found: {path}")
    if not path.is_file():
        raise UnreadableMediaError(f"{what} path is not a file: {path}")
    size = path.stat().st_size
    if size == 0:
        raise UnreadableMediaError(f"{what} file is empty (0 bytes): {path}")
    if size > MAX_FILE_BYTES:
        too_big = ImageTooLargeError if what == "image" else AudioTooLongError
        raise too_big(
            f"{what} file {path} is {size / 2**20:.1f} MiB; the limit is "
            f"{MAX_FILE_BYTES / 2**20:.0f} MiB"
        )
    try:
        return path.read_bytes()
    except OSError as exc:
        raise UnreadableMediaError(f"cannot read {what} file {path}: {exc}") from exc


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


def load_image(src: Any, name: str | None = None) -> Image.Image:
    """Return an RGB PIL image from a path, bytes, PIL image or uint8/float array.

    Raises a subclass of ``InputError`` naming the image for every failure.
    """
    label = _describe(src, name)
    if isinstance(src, Image.Image):
        _check_size(src.width, src.height, label)
        return src.convert("RGB")
    if isinstance(src, np.ndarray):
        return _array_to_image(src, label)
    if isinstance(src, (str, os.PathLike)):
        data = _read_file_bytes(Path(src), "image")
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
    return img.convert("RGB")


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


def load_audio(src: Any, sample_rate: int | None = None, name: str | None = None) -> Audio:
    """Read a recording from a path, bytes, (rate, array) pair or an array plus rate.

    Stereo is averaged to mono; integer samples are scaled to [-1, 1].
    """
    label = _describe(src, name)
    if isinstance(src, tuple) and len(src) == 2 and np.isscalar(src[0]):
        sample_rate, src = int(src[0]), src[1]
    if isinstance(src, np.ndarray) or _is_tensor(src):
        if sample_rate is None:
            raise UnsupportedMediaError(f"audio {label}: an array needs its sample rate")
        samples = _to_mono_float(np.asarray(src), label)
        rate = int(sample_rate)
    else:
        if isinstance(src, (str, os.PathLike)):
            data = _read_file_bytes(Path(src), "audio")
        elif isinstance(src, (bytes, bytearray)):
            data = bytes(src)
        else:
            raise UnsupportedMediaError(
                f"audio {label}: cannot read a {type(src).__name__}; give a path, bytes, "
                "a (sample_rate, array) pair or an array with its sample rate"
            )
        samples, rate = _decode_audio_bytes(data, label)
    if rate <= 0:
        raise UnsupportedMediaError(f"audio {label}: invalid sample rate {rate}")
    return Audio(samples=samples, sample_rate=rate)


def _is_tensor(obj: Any) -> bool:
    return type(obj).__module__.startswith("torch") and hasattr(obj, "numpy")


def _decode_audio_bytes(data: bytes, label: str) -> tuple[np.ndarray, int]:
    import soundfile as sf

    try:
        arr, rate = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    except sf.LibsndfileError as exc:
        text = str(exc)
        if "Format not recognised" in text or "unknown format" in text.lower():
            raise UnsupportedMediaError(
                f"audio {label} is not a format soundfile can read (WAV, FLAC, OGG, MP3): {text}"
            ) from exc
        raise UnreadableMediaError(f"audio {label} is truncated or corrupt: {text}") from exc
    except (RuntimeError, ValueError, TypeError) as exc:
        raise UnreadableMediaError(f"audio {label} cannot be decoded: {exc}") from exc
    return _to_mono_float(arr, label), int(rate)


def check_audio(
    audio: Audio,
    name: str = "the recording",
    min_seconds: float = MIN_AUDIO_SECONDS,
    max_seconds: float = MAX_AUDIO_SECONDS,
) -> Audio:
    """Raise a specific ``AudioError`` when a recording cannot give a voice embedding.

    Clipping does not stop scoring; it is reported in ``audio.warnings``.
    """
    x = audio.samples
    if x.size == 0:
        raise EmptyAudioError(f"{name} is empty (no samples)")
    if not np.isfinite(x).all():
        raise NonFiniteAudioError(f"{name} contains NaN or infinite samples")
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
    clipped = float(np.mean(np.abs(x) >= 0.999))
    if clipped > CLIPPED_FRACTION:
        audio.warnings.append(
            f"{name} is clipped ({clipped:.1%} of samples at full scale); "
            "the match may be less reliable"
        )
    return audio
