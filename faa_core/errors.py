"""Exceptions with messages a person can act on.

Every bad input the library can meet has its own class, so that callers (the
CLI, the app, long training jobs) can catch exactly what they expect and show
the message as it is.
"""

from __future__ import annotations


class FAAError(Exception):
    """Base class of every error raised on purpose by faa_core."""


class InputError(FAAError, ValueError):
    """The caller gave media or values that cannot be processed."""


class UnreadableMediaError(InputError):
    """A file is missing, truncated or cannot be decoded."""


class UnsupportedMediaError(InputError):
    """The input is of a type or format faa_core does not read."""


class ImageTooLargeError(InputError):
    """An image has more pixels than can be decoded safely."""


class NoFaceError(InputError):
    """The face detector found no face in an image."""


class ImageTooThinError(NoFaceError):
    """An image too narrow (or too extreme in aspect ratio) for the face detector to search."""


class TooManyFacesError(InputError):
    """More candidate faces than the pipeline scores at once."""


class AudioError(InputError):
    """Base class of the audio-specific input errors."""


class EmptyAudioError(AudioError):
    """The recording holds no samples."""


class NonFiniteAudioError(AudioError):
    """The recording contains NaN or infinite samples."""


class AudioTooShortError(AudioError):
    """The recording is shorter than the minimum duration."""


class AudioTooLongError(AudioError):
    """The recording is longer than the maximum duration."""


class SilentAudioError(AudioError):
    """The recording has no audible signal (silence, or a constant level with no variation)."""


class SampleRateError(AudioError):
    """The sample rate is too low to carry speech (or too high to be a real recording)."""


class WeightsUnavailableError(FAAError, RuntimeError):
    """Pretrained encoder weights are neither cached nor downloadable."""


class CheckpointError(FAAError, ValueError):
    """A checkpoint is missing, malformed or does not fit the model."""


class EncoderMismatchError(CheckpointError):
    """A checkpoint was trained on features of other encoder weights than the ones loaded."""
