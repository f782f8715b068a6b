"""Faces encoded once: a bounded, thread-safe LRU of each image's detections, crops and face features.

Why: in the demo the same photos are scored against one voice after another
(a new recording, or the growing recording of a live microphone). Detection
and the face encoder are most of a request's work and depend only on the
image, so the pipeline keeps their results per image and a repeated image
costs a hash instead of MTCNN + InceptionResnetV1.

Key: a BLAKE2b digest of the image's content (the file's bytes for a path or
bytes; the decoded pixels, size and mode for a PIL image or an array) plus the
face encoder's identity (its weights and every detection setting), so a
change of encoder can never serve stale faces.

Memory per entry: per face the 160x160x3 uint8 crop (76,800 B), the 512-d
float32 embedding (2,048 B) and the 64x896 float32 token map (229,376 B), about
0.3 MB per face, plus the box and probability; an image without a face costs
only its key. ``FaceCache(max_images=64)`` (the pipeline's default) therefore
holds about 20 MB for single-face photos. ``stats()`` reports the bytes held.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch

#: Images kept by default (about 0.3 MB per cached face, see the module doc).
DEFAULT_MAX_IMAGES = 64
#: Files above this size are not hashed (load_image refuses them anyway).
_MAX_HASH_BYTES = 50 * 1024 * 1024


@dataclass(frozen=True)
class CachedImage:
    """One image's face work: the detections, and per face its features once encoded.

    Immutable once stored: filling in features makes a new entry
    (``with_features``), so a reader never sees a half-written one.
    """

    faces: tuple  # DetectedFace, left to right, as the detector gave them
    embeddings: tuple = field(default=())  # per face: (512,) tensor or None
    tokens: tuple = field(default=())  # per face: (64, 896) tensor or None

    def __post_init__(self) -> None:
        n = len(self.faces)
        if not self.embeddings:
            object.__setattr__(self, "embeddings", (None,) * n)
        if not self.tokens:
            object.__setattr__(self, "tokens", (None,) * n)

    def has_features(self, j: int) -> bool:
        return self.embeddings[j] is not None

    def with_features(self, updates: dict[int, tuple[torch.Tensor, torch.Tensor]]) -> "CachedImage":
        """A copy with the features of faces ``j`` set from ``{j: (embedding, tokens)}``."""
        emb, tok = list(self.embeddings), list(self.tokens)
        for j, (e, t) in updates.items():
            emb[j], tok[j] = e, t
        return CachedImage(self.faces, tuple(emb), tuple(tok))

    def nbytes(self) -> int:
        """Bytes held by the crops and feature tensors."""
        total = sum(int(np.asarray(f.crop).nbytes) for f in self.faces)
        for t in self.embeddings + self.tokens:
            if t is not None:
                total += t.element_size() * t.nelement()
        return total


def encoder_identity(face_encoder: Any) -> str:
    """A string that changes whenever the face encoder could give other faces or features.

    Weights are identified by their file (path, size, modification time) or
    as the seeded random initialisation; detection by every setting that
    changes which faces are found or how they are cropped.
    """
    weights = getattr(face_encoder, "weights", None)
    path = getattr(weights, "path", None)
    if path is None:
        wid = f"random:{getattr(weights, 'source', '')}"
    else:
        try:
            st = Path(path).stat()
            wid = f"{Path(path).resolve()}:{st.st_size}:{st.st_mtime_ns}"
        except OSError:
            wid = str(path)
    det = getattr(face_encoder, "detector", None)
    parts = [
        wid,
        str(getattr(face_encoder, "device", "")),
        str(getattr(face_encoder, "precision", "")),
        str(getattr(face_encoder, "detect_max_side", "")),
        str(getattr(face_encoder, "min_face_probability", "")),
        str(getattr(face_encoder, "margin", "")),
        str(getattr(det, "min_face_size", "")),
        str(getattr(det, "thresholds", "")),
        str(getattr(det, "factor", "")),
        type(face_encoder).__qualname__,
    ]
    return "|".join(parts)


def content_key(src: Any, identity: str) -> Optional[str]:
    """The cache key of an image input, or None when it cannot be hashed cheaply and safely.

    A path is hashed by its bytes (no decoding: a hit skips the JPEG decode
    too); a path that is missing, not a regular file, empty or too large gives
    None, so the normal loader reports the problem.
    """
    h = hashlib.blake2b(digest_size=20)
    h.update(identity.encode())
    if isinstance(src, (str, os.PathLike)):
        p = Path(src)
        try:
            if not p.is_file():
                return None
            size = p.stat().st_size
            if size == 0 or size > _MAX_HASH_BYTES:
                return None
            data = p.read_bytes()
        except OSError:
            return None
        h.update(b"bytes:")
        h.update(data)
    elif isinstance(src, (bytes, bytearray)):
        if len(src) == 0 or len(src) > _MAX_HASH_BYTES:
            return None
        h.update(b"bytes:")
        h.update(bytes(src))
    elif isinstance(src, np.ndarray):
        h.update(f"array:{src.shape}:{src.dtype}:".encode())
        h.update(np.ascontiguousarray(src).tobytes())
    else:
        try:
            from PIL import Image
        except ImportError:  # pragma: no cover - Pillow is a dependency
            return None
        if not isinstance(src, Image.Image):
            return None
        h.update(f"pil:{src.size}:{src.mode}:".encode())
        h.update(src.tobytes())
    return h.hexdigest()


class FaceCache:
    """At most ``max_images`` images' face work, least recently used evicted first. Thread-safe.

    ``max_images=0`` keeps nothing (every lookup misses).
    """

    def __init__(self, max_images: int = DEFAULT_MAX_IMAGES) -> None:
        if max_images < 0:
            raise ValueError(f"max_images must be >= 0, got {max_images}")
        self.max_images = int(max_images)
        self._entries: OrderedDict[str, CachedImage] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key: Optional[str]) -> Optional[CachedImage]:
        """The entry for ``key`` (now the most recently used), or None."""
        with self._lock:
            entry = None if key is None else self._entries.get(key)
            if entry is None:
                self.misses += 1
                return None
            self._entries.move_to_end(key)
            self.hits += 1
            return entry

    def peek(self, key: Optional[str]) -> Optional[CachedImage]:
        """The entry for ``key`` or None, without counting a hit or miss or changing the eviction order."""
        with self._lock:
            return None if key is None else self._entries.get(key)

    def put(self, key: Optional[str], entry: CachedImage) -> None:
        """Store (or replace) an entry; evicts the least recently used beyond ``max_images``."""
        if key is None or self.max_images == 0:
            return
        with self._lock:
            self._entries[key] = entry
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_images:
                self._entries.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self.hits = self.misses = 0

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def __contains__(self, key: object) -> bool:
        with self._lock:
            return key in self._entries

    def stats(self) -> dict[str, int]:
        """Entries, faces and bytes held, and the hit/miss counts since the last clear."""
        with self._lock:
            entries = list(self._entries.values())
            hits, misses = self.hits, self.misses
        return {
            "images": len(entries),
            "faces": sum(len(e.faces) for e in entries),
            "bytes": sum(e.nbytes() for e in entries),
            "hits": hits,
            "misses": misses,
            "max_images": self.max_images,
        }
