"""The media manifest: which files a real extraction reads, and who is in them.

``python -m training.prepare`` writes it and ``python -m training.extract``
reads it; it is plain CSV + JSON so it can be inspected or edited by hand::

    MANIFEST_DIR/manifest.json   roots of the media trees, protocol, counts
    MANIFEST_DIR/voice.csv       one row per readable recording
    MANIFEST_DIR/face.csv        one row per readable image
    MANIFEST_DIR/report.json     what was missing, unreadable or left out (and report.txt)

Both CSVs start with the feature store's columns ``id,video,identity,split``
(``id`` is the file's path relative to its root, exactly as the protocol
lists write it, so evaluation finds list items by id) and add the identity's
``name``, ``gender``, ``nationality`` and per-file facts (voice:
``duration_s``, ``sample_rate``; face: ``width``, ``height``).
"""

from __future__ import annotations

import csv
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from faa_core.fileio import atomic_write_text, read_json_document
from training.features import MODALITIES

MANIFEST_FORMAT = "faa-manifest"
MANIFEST_VERSION = 1
BASE_COLUMNS = ("id", "video", "identity", "split")
IDENTITY_COLUMNS = ("name", "gender", "nationality")
EXTRA_COLUMNS = {"voice": ("duration_s", "sample_rate"), "face": ("width", "height")}


def columns(modality: str) -> tuple[str, ...]:
    """The CSV header of one modality's manifest."""
    return BASE_COLUMNS + IDENTITY_COLUMNS + EXTRA_COLUMNS[modality]


def write_rows(path: Path, modality: str, rows: Sequence[Mapping[str, Any]]) -> None:
    """One modality's CSV, columns in :func:`columns` order (extra keys are an error)."""
    import io

    header = columns(modality)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=header, lineterminator="\n", extrasaction="raise")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(path, buf.getvalue())


@dataclass
class Manifest:
    """A manifest folder read back: its JSON and each modality's rows (dicts of strings)."""

    root: Path
    meta: dict[str, Any]
    rows: dict[str, list[dict[str, str]]]

    def media_root(self, modality: str) -> Path:
        """Where the files of a modality live (ids are relative to it)."""
        return Path(self.meta["roots"][modality])

    def path_of(self, modality: str, item_id: str) -> Path:
        return self.media_root(modality) / item_id

    def checksum(self, modality: str) -> str:
        """sha256 of the modality's CSV and root: a resumed extraction must read the same items."""
        h = hashlib.sha256()
        h.update(str(self.media_root(modality)).encode())
        h.update((self.root / f"{modality}.csv").read_bytes())
        return h.hexdigest()


class ManifestError(ValueError):
    """A manifest folder is missing a file or is malformed."""


def read_manifest(folder: str | os.PathLike[str], modalities: Sequence[str] = MODALITIES) -> Manifest:
    """Read ``manifest.json`` and the CSVs of ``modalities``; ManifestError names what is wrong."""
    root = Path(folder)
    if not root.is_dir():
        raise ManifestError(f"manifest folder not found: {root} (make one with python -m training.prepare)")
    meta_path = root / "manifest.json"
    if not meta_path.is_file():
        raise ManifestError(f"{root} is not a manifest folder: no manifest.json (make one with python -m training.prepare)")
    try:
        meta = read_json_document(meta_path, MANIFEST_FORMAT)
    except ValueError as exc:
        raise ManifestError(str(exc)) from None
    rows: dict[str, list[dict[str, str]]] = {}
    for m in modalities:
        if m not in MODALITIES:
            raise ManifestError(f"unknown modality {m!r}; expected one of {', '.join(MODALITIES)}")
        path = root / f"{m}.csv"
        if not path.is_file():
            raise ManifestError(f"{root}: {path.name} is missing")
        with open(path, encoding="utf-8", newline="") as fh:
            reader = csv.DictReader(fh)
            missing = [c for c in BASE_COLUMNS if c not in (reader.fieldnames or [])]
            if missing:
                raise ManifestError(f"{path}:1: header lacks column(s) {missing}")
            rows[m] = [dict(r) for r in reader]
        if not meta.get("roots", {}).get(m):
            raise ManifestError(f"{meta_path}: no media root for {m} under 'roots'")
    return Manifest(root, meta, rows)
