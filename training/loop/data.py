"""Training data views over feature sources: videos, pseudo-labels and pair sampling.

Unsupervised voice-face learning has one link between the modalities: a
face and a voice from the same video belong to the same person. So the unit
of training data is a video with at least one face item and one voice item.
Sampling is vectorised over item offsets so that a step costs microseconds.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np


def open_features(data_dir: str | Path) -> dict[str, Any]:
    """The voice and face feature sources of a data folder (stored or procedural world)."""
    root = Path(data_dir)
    if (root / "world.json").is_file() and not (root / "store.json").is_file():
        from training.synth import load_world

        world = load_world(root)
        return {"voice": world["voice"], "face": world["face"]}
    from training.features import FeatureStore

    store = FeatureStore(root)
    missing = {"voice", "face"} - set(store.modalities)
    if missing:
        raise ValueError(f"{root}: the feature store lacks {sorted(missing)} features")
    return {"voice": store["voice"], "face": store["face"]}


def _group(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Items sorted by key: (unique keys, order, starts, counts)."""
    order = np.argsort(keys, kind="stable")
    uniq, starts, counts = np.unique(keys[order], return_index=True, return_counts=True)
    return uniq, order, starts, counts


@dataclass
class PairBatch:
    voice_items: np.ndarray  # item indices into the voice source
    face_items: np.ndarray  # item indices into the face source
    labels: np.ndarray  # pseudo-label (or identity code) of each pair


class VideoIndex:
    """Videos of one split that have both a voice and a face item."""

    def __init__(self, voice, face, split: str = "train") -> None:
        v_items = np.flatnonzero(np.asarray(voice.splits) == split)
        f_items = np.flatnonzero(np.asarray(face.splits) == split)
        if len(v_items) == 0 or len(f_items) == 0:
            raise ValueError(f"no {split} items: {len(v_items)} voice and {len(f_items)} face items")
        v_keys = np.asarray(voice.videos)[v_items].astype(str)
        f_keys = np.asarray(face.videos)[f_items].astype(str)
        vu, vo, vs, vc = _group(v_keys)
        fu, fo, fs, fc = _group(f_keys)
        both, vi, fi = np.intersect1d(vu, fu, assume_unique=True, return_indices=True)
        if len(both) == 0:
            raise ValueError(f"no {split} video has both a face and a voice item (videos link the modalities)")
        self.videos = both
        self.voice_sorted, self.voice_start, self.voice_count = v_items[vo], vs[vi], vc[vi]
        self.face_sorted, self.face_start, self.face_count = f_items[fo], fs[fi], fc[fi]
        v_ident = np.asarray(voice.identities)[self.voice_sorted[self.voice_start]].astype(str)
        self.identities = v_ident  # may be "" where unknown
        self.voice_items = v_items
        self.face_items = f_items
        # item -> video position, for pooling embeddings per video
        self.voice_video = np.repeat(np.arange(len(both)), self.voice_count)
        self.voice_video_items = np.concatenate(
            [self.voice_sorted[s : s + c] for s, c in zip(self.voice_start, self.voice_count)]
        )
        self.face_video = np.repeat(np.arange(len(both)), self.face_count)
        self.face_video_items = np.concatenate(
            [self.face_sorted[s : s + c] for s, c in zip(self.face_start, self.face_count)]
        )

    def __len__(self) -> int:
        return len(self.videos)

    def identity_codes(self) -> np.ndarray:
        """Integer code of each video's true identity (-1 if unknown)."""
        known = self.identities != ""
        codes = np.full(len(self.videos), -1, dtype=np.int64)
        _, inv = np.unique(self.identities[known], return_inverse=True)
        codes[known] = inv
        return codes


class PairSampler:
    """Draws (voice, face) positive pairs of a step from labelled videos.

    Each pair starts from a random labelled video (the anchor) and takes one
    of its voice items; its face comes from a *different* video with the same
    label when ``diverse`` is on (so the pair shares no background, clothes
    or microphone), drawn uniformly among the label's other videos, or from
    the anchor itself when ``diverse`` is off.

    A video alone in its label has no other video to pair with. With
    ``singletons="skip"`` (the default) such videos are not drawn as anchors
    while any label has two videos or more: a same-video pair would teach the
    per-video nuisance that diverse positives exist to avoid. With
    ``singletons="same_video"`` they are drawn and keep a same-video positive.
    When every label holds one video (e.g. identity-linked photos, where the
    "video" is the person) same-video pairs are the only ones there are.
    ``singleton_videos`` counts the labelled videos alone in their label, and
    ``same_video_pairs`` the pairs drawn so far whose positive shares the
    anchor's video although diversity was asked for -- for the training log.
    """

    SINGLETONS = ("skip", "same_video")

    def __init__(self, index: VideoIndex, video_labels: np.ndarray, diverse: bool, singletons: str = "skip") -> None:
        if singletons not in self.SINGLETONS:
            raise ValueError(f"singletons must be one of {self.SINGLETONS}, got {singletons!r}")
        self.index = index
        self.labels = np.asarray(video_labels, dtype=np.int64)
        self.diverse = diverse
        self.singletons = singletons
        self.labelled = np.flatnonzero(self.labels >= 0)
        if len(self.labelled) == 0:
            raise ValueError("no labelled video to sample from")
        order = self.labelled[np.argsort(self.labels[self.labelled], kind="stable")]
        uniq, starts, counts = np.unique(self.labels[order], return_index=True, return_counts=True)
        self.by_label = order
        pos = np.searchsorted(uniq, self.labels[order])
        self.group_start = np.zeros(len(self.labels), dtype=np.int64)
        self.group_count = np.ones(len(self.labels), dtype=np.int64)
        self.group_start[order] = starts[pos]
        self.group_count[order] = counts[pos]
        # each labelled video's position inside its label group (by_label[group_start + position] is itself)
        self.group_position = np.zeros(len(self.labels), dtype=np.int64)
        self.group_position[order] = np.arange(len(order)) - starts[pos]
        alone = self.group_count[self.labelled] == 1
        self.singleton_videos = int(alone.sum()) if diverse else 0
        if diverse and singletons == "skip" and not alone.all():
            self.labelled = self.labelled[~alone]
        self.same_video_pairs = 0

    def sample(self, batch: int, rng: np.random.Generator) -> PairBatch:
        """``batch`` positive pairs; the draws depend only on ``rng``."""
        idx = self.index
        vids = rng.choice(self.labelled, size=batch, replace=len(self.labelled) < batch)
        voice = idx.voice_sorted[idx.voice_start[vids] + (rng.random(batch) * idx.voice_count[vids]).astype(np.int64)]
        face_vids = vids
        if self.diverse:
            start, count = self.group_start[vids], self.group_count[vids]
            # uniform over the count - 1 other members: draw an offset among them and step over the anchor
            offset = (rng.random(batch) * np.maximum(count - 1, 1)).astype(np.int64)
            offset += offset >= self.group_position[vids]
            alone = count == 1
            face_vids = np.where(alone, vids, self.by_label[start + np.where(alone, 0, offset)])
            self.same_video_pairs += int(alone.sum())
        face = idx.face_sorted[idx.face_start[face_vids] + (rng.random(batch) * idx.face_count[face_vids]).astype(np.int64)]
        return PairBatch(voice_items=voice, face_items=face, labels=self.labels[vids])


class IdentityLinked:
    """A feature source whose "video" of each item is its identity (``data.link: identity``).

    FAA pairs a face and a voice through the video they come from. Face sources
    without videos (VGGFace1 photos) share none with the recordings, so the
    supervised objectives can link the modalities through the identity instead:
    every "video" is then one person's items. Everything but ``videos`` is the
    wrapped source's.
    """

    def __init__(self, source: Any) -> None:
        self._source = source

    def __getattr__(self, name: str) -> Any:
        return getattr(self._source, name)

    @property
    def videos(self) -> np.ndarray:
        return np.asarray(self._source.identities)

