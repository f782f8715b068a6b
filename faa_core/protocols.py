"""Readers (and a writer) for the trial lists of the voice-face evaluation protocols.

Two published protocols are supported, in the exact file formats they were
released in (see docs/data.md):

* **Wen 2021** (``read_wen2021``): ``vox1_{train,val,test}.csv`` identity tables,
  ``verify_*.txt`` pairs, ``match_*.txt`` 1:2 triplets and the two-line
  ``reterival_*.txt`` galleries (sic: the original files misspell "retrieval").
* **Nagrani 2018 / Learnable PINs** (``read_nagrani2018``): ``identity_splits.txt``,
  ``vox1_meta.csv``, ``veriflist/``, ``matching/`` and ``retrieval/``.

Everything is normalised to one representation so that evaluation code never
cares which protocol it runs:

* The **canonical identity key is the VoxCeleb1 id** (``id10001``). Paths whose
  first component is a VGGFace1 name (``A.J._Buckley/00000657.jpg``) are mapped to
  it through the identity table. ``Protocol.identity_of_voice`` /
  ``identity_of_face`` do the same for any path written in a list.
* Paths are kept exactly as written in the files (relative to the media root),
  so they can be joined with wherever the user keeps VoxCeleb1 / VGGFace1.
* Every list is keyed by its file stem (``verify_v2f_test``,
  ``reterival_v2f_test``, ``veriflist_test_G_unseenunheard``, ``matching_v2f_U``);
  the Nagrani retrieval pair ``wav_20k.csv`` + ``jpg_20k.csv`` becomes
  ``retrieval_20k``.
* Every problem in a file raises :class:`ProtocolError` (a ``ValueError``) whose
  message names the file, the 1-based line number and the offending value, because
  a silently dropped or mislabelled trial changes published numbers.

Only the standard library and numpy are used; the real files (~60k lines each)
are parsed with plain ``str.split`` and one dict lookup per path, so a whole
protocol (~400k lines) reads in about a second on a small CPU.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Iterable, Iterator, Literal, Mapping, Sequence, Union

import numpy as np

from faa_core.errors import FAAError

__all__ = [
    "ProtocolError",
    "Direction",
    "DIRECTIONS",
    "direction_from_name",
    "query_modalities",
    "Identity",
    "VerificationList",
    "MatchingList",
    "RetrievalList",
    "Protocol",
    "read_wen2021",
    "read_nagrani2018",
    "read_protocol",
    "detect_protocol",
    "write_wen2021_lists",
    "PROTOCOL_NAMES",
    "WEN_SPLITS",
    "NAGRANI_SPLITS",
]

PathLike = Union[str, Path]
Direction = Literal["v2f", "f2v"]
#: The two query directions: a voice queries faces (v2f) or a face queries voices (f2v).
DIRECTIONS: tuple[Direction, ...] = ("v2f", "f2v")

PROTOCOL_NAMES: tuple[str, ...] = ("wen2021", "nagrani2018")
#: Wen identity splits, taken from the CSV file names.
WEN_SPLITS: tuple[str, ...] = ("train", "val", "test")
#: Nagrani ``identity_splits.txt`` set number -> split name.
NAGRANI_SPLITS: dict[int, str] = {1: "train", 2: "val", 3: "seen_heard", 4: "unseen_unheard"}

_WEN_CSV_COLUMNS = ("VoxCeleb1_ID", "VGGFace1_ID", "Gender", "Nationality", "Set")
_NAGRANI_VERIF_COLUMNS = ("id", "voice-speaker-id", "face-speaker-id", "label", "voice-path", "face-path")
_AUDIO_EXT = (".wav", ".flac", ".mp3", ".m4a", ".ogg", ".opus", ".aac", ".m4v")
_IMAGE_EXT = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".gif", ".tif", ".tiff")
# Wen list files: kind prefix, then a stem that must contain a v2f/f2v token.
_WEN_LIST_RE = re.compile(r"^(verify|match|reterival|retrieval)_[A-Za-z0-9_.-]+$")


class ProtocolError(FAAError, ValueError):
    """A protocol file is missing a piece, malformed, or inconsistent with the identity table."""


# ---------------------------------------------------------------------------
# data classes
# ---------------------------------------------------------------------------


def _frozen_str_array(values: Iterable[str] | np.ndarray) -> np.ndarray:
    """Read-only unicode array: lists are shared by evaluations and must not drift."""
    # np.array copies, so freezing never touches an array the caller still owns.
    arr = np.array(values if isinstance(values, np.ndarray) else list(values), dtype=str)
    if arr.ndim != 1:
        raise ValueError(f"expected a 1-D array of paths, got shape {arr.shape}")
    arr.setflags(write=False)
    return arr


def _check_direction(direction: str) -> None:
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be 'v2f' or 'f2v', got {direction!r}")


def direction_from_name(name: str) -> Direction | None:
    """``v2f``/``f2v`` from a list name's ``_``-separated tokens; None when it has neither.

    The released files encode the query modality only in their names
    (``verify_f2v_test``, ``match_g_v2f_2_val``, ``sl_match_f2v_test``); this is the
    one place that reads it. A name with both tokens is refused.
    """
    tokens = set(Path(str(name)).name.split("_"))
    found = [d for d in DIRECTIONS if d in tokens]
    if len(found) > 1:
        raise ProtocolError(f"{name}: the name holds both v2f and f2v; a list has one direction")
    return found[0] if found else None  # type: ignore[return-value]


def query_modalities(direction: Direction) -> tuple[str, str]:
    """(query modality, candidate modality) of a direction: ("voice", "face") for v2f."""
    _check_direction(direction)
    return ("voice", "face") if direction == "v2f" else ("face", "voice")


def _own_direction(lst: object) -> None:
    """Fill a list's ``direction`` from its name when not given; check a given one."""
    direction = getattr(lst, "direction")
    if direction is None:
        object.__setattr__(lst, "direction", direction_from_name(getattr(lst, "name")))
    else:
        _check_direction(direction)


@dataclass(frozen=True)
class Identity:
    """One person: the VoxCeleb1 id (canonical key), the VGGFace1 name and the protocol split."""

    voice_id: str
    face_id: str
    gender: str
    nationality: str
    split: str


@dataclass(frozen=True, eq=False)
class VerificationList:
    """Voice-face pairs with a same-person label (1) or not (0); metric: ROC AUC.

    ``direction`` is the query modality the file was written with (Wen's files put
    its column first); None for lists whose name has no ``v2f``/``f2v`` token
    (Nagrani's). Left out, it is read from ``name``.
    """

    name: str
    voices: np.ndarray
    faces: np.ndarray
    labels: np.ndarray
    direction: Direction | None = None

    def __post_init__(self) -> None:
        _own_direction(self)
        voices, faces = _frozen_str_array(self.voices), _frozen_str_array(self.faces)
        labels = np.asarray(self.labels)
        if labels.ndim != 1 or not (len(voices) == len(faces) == len(labels)):
            raise ValueError(
                f"{self.name}: voices, faces and labels must be 1-D of one length, "
                f"got {len(voices)}, {len(faces)}, {labels.shape}"
            )
        if labels.size and not np.isin(labels, (0, 1)).all():
            raise ValueError(f"{self.name}: labels must be 0 or 1")
        labels = labels.astype(np.int8)
        labels.setflags(write=False)
        object.__setattr__(self, "voices", voices)
        object.__setattr__(self, "faces", faces)
        object.__setattr__(self, "labels", labels)

    def __len__(self) -> int:
        return len(self.labels)


@dataclass(frozen=True, eq=False)
class MatchingList:
    """1:2 matching triplets: a query and two candidates of the other modality, correct one first.

    ``direction`` ``"v2f"``: queries are voice paths, candidates face paths; ``"f2v"``
    the reverse. ``positives[i]`` is always the query's identity, ``negatives[i]`` another.
    """

    name: str
    direction: Direction
    queries: np.ndarray
    positives: np.ndarray
    negatives: np.ndarray

    def __post_init__(self) -> None:
        _check_direction(self.direction)
        q, p, n = (_frozen_str_array(a) for a in (self.queries, self.positives, self.negatives))
        if not (len(q) == len(p) == len(n)):
            raise ValueError(f"{self.name}: queries, positives and negatives differ in length")
        object.__setattr__(self, "queries", q)
        object.__setattr__(self, "positives", p)
        object.__setattr__(self, "negatives", n)

    def __len__(self) -> int:
        return len(self.queries)

    @property
    def voices_are_queries(self) -> bool:
        """True for v2f: saves callers from re-deriving which column holds which modality."""
        return self.direction == "v2f"


@dataclass(frozen=True, eq=False)
class RetrievalList:
    """A retrieval gallery: every voice and every face with its identity key; metric: mAP.

    Each voice queries all faces (v2f) and each face all voices (f2v); the
    relevant items are those with the same identity key (VoxCeleb1 id).
    ``direction`` is the one direction the list is scored in (Wen's
    ``reterival_v2f_test``), None for both (Nagrani's ``retrieval_20k``); left
    out, it is read from ``name``. :attr:`directions` is what evaluation loops over.
    """

    name: str
    voices: np.ndarray
    faces: np.ndarray
    voice_identities: np.ndarray
    face_identities: np.ndarray
    direction: Direction | None = None

    @property
    def directions(self) -> tuple[Direction, ...]:
        """The query directions to score: the list's own, or both when it has none."""
        return (self.direction,) if self.direction else DIRECTIONS

    def __post_init__(self) -> None:
        _own_direction(self)
        v, f, vi, fi = (
            _frozen_str_array(a) for a in (self.voices, self.faces, self.voice_identities, self.face_identities)
        )
        if len(v) != len(vi) or len(f) != len(fi):
            raise ValueError(f"{self.name}: paths and identities differ in length")
        for attr, value in zip(("voices", "faces", "voice_identities", "face_identities"), (v, f, vi, fi)):
            object.__setattr__(self, attr, value)


@dataclass(frozen=True, eq=False)
class Protocol:
    """A whole protocol: identities keyed by VoxCeleb1 id and every trial list found."""

    name: str
    identities: dict[str, Identity]
    verification: dict[str, VerificationList] = field(default_factory=dict)
    matching: dict[str, MatchingList] = field(default_factory=dict)
    retrieval: dict[str, RetrievalList] = field(default_factory=dict)

    @cached_property
    def _keys(self) -> dict[str, str]:
        """Path first component (VoxCeleb1 id or VGGFace1 name) -> VoxCeleb1 id."""
        return _identity_keys(self.identities.values())

    def _identity_of(self, path: PathLike, what: str) -> str:
        text = str(path).replace("\\", "/")
        first = _first_component(text)
        try:
            return self._keys[first]
        except KeyError:
            raise ProtocolError(
                f"{self.name}: {what} path {text!r} does not start with a known VoxCeleb1 id or VGGFace1 name"
            ) from None

    def identity_of_voice(self, path: PathLike) -> str:
        """VoxCeleb1 id of a voice path as written in the lists (``id10117/...`` or ``Name/...``)."""
        return self._identity_of(path, "voice")

    def identity_of_face(self, path: PathLike) -> str:
        """VoxCeleb1 id of a face path as written in the lists (``Name/...`` or ``id10117/...``)."""
        return self._identity_of(path, "face")

    def ids_in_split(self, split: str) -> tuple[str, ...]:
        """Sorted VoxCeleb1 ids of one split (e.g. ``"test"``), for building per-split data."""
        return tuple(sorted(k for k, ident in self.identities.items() if ident.split == split))

    def summary(self) -> str:
        """One line per list with its size, for logs."""
        lines = [f"{self.name}: {len(self.identities)} identities"]
        lines += [f"  verification {k}: {len(v)} pairs" for k, v in self.verification.items()]
        lines += [f"  matching {k} ({v.direction}): {len(v)} triplets" for k, v in self.matching.items()]
        lines += [
            f"  retrieval {k}: {len(v.voices)} voices, {len(v.faces)} faces" for k, v in self.retrieval.items()
        ]
        return "\n".join(lines)


# ---------------------------------------------------------------------------
# shared parsing helpers
# ---------------------------------------------------------------------------


def _identity_keys(identities: Iterable[Identity]) -> dict[str, str]:
    """Map both VoxCeleb1 ids and VGGFace1 names to the VoxCeleb1 id, refusing ambiguity."""
    keys: dict[str, str] = {}
    for ident in identities:
        for key in (ident.voice_id, ident.face_id):
            other = keys.get(key)
            if other is not None and other != ident.voice_id:
                raise ProtocolError(f"identity key {key!r} is used by both {other} and {ident.voice_id}")
            keys[key] = ident.voice_id
    return keys


def _read_text_lines(path: Path) -> list[str]:
    """Lines of a text file with CR/LF normalised (the real files mix both conventions)."""
    try:
        with open(path, encoding="utf-8-sig", newline=None) as fh:
            return fh.read().split("\n")
    except UnicodeDecodeError as exc:
        raise ProtocolError(f"{path}: not UTF-8 text ({exc})") from None


def _read_rows(path: Path, ncols: int, sep: str | None = None) -> tuple[Sequence[int], list[list[str]]]:
    """Non-blank lines split into exactly ``ncols`` fields; returns (line numbers, columns)."""
    lines = _read_text_lines(path)
    if sep is None:
        rows = [line.split() for line in lines]
    else:
        rows = [[p.strip() for p in line.split(sep)] if line.strip() else [] for line in lines]
    lengths = set(map(len, rows))
    if not lengths <= {0, ncols}:  # locate the first malformed line only when there is one
        for i, (line, parts) in enumerate(zip(lines, rows), 1):
            if parts and len(parts) != ncols:
                raise ProtocolError(
                    f"{path}:{i}: expected {ncols} fields separated by "
                    f"{'whitespace' if sep is None else repr(sep)}, got {len(parts)}: {line.strip()[:200]!r}"
                )
    linenos: Sequence[int]
    if 0 in lengths:  # blank lines (usually just the one after the final newline)
        linenos = [i for i, parts in enumerate(rows, 1) if parts]
        rows = [parts for parts in rows if parts]
    else:
        linenos = range(1, len(rows) + 1)
    columns = [list(col) for col in zip(*rows)] if rows else [[] for _ in range(ncols)]
    return linenos, columns


def _table_rows(path: Path, reader: Iterator[list[str]], width: int, sep: str) -> Iterator[tuple[int, list[str]]]:
    """(line number, fields) of a csv reader's non-blank rows; a row of another width names its line."""
    for row in reader:
        if not row or not any(cell.strip() for cell in row):
            continue
        if len(row) != width:
            raise ProtocolError(f"{path}:{reader.line_num}: expected {width} {sep}-separated fields, got {len(row)}")  # type: ignore[attr-defined]
        yield reader.line_num, row  # type: ignore[attr-defined]


def _first_component(p: str) -> str:
    return p.partition("/")[0]


def _resolve(paths: Sequence[str], keys: Mapping[str, str], file: Path, linenos: Sequence[int], what: str) -> list[str]:
    """VoxCeleb1 id of every path (first component looked up in ``keys``); error names file:line."""
    try:
        return [keys[p.partition("/")[0]] for p in paths]
    except KeyError:
        for lineno, p in zip(linenos, paths):
            first = _first_component(p)
            if first not in keys:
                raise ProtocolError(
                    f"{file}:{lineno}: {what} path {p!r} refers to identity {first!r}, "
                    "which is not in the protocol's identity files"
                ) from None
        raise  # pragma: no cover - unreachable


def _check_modality(paths: Sequence[str], file: Path, linenos: Sequence[int], want: str) -> None:
    """Reject a voice column holding images (or the reverse): a swapped column silently ruins a metric."""
    bad_ext = _IMAGE_EXT if want == "voice" else _AUDIO_EXT
    if not any(p.lower().endswith(bad_ext) for p in set(paths)):  # unique paths: lists repeat them a lot
        return
    for lineno, p in zip(linenos, paths):
        if p.lower().endswith(bad_ext):
            other = "face" if want == "voice" else "voice"
            raise ProtocolError(
                f"{file}:{lineno}: expected a {want} path here but {p!r} looks like a {other} file "
                "(columns swapped or wrong direction in the file name?)"
            )


def _direction_of(stem: str, file: Path | str) -> Direction:
    """The direction a Wen list file must have (its column order depends on it)."""
    direction = direction_from_name(stem)
    if direction is None:
        raise ProtocolError(f"{file}: cannot tell the direction from the name {stem!r} (needs exactly one of v2f/f2v)")
    return direction


def _check_matching(
    q_ids: Sequence[str], p_ids: Sequence[str], n_ids: Sequence[str], file: Path, linenos: Sequence[int], paths: tuple
) -> None:
    """The format promises the correct candidate first; a violation would invert accuracy silently."""
    for i, (q, p, n) in enumerate(zip(q_ids, p_ids, n_ids)):
        if q != p or q == n:
            what = "first (correct) candidate is not" if q != p else "second (wrong) candidate is also"
            raise ProtocolError(
                f"{file}:{linenos[i]}: {what} the query's identity {q}: "
                f"{paths[0][i]!r} {paths[1][i]!r} {paths[2][i]!r}"
            )


def _require_dir(folder: PathLike) -> Path:
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"protocol folder not found: {folder}")
    return folder


# ---------------------------------------------------------------------------
# Wen 2021
# ---------------------------------------------------------------------------


def _read_wen_identities(folder: Path) -> dict[str, Identity]:
    """Identities from ``vox1_{train,val,test}.csv``; rows with Set ``none`` are not part of the protocol."""
    identities: dict[str, Identity] = {}
    found = False
    for split in WEN_SPLITS:
        path = folder / f"vox1_{split}.csv"
        if not path.is_file():
            continue
        found = True
        with open(path, encoding="utf-8-sig", newline="") as fh:
            reader = csv.reader(fh)
            header = next(reader, None)
            if header is None:
                continue
            header = [h.strip() for h in header]
            missing = [c for c in _WEN_CSV_COLUMNS if c not in header]
            if missing:
                raise ProtocolError(f"{path}:1: header lacks column(s) {missing}; got {header}")
            idx = [header.index(c) for c in _WEN_CSV_COLUMNS]
            for _, row in _table_rows(path, reader, len(header), "comma"):
                vid, fid, gender, nat, set_ = (row[j].strip() for j in idx)
                if set_.lower() == "none":
                    continue
                if not vid or not fid:
                    raise ProtocolError(f"{path}:{reader.line_num}: empty VoxCeleb1_ID or VGGFace1_ID")
                if vid in identities:
                    raise ProtocolError(
                        f"{path}:{reader.line_num}: identity {vid} is listed twice "
                        f"(already in split {identities[vid].split!r})"
                    )
                identities[vid] = Identity(vid, fid, gender, nat, split)
    if not found:
        raise FileNotFoundError(f"{folder}: no Wen identity file (vox1_train.csv, vox1_val.csv, vox1_test.csv)")
    return identities


def _wen_list_files(folder: Path, prefixes: tuple[str, ...]) -> list[Path]:
    return sorted(
        p for p in folder.glob("*.txt") if p.stem.split("_", 1)[0] in prefixes and _WEN_LIST_RE.match(p.stem)
    )


def _read_wen_verification(path: Path, keys: Mapping[str, str]) -> VerificationList:
    direction = _direction_of(path.stem, path)
    linenos, (first, second) = _read_rows(path, 2)
    voices, faces = (first, second) if direction == "v2f" else (second, first)
    _check_modality(voices, path, linenos, "voice")
    _check_modality(faces, path, linenos, "face")
    v_ids = np.array(_resolve(voices, keys, path, linenos, "voice"))
    f_ids = np.array(_resolve(faces, keys, path, linenos, "face"))
    return VerificationList(path.stem, np.array(voices), np.array(faces), (v_ids == f_ids).astype(np.int8), direction)


def _read_matching(path: Path, keys: Mapping[str, str]) -> MatchingList:
    """1:2 triplets, whitespace-separated, query first, correct candidate second (Wen's and Nagrani's files alike)."""
    direction = _direction_of(path.stem, path)
    linenos, (q, pos, neg) = _read_rows(path, 3)
    qmod, cmod = query_modalities(direction)
    for col, mod in ((q, qmod), (pos, cmod), (neg, cmod)):
        _check_modality(col, path, linenos, mod)
    ids = [_resolve(col, keys, path, linenos, mod) for col, mod in ((q, qmod), (pos, cmod), (neg, cmod))]
    _check_matching(*ids, path, linenos, (q, pos, neg))
    return MatchingList(path.stem, direction, np.array(q), np.array(pos), np.array(neg))


def _read_wen_retrieval(path: Path, keys: Mapping[str, str]) -> RetrievalList:
    """Two lines of space-separated paths; the query modality's line comes first (v2f: wavs)."""
    direction = _direction_of(path.stem, path)
    lines = [(i, line.split()) for i, line in enumerate(_read_text_lines(path), 1) if line.strip()]
    if len(lines) != 2:
        raise ProtocolError(
            f"{path}: a retrieval file has exactly 2 non-blank lines (all voices, all faces), got {len(lines)}"
        )
    (l1, first), (l2, second) = lines
    (lv, voices), (lf, faces) = ((l1, first), (l2, second)) if direction == "v2f" else ((l2, second), (l1, first))
    _check_modality(voices, path, [lv] * len(voices), "voice")
    _check_modality(faces, path, [lf] * len(faces), "face")
    v_ids = _resolve(voices, keys, path, [lv] * len(voices), "voice")
    f_ids = _resolve(faces, keys, path, [lf] * len(faces), "face")
    return RetrievalList(path.stem, np.array(voices), np.array(faces), np.array(v_ids), np.array(f_ids), direction)


def read_wen2021(folder: PathLike) -> Protocol:
    """Read the Wen et al. 2021 protocol (also used by SL) from its released files.

    Identities come from ``vox1_{train,val,test}.csv`` (split from the file name,
    ``Set == none`` rows skipped). Every ``verify_*.txt``, ``match_*.txt`` and
    ``reterival_*.txt`` (or correctly spelled ``retrieval_*.txt``) present is read;
    the direction comes from the ``v2f``/``f2v`` token of the name and fixes the
    column order: the query modality comes first (``verify_f2v_test.txt`` is
    ``jpg wav``, ``reterival_f2v_test.txt`` has the jpg line first). Verification
    labels are derived from the identities, since the files carry none.
    """
    folder = _require_dir(folder)
    identities = _read_wen_identities(folder)
    keys = _identity_keys(identities.values())
    verification = {p.stem: _read_wen_verification(p, keys) for p in _wen_list_files(folder, ("verify",))}
    matching = {p.stem: _read_matching(p, keys) for p in _wen_list_files(folder, ("match",))}
    retrieval = {p.stem: _read_wen_retrieval(p, keys) for p in _wen_list_files(folder, ("reterival", "retrieval"))}
    return Protocol("wen2021", identities, verification, matching, retrieval)


# ---------------------------------------------------------------------------
# Nagrani 2018 (Learnable PINs)
# ---------------------------------------------------------------------------


def _read_nagrani_identities(folder: Path) -> dict[str, Identity]:
    """Join ``vox1_meta.csv`` (id, name, gender, nationality) with ``identity_splits.txt`` (name, set)."""
    meta_path, splits_path = folder / "vox1_meta.csv", folder / "identity_splits.txt"
    for p in (meta_path, splits_path):
        if not p.is_file():
            raise FileNotFoundError(f"{folder}: the Nagrani protocol needs {p.name}")

    split_of: dict[str, tuple[str, int]] = {}
    for lineno, line in enumerate(_read_text_lines(splits_path), 1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 2:
            raise ProtocolError(f"{splits_path}:{lineno}: expected 'name set', got {line.strip()[:200]!r}")
        name, set_ = parts
        try:
            split = NAGRANI_SPLITS[int(set_)]
        except (ValueError, KeyError):
            raise ProtocolError(f"{splits_path}:{lineno}: set must be 1, 2, 3 or 4, got {set_!r}") from None
        if name in split_of:
            raise ProtocolError(f"{splits_path}:{lineno}: {name} is listed twice (first on line {split_of[name][1]})")
        split_of[name] = (split, lineno)

    identities: dict[str, Identity] = {}
    with open(meta_path, encoding="utf-8-sig", newline="") as fh:
        reader = csv.reader(fh, delimiter="\t")
        header = next(reader, None)
        if header is None or len(header) < 4:
            raise ProtocolError(f"{meta_path}:1: expected a tab-separated header 'VoxCeleb1 ID, VGGFace1 ID, ...'")
        for _, row in _table_rows(meta_path, reader, len(header), "tab"):
            vid, name, gender, nat = (c.strip() for c in row[:4])
            if name not in split_of:
                raise ProtocolError(f"{meta_path}:{reader.line_num}: {name} ({vid}) has no line in {splits_path.name}")
            if vid in identities:
                raise ProtocolError(f"{meta_path}:{reader.line_num}: identity {vid} is listed twice")
            identities[vid] = Identity(vid, name, gender, nat, split_of[name][0])
    known = {ident.face_id for ident in identities.values()}
    for name, (_, lineno) in split_of.items():
        if name not in known:
            raise ProtocolError(f"{splits_path}:{lineno}: {name} is not in {meta_path.name}")
    return identities


def _read_nagrani_verification(path: Path, keys: Mapping[str, str]) -> VerificationList:
    """Comma-separated with a header; the file's labels are used and checked against the path identities."""
    with open(path, encoding="utf-8-sig", newline="") as fh:
        reader = csv.reader(fh)
        header = [h.strip() for h in next(reader, [])]
        missing = [c for c in ("label", "voice-path", "face-path") if c not in header]
        if missing:
            raise ProtocolError(
                f"{path}:1: header lacks column(s) {missing}; expected {','.join(_NAGRANI_VERIF_COLUMNS)}"
            )
        il, iv, jf = header.index("label"), header.index("voice-path"), header.index("face-path")
        linenos: list[int] = []
        voices: list[str] = []
        faces: list[str] = []
        labels: list[str] = []
        for lineno, row in _table_rows(path, reader, len(header), "comma"):
            linenos.append(lineno)
            voices.append(row[iv].strip())
            faces.append(row[jf].strip())
            labels.append(row[il].strip())
    bad = next((i for i, lab in enumerate(labels) if lab not in ("0", "1")), None)
    if bad is not None:
        raise ProtocolError(f"{path}:{linenos[bad]}: label must be 0 or 1, got {labels[bad]!r}")
    _check_modality(voices, path, linenos, "voice")
    _check_modality(faces, path, linenos, "face")
    lab = np.array([x == "1" for x in labels], dtype=np.int8)
    same = np.array(_resolve(voices, keys, path, linenos, "voice")) == np.array(
        _resolve(faces, keys, path, linenos, "face")
    )
    wrong = np.flatnonzero(same.astype(np.int8) != lab)
    if wrong.size:
        i = int(wrong[0])
        raise ProtocolError(
            f"{path}:{linenos[i]}: label {lab[i]} contradicts the path identities "
            f"({voices[i]!r} vs {faces[i]!r}); {wrong.size} such line(s)"
        )
    return VerificationList(path.stem, np.array(voices), np.array(faces), lab)


def _read_nagrani_retrieval(wav_path: Path, jpg_path: Path, keys: Mapping[str, str]) -> RetrievalList:
    """``wav_X.csv`` + ``jpg_X.csv``: TAB-separated ``id path`` with a header (``VoxCeleb1 ID\\twav|jpg``)."""
    out = []
    for path, what in ((wav_path, "voice"), (jpg_path, "face")):
        linenos, (ids, paths) = _read_rows(path, 2, sep="\t")
        if linenos and ids[0] not in keys:  # header line
            linenos, ids, paths = linenos[1:], ids[1:], paths[1:]
        _check_modality(paths, path, linenos, what)
        from_paths = _resolve(paths, keys, path, linenos, what)
        given = _resolve(ids, keys, path, linenos, "identity column of a")
        for lineno, a, b, p in zip(linenos, given, from_paths, paths):
            if a != b:
                raise ProtocolError(f"{path}:{lineno}: identity column says {a} but path {p!r} belongs to {b}")
        out.append((paths, given))
    (voices, v_ids), (faces, f_ids) = out
    stem = wav_path.stem[len("wav_"):]
    return RetrievalList(f"retrieval_{stem}", np.array(voices), np.array(faces), np.array(v_ids), np.array(f_ids))


def read_nagrani2018(folder: PathLike) -> Protocol:
    """Read the Nagrani et al. 2018 (Learnable PINs) protocol from its released files.

    Identities: ``vox1_meta.csv`` joined with ``identity_splits.txt`` on the VGGFace1
    name; split names are those of :data:`NAGRANI_SPLITS`. Lists read when present:
    ``veriflist/veriflist_*.txt`` (labels from the file, checked against the
    identities of the paths), ``matching/matching_{v2f,f2v}_*.csv`` (space-separated,
    correct candidate first, checked) and ``retrieval/wav_X.csv`` with
    ``retrieval/jpg_X.csv`` (list ``retrieval_X``). Paths may start with either the
    VoxCeleb1 id or the VGGFace1 name; both resolve to the VoxCeleb1 id.
    """
    folder = _require_dir(folder)
    identities = _read_nagrani_identities(folder)
    keys = _identity_keys(identities.values())

    verification = {
        p.stem: _read_nagrani_verification(p, keys) for p in sorted((folder / "veriflist").glob("veriflist_*.txt"))
    }

    matching = {p.stem: _read_matching(p, keys) for p in sorted((folder / "matching").glob("matching_*.csv"))}

    retrieval: dict[str, RetrievalList] = {}
    rdir = folder / "retrieval"
    wavs = {p.stem[len("wav_"):]: p for p in rdir.glob("wav_*.csv")}
    jpgs = {p.stem[len("jpg_"):]: p for p in rdir.glob("jpg_*.csv")}
    for suffix in sorted(set(wavs) | set(jpgs)):
        if suffix not in wavs or suffix not in jpgs:
            have = wavs.get(suffix) or jpgs.get(suffix)
            partner = f"{'jpg' if suffix in wavs else 'wav'}_{suffix}.csv"
            raise ProtocolError(f"{have}: retrieval needs both halves, {partner} is missing in {rdir}")
        lst = _read_nagrani_retrieval(wavs[suffix], jpgs[suffix], keys)
        retrieval[lst.name] = lst
    return Protocol("nagrani2018", identities, verification, matching, retrieval)


# ---------------------------------------------------------------------------
# dispatch
# ---------------------------------------------------------------------------


def detect_protocol(folder: PathLike) -> str | None:
    """Which protocol a folder holds, from its identity files; None when neither.

    ``wen2021``: any of ``vox1_{train,val,test}.csv``; ``nagrani2018``:
    ``vox1_meta.csv`` or ``identity_splits.txt``. A folder with both kinds is
    ambiguous and raises ProtocolError rather than guessing.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return None
    wen = any((folder / f"vox1_{s}.csv").is_file() for s in WEN_SPLITS)
    nagrani = (folder / "vox1_meta.csv").is_file() or (folder / "identity_splits.txt").is_file()
    if wen and nagrani:
        raise ProtocolError(
            f"{folder}: holds identity files of both wen2021 and nagrani2018; pass the name explicitly"
        )
    return "wen2021" if wen else "nagrani2018" if nagrani else None


def read_protocol(name: str, folder: PathLike) -> Protocol:
    """Read a protocol by name (``"wen2021"`` or ``"nagrani2018"``; ``"auto"`` uses :func:`detect_protocol`)."""
    if name == "auto":
        detected = detect_protocol(folder)
        if detected is None:
            raise FileNotFoundError(f"{folder}: no protocol identity files found")
        name = detected
    if name == "wen2021":
        return read_wen2021(folder)
    if name == "nagrani2018":
        return read_nagrani2018(folder)
    raise ValueError(f"unknown protocol {name!r}; expected one of {', '.join(PROTOCOL_NAMES)} or 'auto'")


# ---------------------------------------------------------------------------
# writer (Wen format), for synthetic worlds
# ---------------------------------------------------------------------------


def _as_items(value) -> list:
    """Accept a mapping (its values), a single object, or any iterable of objects."""
    if isinstance(value, Mapping):
        return list(value.values())
    if isinstance(value, (VerificationList, MatchingList, RetrievalList, Identity)):
        return [value]
    return list(value)


def _written_direction(lst: VerificationList | MatchingList | RetrievalList) -> Direction:
    """The list's direction, which its Wen file name must also say (the reader goes by the name)."""
    named = _direction_of(lst.name, lst.name)
    if lst.direction is not None and named != lst.direction:
        raise ProtocolError(f"{lst.name}: the name says {named} but the list's direction is {lst.direction}")
    return named


def write_wen2021_lists(
    folder: PathLike,
    identities: Mapping[str, Identity] | Iterable[Identity],
    *,
    verification: Mapping[str, VerificationList] | Iterable[VerificationList] = (),
    matching: Mapping[str, MatchingList] | Iterable[MatchingList] = (),
    retrieval: Mapping[str, RetrievalList] | Iterable[RetrievalList] = (),
    overwrite: bool = False,
) -> list[Path]:
    """Write identities and lists in the exact Wen 2021 formats, so ``read_wen2021`` reads them back.

    Lets a synthetic world ship its own protocol folder and go through the same
    reader as the real one. Files written:

    * ``vox1_{train,val,test}.csv`` (always all three; header
      ``VoxCeleb1_ID,VGGFace1_ID,Gender,Nationality,Set``, CRLF as in the originals;
      the Set column, VoxCeleb1's own dev/test flag that faa_core does not keep, is
      written as ``dev``). Every identity's split must be train, val or test.
    * ``{name}.txt`` for every list. Names must look like Wen's:
      ``verify_*``, ``match_*``, ``reterival_*`` (or ``retrieval_*``) with one
      ``v2f``/``f2v`` token, which fixes the column order (query modality first).

    Everything is validated before anything is written: paths must start with a
    given identity's VoxCeleb1 id or VGGFace1 name and contain no whitespace,
    verification labels must equal "same identity" (the format stores no labels),
    matching positives must be the query's identity and negatives not, retrieval
    identity arrays must agree with the paths. Existing files raise
    FileExistsError unless ``overwrite``. Returns the written paths.
    """
    folder = Path(folder)
    idents = _as_items(identities)
    for ident in idents:
        if not isinstance(ident, Identity):
            raise TypeError(f"identities must be Identity objects, got {type(ident).__name__}")
        if ident.split not in WEN_SPLITS:
            raise ProtocolError(f"identity {ident.voice_id}: split {ident.split!r} is not one of {WEN_SPLITS}")
        for value in (ident.voice_id, ident.face_id):
            if not value or "/" in value or value.split() != [value]:
                raise ProtocolError(f"identity {ident.voice_id!r}: {value!r} must be non-empty, without '/' or spaces")
    if len({i.voice_id for i in idents}) != len(idents):
        raise ProtocolError("identities: a VoxCeleb1 id is given twice")
    keys = _identity_keys(idents)

    def ids_of(paths: np.ndarray, name: str, what: str) -> np.ndarray:
        """Identities of a column, after the checks the reader will apply (errors say name:line)."""
        plist = paths.tolist()
        lines = range(1, len(plist) + 1)
        bad = next((i for i, p in enumerate(plist) if p.split() != [p]), None)
        if bad is not None:
            raise ProtocolError(
                f"{name}:{bad + 1}: path {plist[bad]!r} is empty or contains whitespace; the Wen format cannot store it"
            )
        _check_modality(plist, Path(name), lines, what)
        return np.array(_resolve(plist, keys, Path(name), lines, what))

    files: dict[Path, str] = {}

    def target(name: str, kinds: tuple[str, ...]) -> Path:
        if not _WEN_LIST_RE.match(name) or name.split("_", 1)[0] not in kinds:
            raise ProtocolError(
                f"list name {name!r} must start with {' or '.join(k + '_' for k in kinds)} "
                "and use only letters, digits, '_', '.', '-'"
            )
        path = folder / f"{name}.txt"
        if path in files:
            raise ProtocolError(f"two lists are named {name!r}")
        return path

    for lst in _as_items(verification):
        path, direction = target(lst.name, ("verify",)), _written_direction(lst)
        same = (ids_of(lst.voices, lst.name, "voice") == ids_of(lst.faces, lst.name, "face")).astype(np.int8)
        wrong = np.flatnonzero(same != lst.labels)
        if wrong.size:
            i = int(wrong[0])
            raise ProtocolError(
                f"{lst.name}:{i + 1}: label {int(lst.labels[i])} but the identities say {int(same[i])}; "
                "the Wen format stores no labels, they are derived from the identities"
            )
        cols = (lst.voices, lst.faces) if direction == "v2f" else (lst.faces, lst.voices)
        files[path] = "".join(f"{a} {b}\n" for a, b in zip(cols[0].tolist(), cols[1].tolist()))

    for lst in _as_items(matching):
        path, direction = target(lst.name, ("match",)), _written_direction(lst)
        qmod, cmod = query_modalities(direction)
        cols = (lst.queries, lst.positives, lst.negatives)
        ids = [ids_of(col, lst.name, mod) for col, mod in zip(cols, (qmod, cmod, cmod))]
        _check_matching(*ids, Path(lst.name), range(1, len(lst) + 1), cols)
        files[path] = "".join(f"{q} {p} {n}\n" for q, p, n in zip(*(c.tolist() for c in cols)))

    for lst in _as_items(retrieval):
        path, direction = target(lst.name, ("reterival", "retrieval")), _written_direction(lst)
        for paths, given, what in (
            (lst.voices, lst.voice_identities, "voice"),
            (lst.faces, lst.face_identities, "face"),
        ):
            if not len(paths):
                raise ProtocolError(f"{lst.name}: a retrieval list needs at least one {what}")
            derived = ids_of(paths, lst.name, what)
            if not np.array_equal(derived, given):
                i = int(np.flatnonzero(derived != given)[0])
                raise ProtocolError(f"{lst.name}: {what} {paths[i]!r} belongs to {derived[i]}, not {given[i]}")
        lines = [" ".join(lst.voices.tolist()), " ".join(lst.faces.tolist())]
        if direction == "f2v":
            lines.reverse()
        files[path] = lines[0] + "\n" + lines[1] + "\n"

    csv_paths = [folder / f"vox1_{s}.csv" for s in WEN_SPLITS]
    existing = [p for p in [*csv_paths, *files] if p.exists()]
    if existing and not overwrite:
        raise FileExistsError(f"would overwrite {', '.join(str(p) for p in existing)} (pass overwrite=True)")

    folder.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for split, path in zip(WEN_SPLITS, csv_paths):
        with open(path, "w", encoding="utf-8", newline="") as fh:
            writer = csv.writer(fh)  # CRLF line ends, like the released files
            writer.writerow(_WEN_CSV_COLUMNS)
            for ident in sorted((i for i in idents if i.split == split), key=lambda i: i.voice_id):
                writer.writerow([ident.voice_id, ident.face_id, ident.gender, ident.nationality, "dev"])
        written.append(path)
    for path, text in files.items():
        path.write_text(text, encoding="utf-8", newline="")
        written.append(path)
    return written
