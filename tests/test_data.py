"""training.loop.data: the pair sampler draws what its docstring promises."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import chisquare

from training.features import ItemTable
from training.loop.data import PairSampler, VideoIndex


def _index(n_videos: int, identities: list[str] | None = None) -> VideoIndex:
    """One voice and one face item per video; item k belongs to video k."""
    vids = [f"v{k:03d}" for k in range(n_videos)]
    ident = identities or ["p"] * n_videos
    voice = ItemTable([f"a{k}" for k in range(n_videos)], vids, ident, ["train"] * n_videos)
    face = ItemTable([f"f{k}" for k in range(n_videos)], vids, ident, ["train"] * n_videos)
    return VideoIndex(voice, face, "train")


def _face_video_counts(sampler: PairSampler, anchor: int, draws: int, seed: int = 0) -> np.ndarray:
    """How often each video gives the face when every pair starts from video ``anchor``."""
    idx = sampler.index
    only = PairSampler(idx, sampler.labels, sampler.diverse)
    only.labelled = np.array([anchor])  # every anchor is this video
    batch = only.sample(draws, np.random.default_rng(seed))
    assert (idx.voice_video[np.searchsorted(idx.voice_video_items, batch.voice_items)] == anchor).all()
    face_video = idx.face_video[np.searchsorted(idx.face_video_items, batch.face_items)]
    return np.bincount(face_video, minlength=len(idx))


@pytest.mark.parametrize("anchor", [0, 1, 3])
def test_diverse_positive_is_uniform_over_the_other_videos_of_the_label(anchor):
    idx = _index(5)
    labels = np.array([0, 0, 0, 0, 1])  # a group of four videos, one video alone
    sampler = PairSampler(idx, labels, diverse=True)
    counts = _face_video_counts(sampler, anchor, 6000, seed=anchor)
    assert counts[anchor] == 0 and counts[4] == 0  # never itself, never another label
    others = np.delete(counts[:4], anchor)
    assert others.sum() == 6000
    # uniform over the three others (before the fix: anchor 0 gave {1: ~2/3, 2: ~1/3, 3: 0})
    assert chisquare(others).pvalue > 1e-3, others


def test_same_video_positives_when_diversity_is_off():
    idx = _index(4)
    sampler = PairSampler(idx, np.array([0, 0, 1, 1]), diverse=False)
    counts = _face_video_counts(sampler, 2, 500)
    assert counts.tolist() == [0, 0, 500, 0]


def test_singleton_anchors_are_skipped_and_counted():
    """A video alone in its label has no other video to pair with: it is not drawn, and the count says so."""
    idx = _index(6)
    labels = np.array([0, 0, 1, 2, 2, -1])  # video 2 and 5: no diverse positive (alone / unlabelled)
    sampler = PairSampler(idx, labels, diverse=True)
    assert sampler.singleton_videos == 1
    batch = sampler.sample(4000, np.random.default_rng(0))
    voice_video = idx.voice_video[np.searchsorted(idx.voice_video_items, batch.voice_items)]
    face_video = idx.face_video[np.searchsorted(idx.face_video_items, batch.face_items)]
    assert set(np.unique(voice_video)) == {0, 1, 3, 4}
    assert (voice_video != face_video).all()
    assert (labels[voice_video] == labels[face_video]).all()
    assert (batch.labels == labels[voice_video]).all()
    # without diversity nobody is left out
    plain = PairSampler(idx, labels, diverse=False)
    assert plain.singleton_videos == 0
    assert set(np.unique(plain.sample(4000, np.random.default_rng(0)).labels)) == {0, 1, 2}


def test_only_singletons_fall_back_to_same_video_positives():
    """Labels with one video each (identity-linked photos): there is no other video, so the pair shares it."""
    idx = _index(3)
    sampler = PairSampler(idx, np.array([0, 1, 2]), diverse=True)
    assert sampler.singleton_videos == 3
    batch = sampler.sample(300, np.random.default_rng(0))
    voice_video = idx.voice_video[np.searchsorted(idx.voice_video_items, batch.voice_items)]
    face_video = idx.face_video[np.searchsorted(idx.face_video_items, batch.face_items)]
    assert (voice_video == face_video).all() and len(np.unique(voice_video)) == 3
