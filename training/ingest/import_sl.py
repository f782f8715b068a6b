"""``python -m training.import_sl --sl-dir DIR --out STORE``: Self-Lifting's released features as a feature store.

Self-Lifting (SL, ICMR 2022) released its frozen-encoder embeddings and trial
lists as pickles (``dataset/voxceleb/`` of its repository)::

    face_input.pkl, voice_input.pkl     jpg / wav path -> embedding (512-d face, 192-d voice)
    cluster/movie2jpg_path.pkl          movie key -> its jpg paths (also movie2wav_path.pkl)
    cluster/train_movie_list.pkl        the training movie keys
    eval/test_verification[_g].pkl     {"list": [(wav, jpg, label)], "wav_set", "jpg_set"}
    eval/valid_verification.pkl        the same, for validation
    eval/test_matching[_g].pkl         {"match_list": [(name1, wav1, jpg1, name2, wav2, jpg2)], ...}
    eval/test_matching_10.pkl          {"match_list": [(wavs, jpgs)], ...}: 1:N, item 0 correct
    eval/test_retrieval.pkl            {"retrieval_lists": [[(wav, jpg, name), ...], ...]}: galleries

(structures as SL's code reads them: ``utils/eva_emb_full.py`` and
``loaders/voxceleb_cluster_ordered_loader.py`` of github.com/my-yy/sl_icmr2022;
the pickles themselves were not available to check, and the movie key format
is not spelled out there, so it is only used as an opaque string). Every
pickle is read with :mod:`training.ingest.safe_pickle`, never with ``pickle.load``.
The readers also accept the other plausible shapes (bare lists instead of
dicts, 3-tuples, face-first tuples, one retrieval gallery, ``(voices, faces)``
path lists); which string is a voice and which a face is decided by the key
sets of the two embedding files (then by the file extension), so the column
order does not matter. Anything else fails with :class:`SLFormatError` naming
the file and describing what it holds.

What the import writes (``STORE``, globals only, token_dim 0):

* items: every path of ``face_input.pkl`` / ``voice_input.pkl``, L2-normalised
  (as SL does when it loads them), in file order.
* identity: a wav's first path component (the VoxCeleb1 id). A jpg's first
  component is a name folder (``A.J._Buckley/1.6/<yt>/0005175.jpg`` for
  VoxCeleb1 face tracks, ``A.J._Buckley/00000657.jpg`` for VGGFace1 photos); it
  is mapped to the VoxCeleb1 id by, in order: ``--protocol-dir`` (Wen's
  ``vox1_*.csv`` or Nagrani's ``vox1_meta.csv``: VoxCeleb1_ID <-> VGGFace1_ID,
  ``Set=none`` rows included), else a majority vote over the pairs the release
  itself says are one person (the wavs and jpgs of one movie, verification
  pairs labelled 1, the correct pairs of matching trials, retrieval tuples).
  A name with no evidence keeps the name as its identity.
* video: the movie key of ``movie2{jpg,wav}_path`` when the path is listed
  there; otherwise ``<identity>/<parent folder>`` (the YouTube id of
  ``id10001/<yt>/00001.wav`` and ``Name/1.6/<yt>/0001.jpg``, so a face and a
  voice of one video still share it). Paths with only two components (VGGFace1
  photos) have no video: the column is empty, so they never form a training
  pair, but they are scored in the lists.
* split: ``train`` for paths of the movies in ``train_movie_list.pkl``;
  otherwise ``val`` for paths used by ``valid_*`` lists and ``test`` for paths
  used by ``test_*`` lists (test wins if both); ``unused`` for the rest. Paths
  of training movies that also appear in an evaluation list stay ``train`` and
  are counted as ``train_items_in_eval`` (a leak) in the summary.

Protocol (``STORE/protocol`` or ``--protocol-out``): the evaluation pickles
become Wen 2021 format lists (``faa_core.protocols.write_wen2021_lists``), so
``python -m training.evaluate --checkpoint C --data STORE`` scores SL's trials:
``verify_[<tag>_]v2f_sl_<split>``, ``match_[<tag>_]{v2f,f2v}_sl_<split>`` and
``reterival_{v2f,f2v}_sl_<split>[_<k>]`` (one list per SL gallery; SL reports
the mean mAP over its galleries). 1:N matching trials (``test_matching_10``)
cannot be written in the Wen format; they go to ``sl_match_{v2f,f2v}_<tag>_<split>.txt``
(one trial per line: query, correct candidate, the other candidates), which
``training.eval.evaluate`` scores through ``training.eval.one_to_n``. ``sl_lists.json`` there records where every list came from,
``STORE/sl_import.json`` the import's summary (counts, identity mapping, warnings).
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Optional, Sequence

import numpy as np

from faa_core.protocols import (
    Identity,
    MatchingList,
    ProtocolError,
    RetrievalList,
    VerificationList,
    write_wen2021_lists,
)

from training.features import FeatureStoreWriter
from training.ingest.safe_pickle import safe_load

__all__ = [
    "SLImportError",
    "SLFormatError",
    "SLRelease",
    "EvalLists",
    "find_sl_root",
    "read_release",
    "read_verification",
    "read_matching",
    "read_retrieval",
    "import_sl",
    "main",
]

AUDIO_EXT = (".wav", ".flac", ".mp3", ".m4a", ".ogg", ".opus", ".aac")
IMAGE_EXT = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
EVAL_KINDS = ("verification", "matching", "retrieval")
SPLIT_OF_PREFIX = {"test": "test", "valid": "val", "val": "val"}


class SLImportError(ValueError):
    """The release cannot be imported as it is; the message says which file and why."""


class SLFormatError(SLImportError):
    """A pickle holds a structure the readers do not recognise."""


# ---------------------------------------------------------------------------
# describing what a pickle holds, for error messages
# ---------------------------------------------------------------------------


def _describe(obj: Any, depth: int = 0) -> str:
    """A short description of a value's structure: type, keys / length, first element."""
    if isinstance(obj, Mapping):
        keys = list(obj)[:8]
        more = ", ..." if len(obj) > 8 else ""
        text = f"dict with {len(obj)} keys [{', '.join(repr(k) for k in keys)}{more}]"
        if depth < 1 and obj:
            k = next(iter(obj))
            text += f"; {k!r} -> {_describe(obj[k], depth + 1)}"
        return text
    if isinstance(obj, (list, tuple, set, frozenset)):
        text = f"{type(obj).__name__} of {len(obj)}"
        if depth < 2 and obj:
            text += f", first: {_describe(next(iter(obj)), depth + 1)}"
        return text
    if isinstance(obj, np.ndarray):
        return f"ndarray {obj.dtype} {obj.shape}"
    if isinstance(obj, str):
        return repr(obj[:60])
    return type(obj).__name__


# ---------------------------------------------------------------------------
# classifying strings as voice or face paths
# ---------------------------------------------------------------------------

Kind = Callable[[Any], Optional[str]]


def make_kind(voice_keys: Iterable[str], face_keys: Iterable[str]) -> Kind:
    """``kind(x)``: "voice" / "face" for a path (embedding keys first, then extension), else None."""
    voices, faces = set(voice_keys), set(face_keys)

    def kind(x: Any) -> Optional[str]:
        if not isinstance(x, str):
            return None
        if x in voices:
            return "voice"
        if x in faces:
            return "face"
        low = x.lower()
        if low.endswith(AUDIO_EXT):
            return "voice"
        if low.endswith(IMAGE_EXT):
            return "face"
        return None

    return kind


def _is_seq(x: Any) -> bool:
    return isinstance(x, (list, tuple, np.ndarray)) and not isinstance(x, (str, bytes))


def _label(x: Any) -> Optional[int]:
    """0/1 from a bool, integer, float or "0"/"1" string; None when it is not a label."""
    if isinstance(x, (bool, np.bool_)):
        return int(x)
    if isinstance(x, (int, np.integer)) and int(x) in (0, 1):
        return int(x)
    if isinstance(x, (float, np.floating)) and float(x) in (0.0, 1.0):
        return int(x)
    if isinstance(x, str) and x.strip() in ("0", "1"):
        return int(x.strip())
    return None


def _unwrap(obj: Any, keys: Sequence[str], name: str, what: str) -> Any:
    """The payload of an eval pickle: a bare list, or the value of a known key of a dict.

    A dict without a known key is accepted when exactly one of its values is a
    non-empty list or tuple (SL's dicts add only sets and a "script" string).
    """
    if isinstance(obj, Mapping):
        for k in keys:
            if k in obj:
                return obj[k]
        seqs = [k for k, v in obj.items() if isinstance(v, (list, tuple)) and len(v)]
        if len(seqs) == 1:
            return obj[seqs[0]]
        raise SLFormatError(
            f"{name}: expected {what}, as a list or a dict with one of the keys {list(keys)}; found {_describe(obj)}"
        )
    if isinstance(obj, (list, tuple)):
        return obj
    raise SLFormatError(f"{name}: expected {what}; found {_describe(obj)}")


# ---------------------------------------------------------------------------
# the three kinds of evaluation pickle
# ---------------------------------------------------------------------------

Pair = tuple[str, str]  # (voice path, face path)


@dataclass
class EvalLists:
    """What one evaluation pickle holds, in the import's terms.

    ``same`` are (voice, face) pairs the file says belong to one person: the
    evidence for mapping face name folders to VoxCeleb1 ids.
    """

    verification: list[tuple[str, str, int]] = field(default_factory=list)
    v2f: list[tuple[str, str, str]] = field(default_factory=list)  # (voice, face_pos, face_neg)
    f2v: list[tuple[str, str, str]] = field(default_factory=list)  # (face, voice_pos, voice_neg)
    v2f_n: list[tuple[str, list[str]]] = field(default_factory=list)  # (voice, [face_pos, face_neg...])
    f2v_n: list[tuple[str, list[str]]] = field(default_factory=list)
    galleries: list[tuple[list[str], list[str]]] = field(default_factory=list)  # (voices, faces)
    same: list[Pair] = field(default_factory=list)

    def paths(self) -> tuple[set[str], set[str]]:
        """All voice paths and all face paths the lists use."""
        v: set[str] = set()
        f: set[str] = set()
        for a, b, _ in self.verification:
            v.add(a), f.add(b)
        for q, p, n in self.v2f:
            v.add(q), f.update((p, n))
        for q, p, n in self.f2v:
            f.add(q), v.update((p, n))
        for q, cands in self.v2f_n:
            v.add(q), f.update(cands)
        for q, cands in self.f2v_n:
            f.add(q), v.update(cands)
        for voices, faces in self.galleries:
            v.update(voices), f.update(faces)
        return v, f


def read_verification(obj: Any, name: str, kind: Kind) -> EvalLists:
    """Verification trials: SL's ``{"list": [(wav, jpg, label)]}``, a bare list, any column order.

    A trial may be a tuple/list (one voice path, one face path, one 0/1 label
    among its elements; other strings such as names are ignored) or a dict
    with voice/wav, face/jpg and label keys.
    """
    trials = _unwrap(obj, ("list", "trials", "pairs", "verification"), name, "verification trials")
    out = EvalLists()
    for i, t in enumerate(trials):
        if isinstance(t, Mapping):
            pick = lambda *ks: next((t[k] for k in ks if k in t), None)  # noqa: E731
            voice, face, lab = pick("voice", "wav", "voice_path"), pick("face", "jpg", "image", "face_path"), pick("label", "y")
            lab = _label(lab)
        elif _is_seq(t):
            voices = [x for x in t if kind(x) == "voice"]
            faces = [x for x in t if kind(x) == "face"]
            labels = [_label(x) for x in t if not isinstance(x, str) or kind(x) is None]
            labels = [x for x in labels if x is not None]
            voice = voices[0] if len(voices) == 1 else None
            face = faces[0] if len(faces) == 1 else None
            lab = labels[0] if len(labels) == 1 else None
        else:
            voice = face = lab = None
        if voice is None or face is None or lab is None:
            raise SLFormatError(
                f"{name}: trial {i} should hold one voice path, one face path and a 0/1 label; found {_describe(t)}"
            )
        out.verification.append((voice, face, lab))
        if lab == 1:
            out.same.append((voice, face))
    if not out.verification:
        raise SLFormatError(f"{name}: no verification trials")
    return out


def read_matching(obj: Any, name: str, kind: Kind) -> EvalLists:
    """Matching trials: SL's 6-tuples, 3-tuples, or 1:N ``(voices, faces)``; correct candidate first.

    * ``(name1, voice1, face1, name2, voice2, face2)`` (SL) or ``(voice1, face1,
      voice2, face2)``: the first voice and the first face are one person; gives a
      v2f triplet ``(voice1, face1, face2)`` and an f2v one ``(face1, voice1, voice2)``.
    * ``(voice, face_pos, face_neg)`` -> v2f; ``(face, voice_pos, voice_neg)`` -> f2v.
    * ``(voices, faces)`` (two path lists, item 0 of each is the matching pair, as
      SL's ``handle_1_n`` reads them): 1:N v2f over the faces and f2v over the
      voices; a side with two candidates becomes 1:2 triplets.
    """
    trials = _unwrap(obj, ("match_list", "list", "trials", "matching"), name, "matching trials")
    out = EvalLists()
    for i, t in enumerate(trials):
        if not _is_seq(t):
            raise SLFormatError(f"{name}: trial {i} should be a tuple; found {_describe(t)}")
        lists = [list(x) for x in t if _is_seq(x)]
        if len(lists) == 2 and len(lists) == len(t):
            kinds = [{kind(p) for p in lst} for lst in lists]
            if kinds == [{"face"}, {"voice"}]:
                lists.reverse()
            elif kinds != [{"voice"}, {"face"}]:
                raise SLFormatError(f"{name}: trial {i} should be (voice paths, face paths); found {_describe(t)}")
            voices, faces = lists
            if len(voices) < 2 and len(faces) < 2:
                raise SLFormatError(f"{name}: trial {i} has fewer than two candidates either way: {_describe(t)}")
            if len(faces) == 2:
                out.v2f.append((voices[0], faces[0], faces[1]))
            elif len(faces) > 2:
                out.v2f_n.append((voices[0], faces))
            if len(voices) == 2:
                out.f2v.append((faces[0], voices[0], voices[1]))
            elif len(voices) > 2:
                out.f2v_n.append((faces[0], voices))
            out.same.append((voices[0], faces[0]))
            continue
        voices = [x for x in t if kind(x) == "voice"]
        faces = [x for x in t if kind(x) == "face"]
        if len(voices) == 2 and len(faces) == 2:
            out.v2f.append((voices[0], faces[0], faces[1]))
            out.f2v.append((faces[0], voices[0], voices[1]))
            out.same += [(voices[0], faces[0]), (voices[1], faces[1])]
        elif len(voices) == 1 and len(faces) == 2:
            out.v2f.append((voices[0], faces[0], faces[1]))
            out.same.append((voices[0], faces[0]))
        elif len(voices) == 2 and len(faces) == 1:
            out.f2v.append((faces[0], voices[0], voices[1]))
            out.same.append((voices[0], faces[0]))
        else:
            raise SLFormatError(
                f"{name}: trial {i} should hold 2 voices and 2 faces, 1 voice and 2 faces, 2 voices and 1 face, "
                f"or (voice paths, face paths); found {len(voices)} voice(s), {len(faces)} face(s): {_describe(t)}"
            )
    if not (out.v2f or out.f2v or out.v2f_n or out.f2v_n):
        raise SLFormatError(f"{name}: no matching trials")
    return out


def read_retrieval(obj: Any, name: str, kind: Kind) -> EvalLists:
    """Retrieval galleries: SL's ``{"retrieval_lists": [[(wav, jpg, name), ...], ...]}`` and variants.

    A gallery is a list of tuples holding one voice and one face of one person
    (other elements, such as SL's name, are ignored: identities come from the
    paths), or a pair ``(voice paths, face paths)``. The payload may be one
    gallery or a list of galleries.
    """
    payload = _unwrap(obj, ("retrieval_lists", "lists", "galleries", "list"), name, "retrieval galleries")

    def gallery(g: Any, where: str) -> tuple[list[str], list[str], bool]:
        """(voices, faces, paired): paired when voices[i] and faces[i] come from one tuple (one person)."""
        if not _is_seq(g) or not len(g):
            raise SLFormatError(f"{name}: {where} should be a non-empty list; found {_describe(g)}")
        if len(g) == 2 and all(_is_seq(x) and len(x) and all(isinstance(p, str) for p in x) for x in g):
            kinds = [{kind(p) for p in x} for x in g]
            if kinds == [{"voice"}, {"face"}]:
                return list(g[0]), list(g[1]), False
            if kinds == [{"face"}, {"voice"}]:
                return list(g[1]), list(g[0]), False
        voices, faces = [], []
        for j, t in enumerate(g):
            vs = [x for x in t if kind(x) == "voice"] if _is_seq(t) else []
            fs = [x for x in t if kind(x) == "face"] if _is_seq(t) else []
            if len(vs) != 1 or len(fs) != 1:
                raise SLFormatError(
                    f"{name}: {where}, entry {j} should be (voice path, face path[, name]); found {_describe(t)}"
                )
            voices.append(vs[0])
            faces.append(fs[0])
        return voices, faces, True

    def is_entry(t: Any) -> bool:  # a (voice, face, name) tuple or a path list, rather than a gallery
        return _is_seq(t) and any(isinstance(x, str) for x in t)

    if not _is_seq(payload) or not len(payload):
        raise SLFormatError(f"{name}: expected retrieval galleries; found {_describe(payload)}")
    groups = [payload] if is_entry(payload[0]) else list(payload)
    out = EvalLists()
    for k, g in enumerate(groups):
        voices, faces, paired = gallery(g, f"gallery {k}")
        out.galleries.append((voices, faces))
        if paired:
            out.same += list(zip(voices, faces))
    return out


READERS: dict[str, Callable[[Any, str, Kind], EvalLists]] = {
    "verification": read_verification,
    "matching": read_matching,
    "retrieval": read_retrieval,
}


# ---------------------------------------------------------------------------
# the release folder
# ---------------------------------------------------------------------------


@dataclass
class SLRelease:
    """Everything read from an SL release folder (embeddings as float32 vectors)."""

    root: Path
    faces: dict[str, np.ndarray]
    voices: dict[str, np.ndarray]
    movie2jpg: dict[str, list[str]]
    movie2wav: dict[str, list[str]]
    train_movies: list[str]
    evals: dict[str, EvalLists]  # pickle stem -> lists
    ignored: list[str] = field(default_factory=list)


def find_sl_root(sl_dir: str | Path) -> Path:
    """The folder holding ``face_input.pkl``: DIR itself, DIR/voxceleb or DIR/dataset/voxceleb."""
    base = Path(sl_dir)
    for cand in (base, base / "voxceleb", base / "dataset" / "voxceleb"):
        if (cand / "face_input.pkl").is_file():
            return cand
    raise FileNotFoundError(
        f"{base}: no face_input.pkl here (nor in voxceleb/ or dataset/voxceleb/); "
        "pass the folder of SL's release that holds face_input.pkl, voice_input.pkl, cluster/ and eval/"
    )


def _embeddings(obj: Any, name: str) -> dict[str, np.ndarray]:
    """path -> L2-normalised float32 vector; every vector of one file has one length.

    Entries are popped from ``obj`` (the freshly loaded pickle) as they are
    converted, so a large release is not held twice in memory.
    """
    if not isinstance(obj, dict) or not obj:
        raise SLFormatError(f"{name}: expected a non-empty dict path -> embedding; found {_describe(obj)}")
    out: dict[str, np.ndarray] = {}
    dim = None
    for key in list(obj):
        value = obj.pop(key)
        if not isinstance(key, str) or not key.strip() or any(c in key for c in "\n\r"):
            raise SLFormatError(f"{name}: keys must be path strings; found {_describe(key)}")
        try:
            vec = np.asarray(value, dtype=np.float32).reshape(-1)
        except (TypeError, ValueError):
            raise SLFormatError(f"{name}: {key!r} -> {_describe(value)} is not a numeric vector") from None
        if dim is None:
            dim = vec.shape[0]
        if vec.shape[0] != dim or dim == 0:
            raise SLFormatError(f"{name}: {key!r} has a {vec.shape[0]}-d vector, the file's first one is {dim}-d")
        norm = float(np.linalg.norm(vec))
        if not np.isfinite(norm) or norm == 0.0:
            raise SLFormatError(f"{name}: {key!r} has a zero or non-finite vector")
        out[key] = vec / norm
    return out


def _path_lists(obj: Any, name: str) -> dict[str, list[str]]:
    if not isinstance(obj, Mapping):
        raise SLFormatError(f"{name}: expected a dict movie -> list of paths; found {_describe(obj)}")
    out = {}
    for movie, paths in obj.items():
        if not _is_seq(paths) and not isinstance(paths, (set, frozenset)):
            raise SLFormatError(f"{name}: movie {movie!r} -> {_describe(paths)}, expected a list of paths")
        out[str(movie)] = [str(p) for p in paths]
    return out


def _eval_kind(stem: str) -> Optional[tuple[str, str, str]]:
    """(kind, split, tag) from an eval pickle name like ``test_matching_g``; None if not one."""
    parts = stem.split("_")
    if len(parts) < 2 or parts[0] not in SPLIT_OF_PREFIX or parts[1] not in EVAL_KINDS:
        return None
    tag = "_".join(parts[2:])
    if tag and not all(c.isalnum() or c in ".-_" for c in tag):
        return None
    return parts[1], SPLIT_OF_PREFIX[parts[0]], tag


def read_release(sl_dir: str | Path, log: Callable[[str], None] = lambda s: None) -> SLRelease:
    """Read and check every pickle of an SL release folder (see the module docstring)."""
    root = find_sl_root(sl_dir)

    def load(rel: str, required: bool = True) -> Any:
        path = root / rel
        if not path.is_file():
            if required:
                raise FileNotFoundError(f"{rel}: not found in {root} (SL's release has it)")
            return None
        log(f"reading {rel}")
        return safe_load(path, rel)

    faces = _embeddings(load("face_input.pkl"), "face_input.pkl")
    voices = _embeddings(load("voice_input.pkl"), "voice_input.pkl")
    movie2jpg = _path_lists(load("cluster/movie2jpg_path.pkl"), "cluster/movie2jpg_path.pkl")
    movie2wav = _path_lists(load("cluster/movie2wav_path.pkl"), "cluster/movie2wav_path.pkl")
    train = load("cluster/train_movie_list.pkl")
    if isinstance(train, Mapping):
        train = list(train)
    if not (_is_seq(train) or isinstance(train, (set, frozenset))) or not all(isinstance(m, str) for m in train):
        raise SLFormatError(f"cluster/train_movie_list.pkl: expected a list of movie keys; found {_describe(train)}")
    unknown = [m for m in train if m not in movie2jpg or m not in movie2wav]
    if unknown:
        raise SLImportError(
            f"cluster/train_movie_list.pkl: {len(unknown)} training movie(s) are not in both movie2jpg_path.pkl "
            f"and movie2wav_path.pkl, e.g. {unknown[:3]}"
        )
    kind = make_kind(voices, faces)
    evals: dict[str, EvalLists] = {}
    ignored: list[str] = []
    eval_dir = next((root / d for d in ("eval", "evals") if (root / d).is_dir()), None)
    if eval_dir is None:
        log("warning: no eval/ folder: no protocol lists and no validation split")
    else:
        for path in sorted(eval_dir.glob("*.pkl")):
            rel = f"{eval_dir.name}/{path.name}"
            parsed = _eval_kind(path.stem)
            if parsed is None:
                ignored.append(rel)
                log(f"warning: {rel}: not a <test|valid>_<verification|matching|retrieval>[_tag].pkl name; ignored")
                continue
            log(f"reading {rel}")
            evals[path.stem] = READERS[parsed[0]](safe_load(path, rel), rel, kind)
        if not any(_eval_kind(s)[1] == "val" for s in evals):  # type: ignore[index]
            log("warning: no valid_*.pkl: the store has no val split, so training cannot validate")
    rel_missing = []
    for stem, lists in evals.items():
        v, f = lists.paths()
        rel_missing += [f"{stem}: voice {p!r}" for p in sorted(v - voices.keys())[:3]]
        rel_missing += [f"{stem}: face {p!r}" for p in sorted(f - faces.keys())[:3]]
    if rel_missing:
        raise SLImportError(
            "evaluation lists use paths that face_input.pkl / voice_input.pkl have no embedding for: "
            + "; ".join(rel_missing[:6])
        )
    return SLRelease(root, faces, voices, movie2jpg, movie2wav, list(train), evals, ignored)


# ---------------------------------------------------------------------------
# identities, videos, splits
# ---------------------------------------------------------------------------


def _first(path: str) -> str:
    return path.replace("\\", "/").partition("/")[0]


@dataclass
class IdentityTable:
    """Face name folder -> VoxCeleb1 id, with where each mapping came from and any metadata."""

    face_to_voice: dict[str, str]
    source: dict[str, str]  # face name -> "table" | "inferred"
    meta: dict[str, tuple[str, str]]  # VoxCeleb1 id -> (gender, nationality)
    conflicts: list[str]

    def of_face(self, path: str) -> str:
        first = _first(path)
        return self.face_to_voice.get(first, first)

    @staticmethod
    def of_voice(path: str) -> str:
        return _first(path)


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
        vids = {_first(w) for w in release.movie2wav.get(movie, ())}
        if len(vids) == 1:
            vid = next(iter(vids))
            for name in {_first(j) for j in jpgs}:
                votes[name][vid] += 1
    for lists in release.evals.values():
        for voice, face in lists.same:
            votes[_first(face)][_first(voice)] += 1
    face_names = {_first(p) for p in release.faces}
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


def _video_of(path: str, identity: str, movie_of: Mapping[str, str]) -> str:
    movie = movie_of.get(path)
    if movie is not None:
        return movie
    parts = path.replace("\\", "/").split("/")
    return f"{identity}/{parts[-2]}" if len(parts) >= 3 else ""


# ---------------------------------------------------------------------------
# protocol lists
# ---------------------------------------------------------------------------


def _list_names(stem: str) -> tuple[str, str, str]:
    kind, split, tag = _eval_kind(stem)  # type: ignore[misc]
    return kind, split, (f"{tag}_" if tag else "")


def write_protocol(release: SLRelease, ids: IdentityTable, item_split: Mapping[str, str], folder: Path,
                   overwrite: bool = False) -> dict[str, Any]:
    """Write the evaluation pickles as Wen-format lists (+ 1:N side files); returns what was written."""
    canon_v, canon_f = IdentityTable.of_voice, ids.of_face
    verification: list[VerificationList] = []
    matching: list[MatchingList] = []
    retrieval: list[RetrievalList] = []
    side: dict[str, list[str]] = {}
    origin: dict[str, dict[str, Any]] = {}
    for stem, lists in sorted(release.evals.items()):
        kind, split, tag = _list_names(stem)
        src = f"{stem}.pkl"
        if lists.verification:
            v, f, lab = zip(*lists.verification)
            name = f"verify_{tag}v2f_sl_{split}"
            verification.append(VerificationList(name, np.array(v), np.array(f), np.array(lab)))
            origin[name] = {"from": src, "trials": len(v)}
        for d, trips in (("v2f", lists.v2f), ("f2v", lists.f2v)):
            if trips:
                q, p, n = zip(*trips)
                name = f"match_{tag}{d}_sl_{split}"
                matching.append(MatchingList(name, d, np.array(q), np.array(p), np.array(n)))
                origin[name] = {"from": src, "trials": len(q)}
        for d, trials in (("v2f", lists.v2f_n), ("f2v", lists.f2v_n)):
            if trials:
                name = f"sl_match_{d}_{tag}{split}.txt"
                side[name] = [" ".join([q, *cands]) for q, cands in trials]
                origin[name] = {"from": src, "trials": len(trials), "format": "query correct other... (training.eval.one_to_n)",
                                "candidates": sorted({len(c) for _, c in trials})}
        for k, (voices, faces) in enumerate(lists.galleries, 1):
            suffix = f"_{k}" if len(lists.galleries) > 1 else ""
            for d in ("v2f", "f2v"):
                name = f"reterival_{tag}{d}_sl_{split}{suffix}"
                vi = np.array([canon_v(p) for p in voices])
                fi = np.array([canon_f(p) for p in faces])
                retrieval.append(RetrievalList(name, np.array(voices), np.array(faces), vi, fi))
                origin[name] = {"from": src, "voices": len(voices), "faces": len(faces), "gallery": k}
    # identities: every one that an item of the store has; split: test > val > train by where its items are
    faces_of: dict[str, str] = {}
    for name, vid in ids.face_to_voice.items():
        faces_of.setdefault(vid, name)
    splits_of: dict[str, set[str]] = defaultdict(set)
    for path in release.voices:
        splits_of[canon_v(path)].add(item_split[("voice", path)])
    for path in release.faces:
        splits_of[canon_f(path)].add(item_split[("face", path)])
    identities = []
    for ident in sorted(splits_of):
        s = splits_of[ident]
        split = "test" if "test" in s else "val" if "val" in s else "train"
        gender, nat = ids.meta.get(ident, ("", ""))
        identities.append(Identity(ident, faces_of.get(ident, ident), gender, nat, split))
    _clear_previous(folder, overwrite)
    try:
        written = write_wen2021_lists(folder, identities, verification=verification, matching=matching,
                                      retrieval=retrieval, overwrite=overwrite)
    except ProtocolError as exc:
        raise SLImportError(
            f"cannot write SL's evaluation lists in the Wen format: {exc}. If a label or candidate disagrees "
            "with the identities, the face name -> VoxCeleb1 id mapping is wrong: pass --protocol-dir with "
            "Wen's vox1_*.csv"
        ) from None
    for name, lines in side.items():
        path = folder / name
        path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
        written.append(path)
    info = {"lists": origin, "identities": len(identities),
            "note": "SL reports retrieval mAP as the mean over its galleries (reterival_*_<k>); "
                    "sl_match_* files hold SL's 1:N trials (scored by training.eval.evaluate via training.eval.one_to_n)",
            "files": sorted(p.name for p in written)}
    (folder / LISTS_MANIFEST).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    return {**info, "folder": str(folder)}


LISTS_MANIFEST = "sl_lists.json"


def _clear_previous(folder: Path, overwrite: bool, delete: bool = True) -> None:
    """Refuse a non-empty folder; with ``overwrite``, delete only the files an earlier import listed.

    Stale lists of an earlier import would otherwise be read with the new ones,
    while a folder of someone else's files (Wen's own lists) is never touched.
    """
    if not folder.is_dir() or not any(folder.iterdir()):
        return
    manifest = folder / LISTS_MANIFEST
    if not overwrite or not manifest.is_file():
        raise FileExistsError(
            f"{folder} is not empty; pass --overwrite to replace an earlier import's lists, "
            "or choose an empty --protocol-out"
        )
    try:
        names = json.loads(manifest.read_text(encoding="utf-8")).get("files", [])
    except (ValueError, AttributeError):
        raise FileExistsError(f"{manifest} is unreadable; remove {folder} by hand") from None
    if not delete:
        return
    for name in [*names, LISTS_MANIFEST]:
        path = folder / Path(str(name)).name
        if path.is_file():
            path.unlink()


# ---------------------------------------------------------------------------
# the import
# ---------------------------------------------------------------------------


def import_sl(sl_dir: str | Path, out: str | Path, protocol_out: str | Path | None = None,
              protocol_dir: str | Path | None = None, overwrite: bool = False, shard_size: int = 4096,
              log: Callable[[str], None] = lambda s: None) -> dict[str, Any]:
    """Import an SL release into a feature store (globals only) plus Wen-format protocol lists.

    Returns a summary (counts per split, identity mapping, lists written, warnings).
    """
    out = Path(out)
    if (out / "store.json").exists() and not overwrite:
        raise FileExistsError(f"{out} already holds a feature store (pass --overwrite to replace it)")
    folder = Path(protocol_out) if protocol_out else out / "protocol"
    if protocol_dir and folder.resolve() == Path(protocol_dir).resolve():
        raise SLImportError(f"--protocol-out {folder} is the --protocol-dir folder; write the lists elsewhere")
    _clear_previous(folder, overwrite, delete=False)  # fail before the (long) reading, not after
    release = read_release(sl_dir, log)
    table, meta = read_identity_tables(protocol_dir) if protocol_dir else ({}, {})
    ids = build_identities(release, table, meta)
    for line in ids.conflicts[:10]:
        log(f"warning: identity evidence: {line}")

    train_paths: dict[str, set[str]] = {"voice": set(), "face": set()}
    for movie in release.train_movies:
        train_paths["face"].update(release.movie2jpg[movie])
        train_paths["voice"].update(release.movie2wav[movie])
    eval_split: dict[tuple[str, str], str] = {}
    for stem, lists in release.evals.items():
        split = _eval_kind(stem)[1]  # type: ignore[index]
        v, f = lists.paths()
        for mod, paths in (("voice", v), ("face", f)):
            for p in paths:
                if eval_split.get((mod, p)) != "test":
                    eval_split[(mod, p)] = split
    movie_of = {"face": {}, "voice": {}}  # type: dict[str, dict[str, str]]
    for mod, movies in (("face", release.movie2jpg), ("voice", release.movie2wav)):
        for movie, paths in movies.items():
            for p in paths:
                movie_of[mod].setdefault(p, movie)

    item_split: dict[tuple[str, str], str] = {}
    leaks = Counter()
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

    face_dim = len(next(iter(release.faces.values())))
    voice_dim = len(next(iter(release.voices.values())))
    # lists first: they validate every trial against the identities before anything is written
    protocol: dict[str, Any] = {}
    if release.evals:
        log(f"writing the lists to {folder}")
        protocol = write_protocol(release, ids, item_split, folder, overwrite=overwrite)
    counts: dict[str, Counter] = {"voice": Counter(), "face": Counter()}
    source = {
        "kind": "self-lifting-release", "sl_dir": str(release.root), "normalized": "l2",
        "identity_table": str(protocol_dir) if protocol_dir else None,
    }
    with FeatureStoreWriter(out, {"face": (face_dim, 0), "voice": (voice_dim, 0)}, shard_size=shard_size,
                            source=source, overwrite=overwrite) as writer:
        for mod, items, canon in (("voice", release.voices, IdentityTable.of_voice), ("face", release.faces, ids.of_face)):
            for p, vec in items.items():
                ident = canon(p)
                split = item_split[(mod, p)]
                writer.add(mod, p, _video_of(p, ident, movie_of[mod]), ident, split, vec)
                counts[mod][split] += 1
    log(f"wrote {out}: {len(release.voices)} voices ({voice_dim}-d), {len(release.faces)} faces ({face_dim}-d)")
    face_names = {_first(p) for p in release.faces}
    summary = {
        "store": str(out),
        "voice": {"count": len(release.voices), "dim": voice_dim, "splits": dict(counts["voice"])},
        "face": {"count": len(release.faces), "dim": face_dim, "splits": dict(counts["face"])},
        "train_movies": len(release.train_movies),
        "face_names": {
            "total": len(face_names),
            "from_table": sum(1 for n in face_names if ids.source.get(n) == "table"),
            "inferred": sum(1 for n in face_names if ids.source.get(n) == "inferred"),
            "unmapped": sum(1 for n in face_names if n not in ids.face_to_voice),
        },
        "identity_conflicts": ids.conflicts,
        "train_items_in_eval": dict(leaks),
        "movie_paths_without_embedding": no_embedding,
        "ignored_files": release.ignored,
        "protocol": protocol,
    }
    (out / "sl_import.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return summary


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m training.import_sl",
        description="Import Self-Lifting's released embeddings and trial lists as a feature store "
                    "(globals only) with Wen-format protocol lists. Train on it with "
                    "`python -m training.train --config faa --config sl_features --data STORE --out RUN`.",
    )
    p.add_argument("--sl-dir", required=True, help="SL's release folder (the one with face_input.pkl, or its parent)")
    p.add_argument("--out", required=True, help="feature store folder to write")
    p.add_argument("--protocol-out", default=None, help="where to write the lists (default: OUT/protocol)")
    p.add_argument("--protocol-dir", default=None,
                   help="a protocol folder with vox1_*.csv (Wen 2021, or Nagrani's vox1_meta.csv) mapping "
                        "VGGFace1 names to VoxCeleb1 ids; default: inferred from the release")
    p.add_argument("--overwrite", action="store_true", help="replace an existing store and lists")
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)
    log = (lambda s: None) if args.quiet else (lambda s: print(s, file=sys.stderr, flush=True))
    try:
        summary = import_sl(args.sl_dir, args.out, args.protocol_out, args.protocol_dir, args.overwrite, log=log)
    except (ValueError, FileNotFoundError, FileExistsError) as exc:  # SLImportError and PickleReadError are ValueErrors
        p.exit(2, f"{p.prog}: error: {exc}\n")
    brief = {k: summary[k] for k in ("store", "voice", "face", "train_movies", "face_names", "train_items_in_eval")}
    brief["lists"] = sorted(summary["protocol"].get("lists", {}))
    print(json.dumps(brief, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
