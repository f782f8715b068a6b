"""Reading Self-Lifting's evaluation pickles: what a pickle holds, voice or face, the three trial kinds.

Part of ``python -m training.import_sl`` (see :mod:`training.ingest.import_sl`
for the structures SL uses and the other shapes accepted).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping, Optional, Sequence

import numpy as np

AUDIO_EXT = (".wav", ".flac", ".mp3", ".m4a", ".ogg", ".opus", ".aac")
IMAGE_EXT = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
EVAL_KINDS = ("verification", "matching", "retrieval")
SPLIT_OF_PREFIX = {"test": "test", "valid": "val", "val": "val"}


class SLImportError(ValueError):
    """The release cannot be imported as it is; the message says which file and why."""


class SLFormatError(SLImportError):
    """A pickle holds a structure the readers do not recognise."""


def describe(obj: Any, depth: int = 0) -> str:
    """A short description of a value's structure: type, keys / length, first element."""
    if isinstance(obj, Mapping):
        keys = list(obj)[:8]
        more = ", ..." if len(obj) > 8 else ""
        text = f"dict with {len(obj)} keys [{', '.join(repr(k) for k in keys)}{more}]"
        if depth < 1 and obj:
            k = next(iter(obj))
            text += f"; {k!r} -> {describe(obj[k], depth + 1)}"
        return text
    if isinstance(obj, (list, tuple, set, frozenset)):
        text = f"{type(obj).__name__} of {len(obj)}"
        if depth < 2 and obj:
            text += f", first: {describe(next(iter(obj)), depth + 1)}"
        return text
    if isinstance(obj, np.ndarray):
        return f"ndarray {obj.dtype} {obj.shape}"
    if isinstance(obj, str):
        return repr(obj[:60])
    return type(obj).__name__


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


def is_seq(x: Any) -> bool:
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
            f"{name}: expected {what}, as a list or a dict with one of the keys {list(keys)}; found {describe(obj)}"
        )
    if isinstance(obj, (list, tuple)):
        return obj
    raise SLFormatError(f"{name}: expected {what}; found {describe(obj)}")


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
        elif is_seq(t):
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
                f"{name}: trial {i} should hold one voice path, one face path and a 0/1 label; found {describe(t)}"
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
        if not is_seq(t):
            raise SLFormatError(f"{name}: trial {i} should be a tuple; found {describe(t)}")
        lists = [list(x) for x in t if is_seq(x)]
        if len(lists) == 2 and len(lists) == len(t):
            kinds = [{kind(p) for p in lst} for lst in lists]
            if kinds == [{"face"}, {"voice"}]:
                lists.reverse()
            elif kinds != [{"voice"}, {"face"}]:
                raise SLFormatError(f"{name}: trial {i} should be (voice paths, face paths); found {describe(t)}")
            voices, faces = lists
            if len(voices) < 2 and len(faces) < 2:
                raise SLFormatError(f"{name}: trial {i} has fewer than two candidates either way: {describe(t)}")
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
                f"or (voice paths, face paths); found {len(voices)} voice(s), {len(faces)} face(s): {describe(t)}"
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
        if not is_seq(g) or not len(g):
            raise SLFormatError(f"{name}: {where} should be a non-empty list; found {describe(g)}")
        if len(g) == 2 and all(is_seq(x) and len(x) and all(isinstance(p, str) for p in x) for x in g):
            kinds = [{kind(p) for p in x} for x in g]
            if kinds == [{"voice"}, {"face"}]:
                return list(g[0]), list(g[1]), False
            if kinds == [{"face"}, {"voice"}]:
                return list(g[1]), list(g[0]), False
        voices, faces = [], []
        for j, t in enumerate(g):
            vs = [x for x in t if kind(x) == "voice"] if is_seq(t) else []
            fs = [x for x in t if kind(x) == "face"] if is_seq(t) else []
            if len(vs) != 1 or len(fs) != 1:
                raise SLFormatError(
                    f"{name}: {where}, entry {j} should be (voice path, face path[, name]); found {describe(t)}"
                )
            voices.append(vs[0])
            faces.append(fs[0])
        return voices, faces, True

    def is_entry(t: Any) -> bool:  # a (voice, face, name) tuple or a path list, rather than a gallery
        return is_seq(t) and any(isinstance(x, str) for x in t)

    if not is_seq(payload) or not len(payload):
        raise SLFormatError(f"{name}: expected retrieval galleries; found {describe(payload)}")
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
