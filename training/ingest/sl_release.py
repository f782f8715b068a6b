"""Reading a Self-Lifting release folder: embeddings, movies, training movies and the evaluation pickles.

Part of ``python -m training.import_sl`` (see :mod:`training.ingest.import_sl`).
Every pickle goes through :mod:`training.ingest.safe_pickle`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Optional

import numpy as np

from training.ingest.safe_pickle import safe_load
from training.ingest.sl_pickles import (
    EVAL_KINDS,
    READERS,
    SPLIT_OF_PREFIX,
    EvalLists,
    SLFormatError,
    SLImportError,
    describe,
    is_seq,
    make_kind,
)

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


#: SL's vectors are 512-d (face) and 192-d (voice); anything far larger is not an embedding.
MAX_EMBEDDING_DIM = 4096


def _embeddings(obj: Any, name: str) -> dict[str, np.ndarray]:
    """path -> L2-normalised float32 vector; every vector of one file has one length.

    Entries are popped from ``obj`` (the freshly loaded pickle) as they are
    converted, so a large release is not held twice in memory.
    """
    if not isinstance(obj, dict) or not obj:
        raise SLFormatError(f"{name}: expected a non-empty dict path -> embedding; found {describe(obj)}")
    out: dict[str, np.ndarray] = {}
    dim = None
    for key in list(obj):
        value = obj.pop(key)
        if not isinstance(key, str) or not key.strip() or any(c in key for c in "\n\r"):
            raise SLFormatError(f"{name}: keys must be path strings; found {describe(key)}")
        try:
            vec = np.asarray(value, dtype=np.float32).reshape(-1)
        except (TypeError, ValueError):
            raise SLFormatError(f"{name}: {key!r} -> {describe(value)} is not a numeric vector") from None
        if vec.shape[0] > MAX_EMBEDDING_DIM:
            raise SLFormatError(f"{name}: {key!r} is a {vec.shape[0]}-d vector; this reader accepts at most "
                                f"{MAX_EMBEDDING_DIM} (SL's are 512 and 192): the file is not SL's release")
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
        raise SLFormatError(f"{name}: expected a dict movie -> list of paths; found {describe(obj)}")
    out = {}
    for movie, paths in obj.items():
        if not is_seq(paths) and not isinstance(paths, (set, frozenset)):
            raise SLFormatError(f"{name}: movie {movie!r} -> {describe(paths)}, expected a list of paths")
        out[str(movie)] = [str(p) for p in paths]
    return out


def eval_kind(stem: str) -> Optional[tuple[str, str, str]]:
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
    if not (is_seq(train) or isinstance(train, (set, frozenset))) or not all(isinstance(m, str) for m in train):
        raise SLFormatError(f"cluster/train_movie_list.pkl: expected a list of movie keys; found {describe(train)}")
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
            parsed = eval_kind(path.stem)
            if parsed is None:
                ignored.append(rel)
                log(f"warning: {rel}: not a <test|valid>_<verification|matching|retrieval>[_tag].pkl name; ignored")
                continue
            log(f"reading {rel}")
            evals[path.stem] = READERS[parsed[0]](safe_load(path, rel), rel, kind)
        if not any(eval_kind(s)[1] == "val" for s in evals):  # type: ignore[index]
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
