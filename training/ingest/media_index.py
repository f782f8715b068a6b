"""Finding and checking the files of a VoxCeleb1 wav tree and a face tree.

Used by ``python -m training.prepare``. Three layouts are understood (``ROOT`` is
what the user passes; the ids written to the manifest are paths relative to it):

* voices, VoxCeleb1: ``ROOT/idXXXXX/<youtube_id>/00001.wav`` (``ROOT`` may also be
  the folder holding ``wav/``, as the VoxCeleb1 archive unpacks);
* faces ``vggface1``: ``ROOT/<Name>/<file>.jpg`` (or ``ROOT/VGG_ALL_FRONTAL/...``);
* faces ``voxceleb_frames``: ``ROOT/<Name>/1.6/<youtube_id>/<frame>.jpg`` (the
  ``unzippedFaces`` face tracks; the crop-scale level ``1.6`` may be absent;
  ``ROOT`` may be the folder holding ``unzippedFaces/``).

Anything else found in a tree (a stray file, a wrong depth, another extension)
is returned as a problem so that the report can name it: nothing is skipped
without a word.
"""

from __future__ import annotations

import os
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Optional, Sequence

from faa_core.media import MAX_IMAGE_PIXELS, MIN_AUDIO_SECONDS

AUDIO_EXT = (".wav", ".flac")
IMAGE_EXT = (".jpg", ".jpeg", ".png")
FACE_SOURCES = ("vggface1", "voxceleb_frames")
# The crop-scale level of the VoxCeleb1 face tracks (``1.6``); YouTube ids never contain a dot.
_SCALE_DIR = re.compile(r"^\d+\.\d+$")
_TREE_SUBDIR = {"voice": "wav", "vggface1": "VGG_ALL_FRONTAL", "voxceleb_frames": "unzippedFaces"}


@dataclass(frozen=True)
class FoundFile:
    """A media file in a tree: its id (relative posix path), owner folder and YouTube id (None for photos)."""

    id: str
    owner: str
    youtube_id: Optional[str]


@dataclass
class Problem:
    """A path that is not used, with the reason (shown in the report)."""

    path: str
    reason: str

    def as_dict(self) -> dict[str, str]:
        return {"path": self.path, "reason": self.reason}


def resolve_tree_root(root: Path, kind: str) -> Path:
    """``root`` itself, or its well-known subfolder (``wav``, ``VGG_ALL_FRONTAL``, ``unzippedFaces``).

    The subfolder is taken only when it exists, so that both the archive's
    top folder and the folder of identities are accepted.
    """
    sub = root / _TREE_SUBDIR[kind]
    return sub if sub.is_dir() else root


def _entries(folder: Path) -> list[os.DirEntry]:
    with os.scandir(folder) as it:
        return sorted(it, key=lambda e: e.name)


def _rel(root: Path, path: str) -> str:
    return Path(os.path.relpath(path, root)).as_posix()


def _collect_files(root: Path, folder: os.DirEntry, owner: str, youtube_id: Optional[str], ext: tuple[str, ...],
                   what: str, found: list[FoundFile], problems: list[Problem]) -> None:
    """Media files directly inside ``folder``; sub-folders and other files become problems."""
    for e in _entries(Path(folder.path)):
        rel = _rel(root, e.path)
        if e.is_dir():
            problems.append(Problem(rel + "/", f"unexpected folder inside a {what} folder (not searched)"))
        elif e.name.lower().endswith(ext):
            found.append(FoundFile(rel, owner, youtube_id))
        elif not e.name.startswith("."):
            problems.append(Problem(rel, f"not a {'/'.join(ext)} file"))


def scan_voices(root: Path) -> tuple[list[FoundFile], list[Problem]]:
    """Every audio file of ``root/<identity>/<youtube_id>/<file>``, sorted by id."""
    found: list[FoundFile] = []
    problems: list[Problem] = []
    for ident in _entries(root):
        if not ident.is_dir():
            if not ident.name.startswith("."):
                problems.append(Problem(ident.name, "file at the top of the voice tree (expected idXXXXX/<video>/<file>.wav)"))
            continue
        for video in _entries(Path(ident.path)):
            rel = _rel(root, video.path)
            if video.is_dir():
                _collect_files(root, video, ident.name, video.name, AUDIO_EXT, "video", found, problems)
            elif not video.name.startswith("."):
                problems.append(Problem(rel, "file directly in an identity folder (expected idXXXXX/<video>/<file>.wav)"))
    found.sort(key=lambda f: f.id)
    return found, problems


def scan_faces(root: Path, source: str) -> tuple[list[FoundFile], list[Problem]]:
    """Every image of a ``vggface1`` or ``voxceleb_frames`` tree, sorted by id."""
    if source not in FACE_SOURCES:
        raise ValueError(f"face source must be one of {FACE_SOURCES}, got {source!r}")
    found: list[FoundFile] = []
    problems: list[Problem] = []
    for person in _entries(root):
        if not person.is_dir():
            if not person.name.startswith("."):
                problems.append(Problem(person.name, "file at the top of the face tree (expected <Name>/...)"))
            continue
        if source == "vggface1":
            _collect_files(root, person, person.name, None, IMAGE_EXT, "person", found, problems)
            continue
        # voxceleb_frames: <Name>/[1.6/]<youtube_id>/<frame>.jpg
        videos: list[os.DirEntry] = []
        for child in _entries(Path(person.path)):
            rel = _rel(root, child.path)
            if not child.is_dir():
                if not child.name.startswith("."):
                    problems.append(Problem(rel, "file directly in a person folder (expected <Name>/1.6/<video>/<frame>.jpg)"))
            elif _SCALE_DIR.match(child.name):
                for v in _entries(Path(child.path)):
                    if v.is_dir():
                        videos.append(v)
                    elif not v.name.startswith("."):
                        problems.append(Problem(_rel(root, v.path), "file directly in a crop-scale folder (expected a video folder)"))
            else:
                videos.append(child)
        for v in videos:
            _collect_files(root, v, person.name, v.name, IMAGE_EXT, "video", found, problems)
    found.sort(key=lambda f: f.id)
    return found, problems


# ---------------------------------------------------------------------------
# checking files
# ---------------------------------------------------------------------------


def check_audio_file(path: Path) -> tuple[Optional[dict[str, Any]], Optional[str]]:
    """(facts, None) for a usable recording, (None, reason) otherwise; reads the header only."""
    import soundfile as sf

    try:
        size = path.stat().st_size
    except OSError as exc:
        return None, f"cannot be opened: {exc.strerror or exc}"
    if size == 0:
        return None, "empty file (0 bytes)"
    try:
        info = sf.info(str(path))
    except Exception as exc:  # libsndfile raises its own error types and RuntimeError
        return None, f"not readable as audio: {str(exc).strip() or type(exc).__name__}"
    if info.samplerate <= 0 or info.frames <= 0:
        return None, f"no samples (frames={info.frames}, rate={info.samplerate})"
    duration = info.frames / info.samplerate
    if duration < MIN_AUDIO_SECONDS:
        return None, f"too short: {duration:.2f} s (at least {MIN_AUDIO_SECONDS:.1f} s are needed for an embedding)"
    return {"duration_s": f"{duration:.3f}", "sample_rate": str(info.samplerate)}, None


def check_image_file(path: Path, full_decode: bool = False) -> tuple[Optional[dict[str, Any]], Optional[str]]:
    """(facts, None) for a usable image, (None, reason) otherwise.

    ``Image.verify`` checks the structure without decoding pixels (fast); it does
    not notice a JPEG whose data is cut short, which ``full_decode`` does.
    """
    import warnings

    from PIL import Image, UnidentifiedImageError

    try:
        size = path.stat().st_size
    except OSError as exc:
        return None, f"cannot be opened: {exc.strerror or exc}"
    if size == 0:
        return None, "empty file (0 bytes)"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                width, height = im.size
                if width * height > MAX_IMAGE_PIXELS:
                    return None, f"too large: {width}x{height} pixels (limit {MAX_IMAGE_PIXELS:,})"
                im.verify()
            if full_decode:
                with Image.open(path) as im:
                    im.load()
    except UnidentifiedImageError:
        return None, "not an image format Pillow can read"
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        return None, f"too large to decode safely: {exc}"
    except (OSError, SyntaxError, ValueError) as exc:
        return None, f"corrupt image: {str(exc).strip() or type(exc).__name__}"
    if width < 16 or height < 16:
        return None, f"too small: {width}x{height} pixels"
    return {"width": str(width), "height": str(height)}, None


def check_files(
    root: Path,
    ids: Sequence[str],
    modality: str,
    workers: int = 8,
    full_decode: bool = False,
    progress: Optional[Callable[[int], None]] = None,
) -> list[tuple[Optional[dict[str, Any]], Optional[str]]]:
    """Check many files in threads (header reads are I/O bound); results in ``ids`` order."""
    if modality == "voice":
        def one(i: str):
            return check_audio_file(root / i)
    else:
        def one(i: str):
            return check_image_file(root / i, full_decode)
    out: list[tuple[Optional[dict[str, Any]], Optional[str]]] = []
    if workers <= 1:
        for i in ids:
            out.append(one(i))
            if progress:
                progress(1)
        return out
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for r in pool.map(one, ids, chunksize=64):
            out.append(r)
            if progress:
                progress(1)
    return out


# ---------------------------------------------------------------------------
# old path forms written in some protocol lists
# ---------------------------------------------------------------------------


def legacy_voice_path(item_id: str, name: str) -> Optional[str]:
    """``id10001/Y8hIVOBuels/00001.wav`` -> ``A.J._Buckley/Y8hIVOBuels_0000001.wav``.

    The first VoxCeleb1 release named files ``<Name>/<video>_<7-digit segment>.wav``;
    Nagrani et al.'s verification lists still use that form, the later release
    (and every other list) ``idXXXXX/<video>/<5-digit segment>.wav``.
    """
    parts = item_id.split("/")
    if len(parts) != 3:
        return None
    stem, dot, ext = parts[2].rpartition(".")
    if not stem.isdigit():
        return None
    return f"{name}/{parts[1]}_{int(stem):07d}{dot}{ext}"


def legacy_face_path(item_id: str) -> Optional[str]:
    """``Name/1.6/<video>/<frame>.jpg`` -> ``Name/<video>/<frame>.jpg`` (lists that omit the crop scale)."""
    parts = item_id.split("/")
    if len(parts) == 4 and _SCALE_DIR.match(parts[1]):
        return "/".join((parts[0], parts[2], parts[3]))
    return None


def unique(values: Iterable[str]) -> list[str]:
    return sorted(set(values))
