"""The inference pipeline: one voice, several photos -> every face scored as the speaker.

Built once from a checkpoint and encoder weights, then called with a
recording and a list of images. The encoders run once per call and all faces
go through the face encoder and the multimodal encoder in one batch.
"""

from __future__ import annotations

import math
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .checkpoint import load_checkpoint
from .device import pick_precision
from .threads import intra_op_threads
from .encoders import (
    FACE_DIM,
    FACE_GRID,
    FACE_TOKEN_DIM,
    RANDOM_WARNING,
    VOICE_DIM,
    VOICE_TOKEN_DIM,
    DetectedFace,
    EncoderWeights,
    FaceEncoder,
    VoiceEncoder,
    resample_to_16k,
    resolve_weights,
)
from .encoders.face import FaceFeatures
from .encoders.provenance import encoder_mismatch
from .errors import CheckpointError, EncoderMismatchError, InputError, NoFaceError, TooManyFacesError
from .media import MAX_AUDIO_SECONDS, MIN_AUDIO_SECONDS, Audio, check_audio, load_audio, load_image
from .face_cache import DEFAULT_MAX_IMAGES, CachedImage, FaceCache, content_key, encoder_identity
from .model import FAAModel

MAX_FACES = 8
#: MTCNN's smallest face (pixels of the <= 640 px detection copy) for matching requests. Measured on
#: ../shared/data/media (4 press photos, the benchmark's 640x480 fits, a VoxCeleb face sample): the
#: smallest face found with the encoder's default of 20 px is 72 px wide; at 40 px every one of those
#: faces is still found (box IoU >= 0.83 with today's, face probability within 0.013), with 63% fewer
#: detection FLOPs (1.07 -> 0.40 GFLOP per 640x480 photo) and ~0.55x the detection time. Faces under
#: 40 px (6% of the long side: a crowd in the distance) are not candidates. Pass min_face_size=20 to
#: ``from_checkpoint`` for the encoder's full pyramid (what training extraction uses).
MATCH_MIN_FACE_SIZE = 40


@dataclass
class FaceMatch:
    """One candidate face and how well it matches the voice."""

    image_index: int
    image_name: str
    face_index: int  # position within its image, left to right
    box: list[float]
    detection_probability: float
    crop: np.ndarray  # (160, 160, 3) uint8
    probability: float  # P(same person) from the match head
    cosine: float  # cosine of the aligned embeddings
    rank: int = 0  # 1 = most likely speaker
    face_attention: Optional[np.ndarray] = None  # (8, 8), sums to 1
    heatmap: Optional[np.ndarray] = None  # (160, 160) in [0, 1], for overlaying on the crop
    voice_attention: Optional[np.ndarray] = None  # (T,), sums to 1, one weight per voice token


@dataclass
class ImageReport:
    """What happened to one input image."""

    index: int
    name: str
    faces: int = 0
    error: Optional[str] = None
    error_type: Optional[str] = None


@dataclass
class MatchResult:
    faces: list[FaceMatch]  # ranked, best first
    images: list[ImageReport]
    voice_duration_s: float
    voice_token_spans: np.ndarray  # (T, 2) seconds
    warnings: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    #: images served from the face cache and faces that went through the face encoder in this call
    face_cache: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (crops and upsampled heatmaps are left out); non-finite numbers become None."""
        return json_safe(self._summary())

    def _summary(self) -> dict[str, Any]:
        def arr(a):
            return None if a is None else np.round(np.asarray(a, dtype=float), 6).tolist()

        return {
            "faces": [
                {
                    "rank": f.rank,
                    "image": f.image_name,
                    "image_index": f.image_index,
                    "face_index": f.face_index,
                    "probability": round(f.probability, 6),
                    "cosine": round(f.cosine, 6),
                    "box": [round(v, 1) for v in f.box],
                    "detection_probability": round(f.detection_probability, 4),
                    "face_attention": arr(f.face_attention),
                    "voice_attention": arr(f.voice_attention),
                }
                for f in self.faces
            ],
            "images": [vars(r).copy() for r in self.images],
            "voice": {"duration_s": round(self.voice_duration_s, 3), "token_spans_s": arr(self.voice_token_spans)},
            "warnings": list(self.warnings),
            "timings_s": {k: round(v, 4) for k, v in self.timings.items()},
        }


class MatchPipeline:
    """Checkpoint + frozen encoders. Safe to call from several threads at once."""

    def __init__(
        self,
        model: FAAModel,
        card: dict[str, Any],
        face_encoder: FaceEncoder,
        voice_encoder: VoiceEncoder,
        weights: EncoderWeights,
        checkpoint_name: str = "",
        max_faces: int = MAX_FACES,
        min_audio_s: float = MIN_AUDIO_SECONDS,
        max_audio_s: float = MAX_AUDIO_SECONDS,
        face_cache_size: int = DEFAULT_MAX_IMAGES,
        overlap_encoders: bool = True,
        share_threads: bool = True,
    ) -> None:
        self.model = model.eval()
        #: with overlap_encoders, give the voice and the photos' work half of the intra-op threads each
        self.share_threads = share_threads
        #: Recently seen images' faces, crops and features (``face_cache_size`` images, ~0.3 MB per face).
        self.face_cache = FaceCache(face_cache_size)
        self.overlap_encoders = overlap_encoders
        self._pool: Optional[ThreadPoolExecutor] = None
        self._executor_lock = threading.Lock()
        self.card = card
        self.face_encoder = face_encoder
        self.voice_encoder = voice_encoder
        self.weights = weights
        self.checkpoint_name = checkpoint_name
        self.max_faces = max_faces
        self.min_audio_s = min_audio_s
        self.max_audio_s = max_audio_s
        self.device = next(model.parameters()).device
        #: why the checkpoint's encoders differ from the loaded ones, when it was loaded anyway (None: they agree)
        self.encoder_mismatch: Optional[str] = None
        _check_dims(model, checkpoint_name)

    @classmethod
    def from_checkpoint(
        cls,
        checkpoint: str | os.PathLike,
        weights: str | os.PathLike = "pretrained",
        device: str | torch.device = "cpu",
        face_weights: str | os.PathLike | None = None,
        voice_weights: str | os.PathLike | None = None,
        min_face_size: int = MATCH_MIN_FACE_SIZE,
        allow_encoder_mismatch: bool = False,
        precision: str = "auto",
        **kwargs: Any,
    ) -> "MatchPipeline":
        """Load a checkpoint (folder or Hub id) and the encoders with the chosen weights.

        ``min_face_size``: MTCNN's smallest face in pixels of the detection copy
        (see ``MATCH_MIN_FACE_SIZE`` for the measured trade-off). A checkpoint
        whose card names other encoder weights than ``weights`` raises
        ``EncoderMismatchError``; ``allow_encoder_mismatch=True`` loads it with a
        warning in :meth:`model_warnings` instead. ``precision``: what the face
        and voice encoders compute in (``faa_core.device.pick_precision``:
        ``auto`` is bf16 where the device has it natively, else fp32).
        """
        dtype = pick_precision(precision, device)
        model, card = load_checkpoint(checkpoint, device)
        resolved = resolve_weights(weights, face_weights, voice_weights)
        mismatch = encoder_mismatch(card, resolved)
        if mismatch and not allow_encoder_mismatch:
            raise EncoderMismatchError(mismatch)
        rate = card.get("encoders", {}).get("voice", {}).get("token_rate_per_s") or 4.0
        face = FaceEncoder(resolved.face, device, min_face_size=min_face_size, precision=dtype)
        voice = VoiceEncoder(resolved.voice, device, token_rate=float(rate), precision=dtype)
        pipeline = cls(model, card, face, voice, resolved, str(checkpoint), **kwargs)
        pipeline.encoder_mismatch = mismatch
        return pipeline

    # -- what the page shows about the models --------------------------------
    @property
    def random_encoders(self) -> bool:
        return self.weights.is_random

    @property
    def synthetic_checkpoint(self) -> bool:
        return bool(self.card.get("synthetic"))

    def model_warnings(self) -> list[str]:
        out = []
        if self.random_encoders:
            out.append(RANDOM_WARNING)
        if self.synthetic_checkpoint:
            out.append(
                "SYNTHETIC CHECKPOINT: this model was trained on synthetic features, not real people; "
                "its probabilities do not say anything about real voices and faces"
            )
        if self.encoder_mismatch:
            out.append("ENCODER MISMATCH (served anyway, as asked): " + self.encoder_mismatch.split(" - pass ")[0]
                       + "; its probabilities are not the ones it was trained and evaluated for")
        return out

    # -- steps -----------------------------------------------------------------
    def prepare_audio(self, audio: Any) -> Audio:
        """Read and check a recording (path, bytes, (rate, array) or ``Audio``)."""
        if not isinstance(audio, Audio):
            # a caller's own path names the file in messages (the app passes decoded audio, never its temp paths)
            name = os.fspath(audio) if isinstance(audio, (str, os.PathLike)) else "the recording"
            audio = load_audio(audio, name=name, max_seconds=self.max_audio_s)
        return check_audio(audio, "the recording", self.min_audio_s, self.max_audio_s)

    def detect(
        self, images: Sequence[Any], names: Optional[Sequence[str]] = None, strict: bool = True
    ) -> tuple[list[tuple[int, int, DetectedFace]], list[ImageReport], list[str]]:
        """Detect faces in every image; bad images raise (strict) or are reported."""
        found, reports, warnings, _, _, _ = self._find_faces(images, names, strict)
        return found, reports, warnings

    def _cache_keys(self, images: Sequence[Any]) -> list[Optional[str]]:
        """Each image's face-cache key (None when the cache is off or the input cannot be hashed)."""
        if not self.face_cache.max_images:
            return [None] * len(images)
        identity = encoder_identity(self.face_encoder)
        return [content_key(img, identity) for img in images]

    def _find_faces(
        self, images: Sequence[Any], names: Optional[Sequence[str]], strict: bool, require: bool = True,
        keys: Optional[list[Optional[str]]] = None,
    ) -> tuple[list[tuple[int, int, DetectedFace]], list[ImageReport], list[str], list[Any], list[Optional[str]], int]:
        """:meth:`detect`, served from the face cache where it can, plus each image's cache entry and key
        and how many images came from the cache.

        Images not in the cache are decoded, then detected together
        (``FaceEncoder.detect_batch`` when the encoder has it: one MTCNN pass per
        group of equal detection size); an image given twice is detected once.
        ``keys``: the images' cache keys when the caller has them already.
        """
        names = list(names) if names is not None else [_image_name(im, i) for i, im in enumerate(images)]
        if len(names) != len(images):
            raise ValueError(f"{len(images)} images but {len(names)} names")
        cache = self.face_cache
        keys = self._cache_keys(images) if keys is None else keys
        entries: list[Optional[CachedImage]] = [cache.get(k) if k is not None else None for k in keys]
        from_cache = sum(e is not None for e in entries)
        errors: dict[int, InputError] = {}
        loaded: dict[int, Any] = {}
        first_of: dict[str, int] = {}
        for i, (img, name) in enumerate(zip(images, names)):
            if entries[i] is not None:
                continue
            if keys[i] is not None and keys[i] in first_of:
                continue  # the same image earlier in this call: detected once
            if keys[i] is not None:
                first_of[keys[i]] = i
            try:
                loaded[i] = load_image(img, name=name)
            except InputError as exc:
                errors[i] = exc
        order = list(loaded)
        for i, (faces, exc) in zip(order, self._detect_loaded([loaded[i] for i in order])):
            if exc is None:
                entries[i] = CachedImage(tuple(faces))
                cache.put(keys[i], entries[i])
            elif isinstance(exc, InputError):  # the detector's message does not know the image's name
                wrapped = type(exc)(f"image {names[i]}: {exc}")
                wrapped.__cause__ = exc
                errors[i] = wrapped
            else:
                raise exc
        for i, k in enumerate(keys):
            if entries[i] is None and i not in errors and k is not None and k in first_of:
                j = first_of[k]
                entries[i] = entries[j]
                if j in errors:
                    errors[i] = errors[j]
        found, reports, warnings = [], [], []
        for i, name in enumerate(names):
            report = ImageReport(index=i, name=name)
            reports.append(report)
            try:
                if i in errors:
                    raise errors[i]
                faces = entries[i].faces
                if not faces:
                    raise NoFaceError(f"no face found in image {name}")
            except InputError as exc:
                if strict:
                    raise
                report.error, report.error_type = str(exc), type(exc).__name__
                continue
            report.faces = len(faces)
            found += [(i, j, f) for j, f in enumerate(faces)]
        if not found and require:
            detail = "; ".join(r.error for r in reports if r.error) or "no images were given"
            raise NoFaceError(f"no face to score: {detail}")
        if len(found) > self.max_faces:
            message = f"{len(found)} faces were found; at most {self.max_faces} are scored at once"
            if strict:
                raise TooManyFacesError(message)
            found = sorted(found, key=lambda t: -t[2].probability)[: self.max_faces]
            found.sort(key=lambda t: (t[0], t[1]))
            warnings.append(message + f"; the {self.max_faces} most confident detections were kept")
        return found, reports, warnings, entries, keys, from_cache

    def _detect_loaded(self, images: list[Any]) -> list[tuple[list[DetectedFace], Optional[BaseException]]]:
        """Faces of decoded images, or the exception each one raised; batched when the encoder can."""
        if not images:
            return []
        batch = getattr(self.face_encoder, "detect_batch", None)
        if batch is not None and len(images) > 1:
            return [(list(r.faces), r.error) for r in batch(images)]
        out: list[tuple[list[DetectedFace], Optional[BaseException]]] = []
        for image in images:
            try:
                out.append((self.face_encoder.detect(image), None))
            except InputError as exc:
                out.append(([], exc))
        return out

    def _face_features(
        self, found: list[tuple[int, int, DetectedFace]], entries: list[Any], keys: list[Optional[str]]
    ) -> tuple[Optional[FaceFeatures], int]:
        """Features of the found faces: cached ones reused, the others encoded in one batch and cached.

        Returns the features in ``found`` order (None when nothing was found)
        and how many faces went through the encoder.
        """
        if not found:
            return None, 0
        need = [k for k, (i, j, _) in enumerate(found) if not entries[i].has_features(j)]
        if need:
            feats = self.face_encoder.encode([found[k][2].crop for k in need])
            updates: dict[int, dict[int, tuple[torch.Tensor, torch.Tensor]]] = {}
            for m, k in enumerate(need):
                i, j, _ = found[k]
                updates.setdefault(i, {})[j] = (feats.embeddings[m].clone(), feats.tokens[m].clone())
            for i, u in updates.items():
                entries[i] = entries[i].with_features(u)
                self.face_cache.put(keys[i], entries[i])
        emb = torch.stack([entries[i].embeddings[j] for i, j, _ in found])
        tok = torch.stack([entries[i].tokens[j] for i, j, _ in found])
        return FaceFeatures(embeddings=emb, tokens=tok), len(need)

    @torch.inference_mode()
    def prepare_images(self, images: Sequence[Any], names: Optional[Sequence[str]] = None) -> list[ImageReport]:
        """Detect and encode the faces of photos ahead of any voice, into the face cache.

        Why: the demo does the photos' work once, when they are added, so that
        every later match (a new recording, or each update of a live
        microphone) runs only the voice encoder and the fusion. Bad images are
        reported, never raised; at most ``max_faces`` faces are encoded.
        """
        found, reports, _, entries, keys, _ = self._find_faces(images, names, strict=False, require=False)
        self._face_features(found, entries, keys)
        return reports

    @torch.inference_mode()
    def __call__(
        self,
        audio: Any,
        images: Sequence[Any],
        names: Optional[Sequence[str]] = None,
        strict: bool = True,
        need_attention: bool = True,
    ) -> MatchResult:
        """Score every face in ``images`` against the voice in ``audio``.

        With ``strict=False`` an image without a usable face is reported in
        ``result.images`` and the others are still scored; errors in the audio
        always raise, since nothing can be scored without it.
        """
        t0 = time.perf_counter()
        timings: dict[str, float] = {}
        rec = self.prepare_audio(audio)
        wav = resample_to_16k(rec.samples, rec.sample_rate)
        timings["audio_load"] = time.perf_counter() - t0

        # The voice runs beside the photos' work (decode, detection, face encoder) when
        # overlap_encoders is on and there is photo work to do: MTCNN leaves cores idle between its
        # many small steps. The two then share the intra-op threads instead of each taking them all.
        threads = torch.get_num_threads()
        keys = self._cache_keys(images)  # hashed once: for this check and for the lookups below
        overlap = self.overlap_encoders and not self._faces_ready(keys)
        share = overlap and self.share_threads
        voice_threads, face_threads = (max(1, threads // 2), max(1, threads - threads // 2)) if share else (0, 0)
        voice_job = self._executor().submit(self._encode_voice, wav, voice_threads) if overlap else None
        try:
            with intra_op_threads(face_threads):
                t = time.perf_counter()
                found, reports, warnings, entries, keys, from_cache = self._find_faces(images, names, strict, keys=keys)
                timings["detection"] = time.perf_counter() - t

                t = time.perf_counter()
                face, encoded = self._face_features(found, entries, keys)
                timings["face_encoder"] = time.perf_counter() - t
        except BaseException:
            if voice_job is not None:
                voice_job.cancel()
            raise
        voice, timings["voice_encoder"] = voice_job.result() if voice_job is not None else self._encode_voice(wav)
        cache_use = {"images_from_cache": from_cache, "faces_encoded": encoded}

        t = time.perf_counter()
        probs, cosines, face_att, voice_att = self.score(voice, face, need_attention)
        timings["fusion"] = time.perf_counter() - t

        matches = []
        for k, (i, j, det) in enumerate(found):
            fa = None if face_att is None else face_att[k]
            matches.append(
                FaceMatch(
                    image_index=i,
                    image_name=reports[i].name,
                    face_index=j,
                    box=[float(v) for v in det.box],
                    detection_probability=det.probability,
                    crop=det.crop,
                    probability=float(probs[k]),
                    cosine=float(cosines[k]),
                    face_attention=fa,
                    heatmap=None if fa is None else upsample_heatmap(fa, det.crop.shape[0]),
                    voice_attention=None if voice_att is None else voice_att[k],
                )
            )
        matches.sort(key=lambda m: -m.probability)
        for r, m in enumerate(matches, 1):
            m.rank = r
        timings["total"] = time.perf_counter() - t0
        return MatchResult(
            faces=matches,
            images=reports,
            voice_duration_s=rec.duration_s,
            voice_token_spans=voice.spans,
            warnings=rec.warnings + warnings,
            timings=timings,
            face_cache=cache_use,
        )

    def _encode_voice(self, wav: torch.Tensor, threads: int = 0) -> tuple[Any, float]:
        """The voice encoder on a 16 kHz waveform, and its seconds (runs in a worker thread too).

        ``threads``: intra-op threads for this call (0: the thread's current count).
        """
        t = time.perf_counter()
        with torch.inference_mode(), intra_op_threads(threads):
            voice = self.voice_encoder.encode(wav.to(self.device))
        return voice, time.perf_counter() - t

    def _faces_ready(self, keys: list[Optional[str]]) -> bool:
        """Whether every image's faces and features are already in the face cache (no photo work to do)."""
        for key in keys:
            entry = self.face_cache.peek(key)
            if entry is None or not all(entry.has_features(j) for j in range(len(entry.faces))):
                return False
        return True

    def _executor(self) -> ThreadPoolExecutor:
        """The worker threads that run voice encoders beside the face work (created on first use)."""
        with self._executor_lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="faa-voice")
            return self._pool

    def score(self, voice, face, need_attention: bool = True):
        """Match probabilities, cosines and attention for one voice against N faces."""
        n = face.embeddings.shape[0]
        cfg = self.model.config
        v_glob = voice.embedding[None].to(self.device)
        v_emb = self.model.embed_voice(v_glob)
        f_emb = self.model.embed_face(face.embeddings.to(self.device))
        cosines = (f_emb @ v_emb[0]).float().cpu().numpy()
        v_tokens = voice.tokens[None].expand(n, -1, -1).to(self.device) if cfg.voice_token_dim else None
        f_tokens = face.tokens.to(self.device) if cfg.face_token_dim else None
        out = self.model.match(
            None, None, v_tokens, f_tokens, need_weights=need_attention,
            voice_emb=v_emb.expand(n, -1), face_emb=f_emb,
        )
        probs = FAAModel.match_probability(out.logits).cpu().numpy()
        fa = None if out.face_attention is None else out.face_attention.float().cpu().numpy()
        va = None if out.voice_attention is None else out.voice_attention.float().cpu().numpy()
        return probs, cosines, fa, va

    def warmup(self) -> None:
        """One call on generated input so that the first user does not pay for lazy set-up."""
        from .encoders.face import CROP_SIZE

        rng = np.random.default_rng(0)
        wav = torch.from_numpy((0.1 * rng.standard_normal(16000 * 2)).astype(np.float32))
        crop = rng.integers(0, 255, (CROP_SIZE, CROP_SIZE, 3), dtype=np.uint8)
        with torch.inference_mode():
            self.score(self.voice_encoder.encode(wav.to(self.device)), self.face_encoder.encode([crop] * 2))
        from PIL import Image

        self.face_encoder.detect(Image.fromarray(rng.integers(0, 255, (240, 320, 3), dtype=np.uint8)))


def json_safe(obj: Any) -> Any:
    """``obj`` with every NaN/inf float replaced by None, so that ``json.dumps`` writes valid JSON.

    Why: Python's json writes bare ``NaN``/``Infinity``, which JSON parsers reject.
    """
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, np.generic):
        return json_safe(obj.item())
    return obj


def upsample_heatmap(attention: np.ndarray, size: int) -> np.ndarray:
    """An attention grid resized to the crop (bilinear) and scaled to [0, 1]."""
    t = torch.as_tensor(attention, dtype=torch.float32)[None, None]
    up = F.interpolate(t, size=(size, size), mode="bilinear", align_corners=False)[0, 0]
    up = up - up.min()
    return (up / up.max().clamp_min(1e-12)).numpy()


def _image_name(img: Any, index: int) -> str:
    if isinstance(img, (str, os.PathLike)):
        return os.path.basename(os.fspath(img)) or f"image {index + 1}"
    return f"image {index + 1}"


def _check_dims(model: FAAModel, name: str) -> None:
    cfg = model.config
    problems = []
    if cfg.face_dim != FACE_DIM:
        problems.append(f"face_dim {cfg.face_dim} (the face encoder gives {FACE_DIM})")
    if cfg.voice_dim != VOICE_DIM:
        problems.append(f"voice_dim {cfg.voice_dim} (the voice encoder gives {VOICE_DIM})")
    if cfg.face_token_dim not in (0, FACE_TOKEN_DIM):
        problems.append(f"face_token_dim {cfg.face_token_dim} (the face encoder gives {FACE_TOKEN_DIM})")
    if cfg.face_token_dim and tuple(cfg.face_grid) != FACE_GRID:
        problems.append(f"face_grid {cfg.face_grid} (the face encoder gives {FACE_GRID})")
    if cfg.voice_token_dim not in (0, VOICE_TOKEN_DIM):
        problems.append(f"voice_token_dim {cfg.voice_token_dim} (the voice encoder gives {VOICE_TOKEN_DIM})")
    if problems:
        raise CheckpointError(f"checkpoint {name} does not fit this package's encoders: " + "; ".join(problems))
