"""Where the frozen encoders' weights come from.

Three sources, chosen with one string:

* ``"pretrained"`` -- the published weights: facenet-pytorch's VGGFace2
  InceptionResnetV1 release file (cached where facenet-pytorch caches it) and
  SpeechBrain's ``spkrec-ecapa-voxceleb`` embedding model from the Hugging Face
  Hub (cached by huggingface_hub). Environment variables ``FAA_FACE_WEIGHTS``
  and ``FAA_VOICE_WEIGHTS`` point at local files instead.
* a directory -- holding the two files under their published names.
* ``"random"`` -- deterministic random initialisation, for tests and
  development only. Everything built on it says so loudly.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch

from ..errors import WeightsUnavailableError

log = logging.getLogger(__name__)

FACE_WEIGHTS_FILE = "20180402-114759-vggface2.pt"
FACE_WEIGHTS_URL = (
    "https://github.com/timesler/facenet-pytorch/releases/download/v2.2.9/" + FACE_WEIGHTS_FILE
)
VOICE_HUB_REPO = "speechbrain/spkrec-ecapa-voxceleb"
VOICE_WEIGHTS_FILE = "embedding_model.ckpt"
FACE_ENV = "FAA_FACE_WEIGHTS"
VOICE_ENV = "FAA_VOICE_WEIGHTS"

#: Seed of the random initialisation of both encoders (``weights="random"``): the same "random" weights everywhere.
RANDOM_SEED = 0
#: ``weights_id`` of the seeded random weights (stores and cards record it; see ``WeightFile.weights_id``).
RANDOM_WEIGHTS_ID = f"random (seed {RANDOM_SEED})"

RANDOM_WARNING = (
    "RANDOM ENCODER WEIGHTS: the face and voice encoders are randomly initialised; "
    "scores are meaningless for real people (use only for tests and development)"
)


@dataclass(frozen=True)
class WeightFile:
    """One encoder's weights: a local file, or ``None`` for random initialisation."""

    path: Optional[Path]
    source: str  # human-readable: where the file came from

    @property
    def is_random(self) -> bool:
        return self.path is None

    def weights_id(self) -> str:
        """What the encoder's weights are, by content: ``sha256:<hex>`` of the file, or ``random (seed N)``.

        Why: a checkpoint is only meaningful on features of the weights it was
        trained on; the path or the file name says nothing about the content.
        """
        return RANDOM_WEIGHTS_ID if self.path is None else "sha256:" + file_sha256(self.path)


_SHA_CACHE: dict[tuple[str, int, int], str] = {}
_SHA_LOCK = threading.Lock()


def file_sha256(path: str | os.PathLike) -> str:
    """SHA-256 (hex) of a file, remembered per (path, size, modification time) in this process.

    Why: the weight files are ~100 MB; a pipeline or an extraction asks for the
    same file's identity more than once.
    """
    p = Path(path).resolve()
    try:
        st = p.stat()
    except OSError as exc:
        raise WeightsUnavailableError(f"weights file {path} cannot be read: {exc}") from exc
    key = (str(p), st.st_size, st.st_mtime_ns)
    with _SHA_LOCK:
        if key in _SHA_CACHE:
            return _SHA_CACHE[key]
    h = hashlib.sha256()
    try:
        with open(p, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    except OSError as exc:
        raise WeightsUnavailableError(f"weights file {path} cannot be read: {exc}") from exc
    with _SHA_LOCK:
        _SHA_CACHE[key] = h.hexdigest()
    return _SHA_CACHE[key]


@dataclass(frozen=True)
class EncoderWeights:
    """The weights of both encoders, resolved to local files."""

    face: WeightFile
    voice: WeightFile
    mode: str  # "pretrained", "random" or "local"

    @property
    def is_random(self) -> bool:
        return self.face.is_random or self.voice.is_random

    def describe(self) -> str:
        return f"face: {self.face.source}; voice: {self.voice.source}"


def _offline() -> bool:
    return any(
        os.environ.get(v, "").strip().lower() in ("1", "true", "yes", "on")
        for v in ("HF_HUB_OFFLINE", "FAA_OFFLINE")
    )


def torch_checkpoint_dir() -> Path:
    """The folder where torch (and facenet-pytorch) cache downloaded weights."""
    return Path(torch.hub.get_dir()).parent / "checkpoints"


def _existing_file(path: Path, what: str, how: str) -> Path:
    if not path.is_file():
        raise WeightsUnavailableError(f"{what} weights file not found: {path} ({how})")
    return path


def _face_pretrained() -> WeightFile:
    env = os.environ.get(FACE_ENV)
    if env:
        path = _existing_file(Path(env), "face", f"set by {FACE_ENV}")
        return WeightFile(path, f"InceptionResnetV1 VGGFace2 from {path}")
    cached = torch_checkpoint_dir() / FACE_WEIGHTS_FILE
    if not cached.is_file():
        if _offline():
            raise WeightsUnavailableError(_face_missing_message(cached, "offline mode is on"))
        cached.parent.mkdir(parents=True, exist_ok=True)
        log.info("downloading %s to %s", FACE_WEIGHTS_URL, cached)
        try:
            torch.hub.download_url_to_file(FACE_WEIGHTS_URL, str(cached), progress=False)
        except Exception as exc:  # network errors come in many types
            raise WeightsUnavailableError(_face_missing_message(cached, str(exc))) from exc
    return WeightFile(cached, f"InceptionResnetV1 VGGFace2 ({FACE_WEIGHTS_FILE}, cached)")


def _face_missing_message(cached: Path, why: str) -> str:
    return (
        f"face encoder weights {FACE_WEIGHTS_FILE} are not cached at {cached} and could not "
        f"be downloaded ({why}). Download {FACE_WEIGHTS_URL} on a machine with internet and "
        f"put it there, or set {FACE_ENV}=/path/to/{FACE_WEIGHTS_FILE}, or pass a weights "
        "directory holding it; use weights='random' only for tests"
    )


def _voice_pretrained() -> WeightFile:
    env = os.environ.get(VOICE_ENV)
    if env:
        path = _existing_file(Path(env), "voice", f"set by {VOICE_ENV}")
        return WeightFile(path, f"ECAPA-TDNN spkrec-ecapa-voxceleb from {path}")
    from huggingface_hub import hf_hub_download

    try:
        path = Path(hf_hub_download(VOICE_HUB_REPO, VOICE_WEIGHTS_FILE))
    except Exception as exc:  # offline, missing cache, network, auth
        raise WeightsUnavailableError(
            f"voice encoder weights {VOICE_HUB_REPO}/{VOICE_WEIGHTS_FILE} are not in the "
            f"Hugging Face cache and could not be downloaded ({type(exc).__name__}: {exc}). "
            f"Run `huggingface-cli download {VOICE_HUB_REPO} {VOICE_WEIGHTS_FILE}` on a "
            f"machine with internet, or set {VOICE_ENV}=/path/to/{VOICE_WEIGHTS_FILE}, or "
            "pass a weights directory holding it; use weights='random' only for tests"
        ) from exc
    return WeightFile(path, f"ECAPA-TDNN {VOICE_HUB_REPO} ({VOICE_WEIGHTS_FILE}, hub cache)")


def resolve_weights(
    weights: str | os.PathLike = "pretrained",
    face_file: str | os.PathLike | None = None,
    voice_file: str | os.PathLike | None = None,
) -> EncoderWeights:
    """Turn a weights choice into local files, downloading into the cache if allowed.

    ``face_file`` / ``voice_file`` override the choice for one encoder.
    Raises ``WeightsUnavailableError`` naming the missing file and how to provide it.
    """
    choice = str(weights)
    if choice == "random":
        face = WeightFile(None, "RANDOM (untrained InceptionResnetV1)")
        voice = WeightFile(None, "RANDOM (untrained ECAPA-TDNN)")
        mode = "random"
        log.warning(RANDOM_WARNING)
    elif choice == "pretrained":
        face = None if face_file else _face_pretrained()
        voice = None if voice_file else _voice_pretrained()
        mode = "pretrained"
    else:
        folder = Path(choice)
        if not folder.is_dir():
            raise WeightsUnavailableError(
                f"weights must be 'pretrained', 'random' or a directory; {folder} is not a directory"
            )
        hint = f"expected in the weights directory {folder}"
        face = None if face_file else WeightFile(
            _existing_file(folder / FACE_WEIGHTS_FILE, "face", hint), f"{folder / FACE_WEIGHTS_FILE}"
        )
        voice = None if voice_file else WeightFile(
            _existing_file(folder / VOICE_WEIGHTS_FILE, "voice", hint), f"{folder / VOICE_WEIGHTS_FILE}"
        )
        mode = "local"
    if face_file:
        path = _existing_file(Path(face_file), "face", "given as face_file")
        face = WeightFile(path, str(path))
        mode = "local" if mode != "random" else mode
    if voice_file:
        path = _existing_file(Path(voice_file), "voice", "given as voice_file")
        voice = WeightFile(path, str(path))
        mode = "local" if mode != "random" else mode
    assert face is not None and voice is not None
    return EncoderWeights(face=face, voice=voice, mode=mode)


def load_state_dict(path: Path, what: str) -> dict[str, torch.Tensor]:
    """Read a state dict without unpickling code (``weights_only``) or from safetensors."""
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise WeightsUnavailableError(f"{what} weights file {path} cannot be read: {exc}") from exc
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightsUnavailableError(f"{what} weights file {path} does not hold a state dict")
    return state


def load_into(module: torch.nn.Module, path: Path, what: str, ignore_prefixes: tuple[str, ...] = ()) -> None:
    """Load a state dict strictly (after dropping ``ignore_prefixes``), explaining mismatches.

    BatchNorm's ``num_batches_tracked`` counters may be absent (facenet-pytorch's
    VGGFace2 release file has none): they only matter for training with
    momentum=None, and torch's own strict load fills them in, so they are not
    counted as missing.
    """
    state = load_state_dict(path, what)
    state = {k: v for k, v in state.items() if not k.startswith(ignore_prefixes)}  # a plain dict: no version metadata
    own = module.state_dict()
    missing = sorted(k for k in set(own) - set(state) if not k.endswith(".num_batches_tracked"))
    unexpected = sorted(set(state) - set(own))
    wrong = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
    if missing or unexpected or wrong:
        raise WeightsUnavailableError(
            f"{what} weights file {path} does not fit the architecture: "
            f"{len(missing)} missing keys {missing[:3]}, {len(unexpected)} unexpected keys "
            f"{unexpected[:3]}, {len(wrong)} shape mismatches {wrong[:3]}"
        )
    module.load_state_dict(state)
