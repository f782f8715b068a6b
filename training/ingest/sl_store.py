"""The store side of an SL import: face names to VoxCeleb1 ids, videos, splits, and the feature store itself.

Part of ``python -m training.import_sl`` (see :mod:`training.ingest.import_sl`).
"""

from __future__ import annotations

import csv
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Optional

from training.features import FeatureStoreWriter
from training.ingest.sl_pickles import SLImportError
from training.ingest.sl_release import SLRelease, eval_kind

def first_component(path: str) -> str:
    return path.replace("\\", "/").partition("/")[0]


@dataclass
class IdentityTable:
    """Face name folder -> VoxCeleb1 id, with where each mapping came from and any metadata."""

    face_to_voice: dict[str, str]
    source: dict[str, str]  # face name -> "table" | "inferred"
    meta: dict[str, tuple[str, str]]  # VoxCeleb1 id -> (gender, nationality)
    conflicts: list[str]

    def of_face(self, path: str) -> str:
        first = first_component(path)
        return self.face_to_voice.get(first, first)

    @staticmethod
    def of_voice(path: str) -> str:
        return first_component(path)

    @staticmethod
    def face_names(release: SLRelease) -> set[str]:
        """The name folders of the release's face paths."""
        return {first_component(p) for p in release.faces}


def read_identity_tables(folder: str | Path) -> tuple[dict[str, str], dict[str, tuple[str, str]]]:
    """VGGFace1 name -> VoxCeleb1 id (and id -> gender, nationality) from protocol identity files.

    Reads Wen 2021's ``vox1_{train,val,test}.csv`` (comma-separated) and/or
    Nagrani 2018's ``vox1_meta.csv`` (tab-separated), every row including
    ``Set=none`` ones: the mapping is a fact about the people, not the protocol.
    """
    folder = Path(folder)
    if folder.is_file():
        files = [folder]
    else:
        files = sorted(folder.glob("vox1_*.csv"))
    if not files:
        raise FileNotFoundError(f"{folder}: no vox1_*.csv identity table (Wen 2021 or Nagrani 2018 protocol folder)")
    mapping: dict[str, str] = {}
    meta: dict[str, tuple[str, str]] = {}
    for path in files:
        with open(path, encoding="utf-8-sig", newline="") as fh:
            first_line = fh.readline()
            fh.seek(0)
            reader = csv.reader(fh, delimiter="\t" if "\t" in first_line else ",")
            header = [h.strip().replace(" ", "_") for h in next(reader, [])]
            if "VoxCeleb1_ID" not in header or "VGGFace1_ID" not in header:
                raise SLImportError(f"{path}:1: expected VoxCeleb1_ID and VGGFace1_ID columns; got {header}")
            iv, iface = header.index("VoxCeleb1_ID"), header.index("VGGFace1_ID")
            ig = header.index("Gender") if "Gender" in header else None
            inat = header.index("Nationality") if "Nationality" in header else None
            for row in reader:
                if len(row) <= max(iv, iface) or not row[iv].strip():
                    continue
                vid, name = row[iv].strip(), row[iface].strip()
                if mapping.get(name, vid) != vid:
                    raise SLImportError(f"{path}:{reader.line_num}: {name} is mapped to both {mapping[name]} and {vid}")
                mapping[name] = vid
                get = lambda i: row[i].strip() if i is not None and i < len(row) else ""  # noqa: E731
                meta[vid] = (get(ig), get(inat))
    return mapping, meta


def build_identities(release: SLRelease, table: Optional[Mapping[str, str]] = None,
                     meta: Optional[Mapping[str, tuple[str, str]]] = None) -> IdentityTable:
    """Map every face name folder to a VoxCeleb1 id: the given table first, else a vote over the release."""
    votes: dict[str, Counter] = defaultdict(Counter)
    for movie, jpgs in release.movie2jpg.items():
        vids = {first_component(w) for w in release.movie2wav.get(movie, ())}
        if len(vids) == 1:
            vid = next(iter(vids))
            for name in {first_component(j) for j in jpgs}:
                votes[name][vid] += 1
    for lists in release.evals.values():
        for voice, face in lists.same:
            votes[first_component(face)][first_component(voice)] += 1
    face_names = {first_component(p) for p in release.faces}
    table = dict(table or {})
    mapping: dict[str, str] = {}
    source: dict[str, str] = {}
    conflicts: list[str] = []
    # voice id -> (face name, votes): one face name per person; table mappings always win
    claimed: dict[str, tuple[str, float]] = {vid: (name, float("inf")) for name, vid in table.items() if name in face_names}
    for name in sorted(face_names):
        if name in table:
            mapping[name], source[name] = table[name], "table"
            continue
        if not votes.get(name):
            continue
        (vid, n), *rest = votes[name].most_common()
        if rest and rest[0][1] == n:
            conflicts.append(f"{name}: tie between {vid} and {rest[0][0]} ({n} votes each); left unmapped")
            continue
        if rest:
            conflicts.append(f"{name}: {vid} by {n} votes, also {dict(rest)}")
        if vid in claimed:
            other, m = claimed[vid]
            conflicts.append(f"{vid}: claimed by both {other} ({m} votes) and {name} ({n} votes)")
            if m >= n:
                continue
            del mapping[other], source[other]
        claimed[vid] = (name, n)
        mapping[name], source[name] = vid, "inferred"
    return IdentityTable(mapping, source, dict(meta or {}), conflicts)


def video_of(path: str, identity: str, movie_of: Mapping[str, str]) -> str:
    movie = movie_of.get(path)
    if movie is not None:
        return movie
    parts = path.replace("\\", "/").split("/")
    return f"{identity}/{parts[-2]}" if len(parts) >= 3 else ""


@dataclass
class Splits:
    """Every item's split, and what the assignment noticed."""

    item_split: dict[tuple[str, str], str]  # (modality, path) -> train / val / test / unused
    movie_of: dict[str, dict[str, str]]  # modality -> path -> movie key
    leaks: Counter  # modality -> training items also used by an evaluation list
    no_embedding: dict[str, int]  # modality -> training movie paths without an embedding


def assign_splits(release: SLRelease) -> Splits:
    """``train`` for the training movies' paths, else ``test`` / ``val`` by the lists using a path, else ``unused``."""
    train_paths: dict[str, set[str]] = {"voice": set(), "face": set()}
    for movie in release.train_movies:
        train_paths["face"].update(release.movie2jpg[movie])
        train_paths["voice"].update(release.movie2wav[movie])
    eval_split: dict[tuple[str, str], str] = {}
    for stem, lists in release.evals.items():
        split = eval_kind(stem)[1]  # type: ignore[index]
        v, f = lists.paths()
        for mod, paths in (("voice", v), ("face", f)):
            for p in paths:
                if eval_split.get((mod, p)) != "test":
                    eval_split[(mod, p)] = split
    movie_of: dict[str, dict[str, str]] = {"face": {}, "voice": {}}
    for mod, movies in (("face", release.movie2jpg), ("voice", release.movie2wav)):
        for movie, paths in movies.items():
            for p in paths:
                movie_of[mod].setdefault(p, movie)
    item_split: dict[tuple[str, str], str] = {}
    leaks: Counter = Counter()
    for mod, items in (("voice", release.voices), ("face", release.faces)):
        for p in items:
            if p in train_paths[mod]:
                item_split[(mod, p)] = "train"
                if (mod, p) in eval_split:
                    leaks[mod] += 1
            else:
                item_split[(mod, p)] = eval_split.get((mod, p), "unused")
    no_embedding = {mod: len(train_paths[mod] - set(items)) for mod, items in
                    (("voice", release.voices), ("face", release.faces))}
    return Splits(item_split, movie_of, leaks, no_embedding)


def write_store(release: SLRelease, ids: IdentityTable, splits: Splits, out: Path, source: Mapping[str, Any],
                shard_size: int = 4096, overwrite: bool = False) -> dict[str, Counter]:
    """The release's embeddings as a globals-only feature store; returns item counts per modality and split."""
    face_dim = len(next(iter(release.faces.values())))
    voice_dim = len(next(iter(release.voices.values())))
    counts: dict[str, Counter] = {"voice": Counter(), "face": Counter()}
    with FeatureStoreWriter(out, {"face": (face_dim, 0), "voice": (voice_dim, 0)}, shard_size=shard_size,
                            source=source, overwrite=overwrite) as writer:
        for mod, items, canon in (("voice", release.voices, IdentityTable.of_voice), ("face", release.faces, ids.of_face)):
            for p, vec in items.items():
                ident = canon(p)
                split = splits.item_split[(mod, p)]
                writer.add(mod, p, video_of(p, ident, splits.movie_of[mod]), ident, split, vec)
                counts[mod][split] += 1
    return counts
