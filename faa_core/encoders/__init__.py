"""Frozen face and voice encoders and where their weights come from."""

from .face import FACE_DIM, FACE_GRID, FACE_TOKEN_DIM, DetectedFace, FaceEncoder, FaceFeatures
from .voice import SAMPLE_RATE, VOICE_DIM, VOICE_TOKEN_DIM, VoiceEncoder, VoiceFeatures, resample_to_16k
from .weights import RANDOM_WARNING, EncoderWeights, WeightFile, resolve_weights

__all__ = [
    "FACE_DIM", "FACE_GRID", "FACE_TOKEN_DIM", "DetectedFace", "FaceEncoder", "FaceFeatures",
    "SAMPLE_RATE", "VOICE_DIM", "VOICE_TOKEN_DIM", "VoiceEncoder", "VoiceFeatures", "resample_to_16k",
    "RANDOM_WARNING", "EncoderWeights", "WeightFile", "resolve_weights",
]
