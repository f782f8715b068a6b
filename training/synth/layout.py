"""Who is in a synthetic world and which files it has: identities, videos, items.

The layout (a :class:`WorldLayout`) is separate from the generative model so the
same model can fill either a world laid out from a preset (:func:`make_layout`)
or one bound to a real protocol's file names (``protocol.bind_layout``).

File names copy the real datasets so that paths look the same to every tool:

* voices  ``id10001/<11-char video>/00001.wav`` (VoxCeleb1);
* training faces ``<Name>/<video>/0001375.jpg`` (frames of the same videos, as
  in VoxCeleb1 face tracks: the face and voice of a video share its nuisance);
* val/test faces ``<Name>/00000042.jpg`` (VGGFace1-style photos, each its own
  "video"), so evaluation positives never share a video with the voice, as in
  the Wen 2021 protocol.

A video key is ``<VoxCeleb1 id>/<video>`` (a photo's key is its path without
the extension); items.csv's ``identity`` column is the VoxCeleb1 id for both
modalities, the key every protocol reader maps paths to.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from faa_core.fileio import atomic_write_text
from training.features import MODALITIES

from .presets import SPLITS, WorldSpec

_YT_ALPHABET = np.array(list("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"))
_ONSETS = ["b", "c", "d", "f", "g", "h", "j", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z", "br", "ch", "st", "tr", "sh"]
_VOWELS = ["a", "e", "i", "o", "u", "ai", "ea", "ou"]


@dataclass
class ItemList:
    """Items of one modality: file id, video index, identity index, split (item-index order)."""

    ids: np.ndarray
    video: np.ndarray
    identity: np.ndarray
    split: np.ndarray

    def __len__(self) -> int:
        return int(self.ids.shape[0])


@dataclass
class WorldLayout:
    """Identities (VoxCeleb1 id, VGGFace1-style name, gender m/f, split), videos and items of a synthetic world.

    Saved under ``WORLD/manifest/``; not to be confused with
    :class:`training.ingest.manifest.Manifest`, the list of real media files an
    extraction reads.
    """

    vox_ids: np.ndarray
    names: np.ndarray
    genders: np.ndarray
    nationalities: np.ndarray
    id_splits: np.ndarray
    video_keys: np.ndarray
    video_identity: np.ndarray
    items: dict[str, ItemList]

    @property
    def n_identities(self) -> int:
        return int(self.vox_ids.shape[0])

    def item_table(self, modality: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(ids, video keys, identity keys, splits) as str arrays, the items.csv columns."""
        it = self.items[modality]
        return it.ids, self.video_keys[it.video], self.vox_ids[it.identity], it.split

    # -- files --------------------------------------------------------------------

    def save(self, folder: Path) -> None:
        """manifest/identities.csv, videos.csv, face.csv, voice.csv (plain CSV, readable anywhere)."""
        folder.mkdir(parents=True, exist_ok=True)
        _write_csv(
            folder / "identities.csv",
            ("vox_id", "name", "gender", "nationality", "split"),
            zip(self.vox_ids, self.names, self.genders, self.nationalities, self.id_splits),
        )
        _write_csv(folder / "videos.csv", ("video", "identity"), zip(self.video_keys, self.vox_ids[self.video_identity]))
        for m in MODALITIES:
            _write_csv(folder / f"{m}.csv", ("id", "video", "identity", "split"), zip(*self.item_table(m)))

    @classmethod
    def load(cls, folder: Path) -> "WorldLayout":
        ident = _read_csv(folder / "identities.csv")
        vox = np.asarray(ident["vox_id"], dtype=str)
        id_index = {v: i for i, v in enumerate(vox.tolist())}
        vids = _read_csv(folder / "videos.csv")
        keys = np.asarray(vids["video"], dtype=str)
        key_index = {k: i for i, k in enumerate(keys.tolist())}
        items: dict[str, ItemList] = {}
        for m in MODALITIES:
            rows = _read_csv(folder / f"{m}.csv")
            items[m] = ItemList(
                ids=np.asarray(rows["id"], dtype=str),
                video=np.array([key_index[k] for k in rows["video"]], dtype=np.int64),
                identity=np.array([id_index[k] for k in rows["identity"]], dtype=np.int64),
                split=np.asarray(rows["split"], dtype=str),
            )
        return cls(
            vox_ids=vox,
            names=np.asarray(ident["name"], dtype=str),
            genders=np.asarray(ident["gender"], dtype=str),
            nationalities=np.asarray(ident["nationality"], dtype=str),
            id_splits=np.asarray(ident["split"], dtype=str),
            video_keys=keys,
            video_identity=np.array([id_index[k] for k in vids["identity"]], dtype=np.int64),
            items=items,
        )


def _write_csv(path: Path, header: tuple[str, ...], rows) -> None:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    w.writerows(rows)
    atomic_write_text(path, buf.getvalue())


def _read_csv(path: Path) -> dict[str, list[str]]:
    with open(path, encoding="utf-8", newline="") as fh:
        reader = csv.reader(fh)
        header = next(reader)
        cols: dict[str, list[str]] = {h: [] for h in header}
        for row in reader:
            for h, v in zip(header, row):
                cols[h].append(v)
    return cols


# ---------------------------------------------------------------------------
# building blocks shared with protocol binding
# ---------------------------------------------------------------------------


class LayoutBuilder:
    """Accumulates videos and items; hands out fresh, unique video ids and names."""

    def __init__(self, rng: np.random.Generator) -> None:
        self.rng = rng
        self.video_keys: list[str] = []
        self.video_identity: list[int] = []
        self._video_index: dict[str, int] = {}
        self.items: dict[str, dict[str, list]] = {m: {"ids": [], "video": [], "identity": [], "split": []} for m in MODALITIES}
        self._item_ids: dict[str, set[str]] = {m: set() for m in MODALITIES}
        self._yt_used: set[str] = set()

    def youtube_id(self) -> str:
        while True:
            yt = "".join(self.rng.choice(_YT_ALPHABET, size=11))
            if yt not in self._yt_used:
                self._yt_used.add(yt)
                return yt

    def video(self, key: str, identity: int) -> int:
        """Index of video ``key`` (created on first use)."""
        i = self._video_index.get(key)
        if i is None:
            i = len(self.video_keys)
            self._video_index[key] = i
            self.video_keys.append(key)
            self.video_identity.append(identity)
            for part in key.split("/")[1:2]:
                self._yt_used.add(part)
        elif self.video_identity[i] != identity:
            raise ValueError(f"video {key!r} is used by two identities")
        return i

    def has_item(self, modality: str, item_id: str) -> bool:
        return item_id in self._item_ids[modality]

    def item(self, modality: str, item_id: str, video: int, identity: int, split: str) -> None:
        if item_id in self._item_ids[modality]:
            raise ValueError(f"{modality} item {item_id!r} laid out twice")
        self._item_ids[modality].add(item_id)
        d = self.items[modality]
        d["ids"].append(item_id)
        d["video"].append(video)
        d["identity"].append(identity)
        d["split"].append(split)

    def add_training_videos(self, spec: WorldSpec, identity: int, vox: str, name: str, n_videos: int, split: str = "train") -> None:
        """Videos with face frames and voice utterances (the same-video link)."""
        for _ in range(n_videos):
            yt = self.youtube_id()
            v = self.video(f"{vox}/{yt}", identity)
            frames = np.sort(self.rng.choice(4000, size=spec.frames_per_video, replace=False)) * 25 + 25
            for fr in frames:
                self.item("face", f"{name}/{yt}/{int(fr):07d}.jpg", v, identity, split)
            for u in range(spec.utterances_per_video):
                self.item("voice", f"{vox}/{yt}/{u + 1:05d}.wav", v, identity, split)

    def add_eval_items(self, spec: WorldSpec, identity: int, vox: str, name: str, n_videos: int, split: str) -> None:
        """Voice-only videos plus VGGFace-style photos (each photo its own video)."""
        for _ in range(n_videos):
            yt = self.youtube_id()
            v = self.video(f"{vox}/{yt}", identity)
            for u in range(spec.utterances_per_video):
                self.item("voice", f"{vox}/{yt}/{u + 1:05d}.wav", v, identity, split)
        n_photos = n_videos * spec.frames_per_video
        numbers = np.sort(self.rng.choice(max(1000, 4 * n_photos), size=n_photos, replace=False)) + 1
        for k in numbers:
            stem = f"{name}/{int(k):08d}"
            self.item("face", f"{stem}.jpg", self.video(stem, identity), identity, split)

    def items_of(self, modality: str) -> ItemList:
        d = self.items[modality]
        return ItemList(
            ids=np.asarray(d["ids"], dtype=str),
            video=np.asarray(d["video"], dtype=np.int64),
            identity=np.asarray(d["identity"], dtype=np.int64),
            split=np.asarray(d["split"], dtype=str),
        )


def synthetic_names(rng: np.random.Generator, n: int) -> list[str]:
    """Unique pronounceable ``First_Last`` names (VGGFace1 style, clearly not real people's)."""

    def word(k: int) -> str:
        parts = [str(rng.choice(_ONSETS)) + str(rng.choice(_VOWELS)) for _ in range(k)]
        return "".join(parts).capitalize()

    out: list[str] = []
    seen: set[str] = set()
    while len(out) < n:
        name = f"{word(int(rng.integers(2, 4)))}_{word(int(rng.integers(2, 4)))}"
        if name not in seen:
            seen.add(name)
            out.append(name)
    return out


def make_layout(spec: WorldSpec, seed: int) -> WorldLayout:
    """Identities split train/val/test, then their videos and items, all from ``seed``."""
    rng = np.random.default_rng([int(seed), 11])
    counts = [spec.identities[s] for s in SPLITS]
    n = sum(counts)
    vox = np.array([f"id{10001 + i}" for i in range(n)])
    names = np.array(synthetic_names(rng, n))
    genders = np.where(rng.random(n) < spec.traits.gender_p, "f", "m")
    splits = np.repeat(np.array(SPLITS), counts)
    b = LayoutBuilder(rng)
    for i in range(n):
        s = str(splits[i])
        if s == "train":
            b.add_training_videos(spec, i, vox[i], names[i], spec.videos_per_identity[s])
        else:
            b.add_eval_items(spec, i, vox[i], names[i], spec.videos_per_identity[s], s)
    return WorldLayout(
        vox_ids=vox,
        names=names,
        genders=genders.astype(str),
        nationalities=np.full(n, "Synthland"),
        id_splits=splits.astype(str),
        video_keys=np.asarray(b.video_keys, dtype=str),
        video_identity=np.asarray(b.video_identity, dtype=np.int64),
        items={m: b.items_of(m) for m in MODALITIES},
    )
