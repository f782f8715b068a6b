"""Writing SL's evaluation trials as Wen 2021 lists (plus the 1:N side files) and guarding the lists folder.

Part of ``python -m training.import_sl`` (see :mod:`training.ingest.import_sl`).
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from faa_core.fileio import atomic_write_json, atomic_write_text
from faa_core.protocols import (
    DIRECTIONS,
    Identity,
    MatchingList,
    ProtocolError,
    RetrievalList,
    VerificationList,
    write_wen2021_lists,
)
from training.ingest.sl_pickles import SLImportError
from training.ingest.sl_release import SLRelease, eval_kind
from training.ingest.sl_store import IdentityTable

def _list_names(stem: str) -> tuple[str, str, str]:
    kind, split, tag = eval_kind(stem)  # type: ignore[misc]
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
        for d, trips in zip(DIRECTIONS, (lists.v2f, lists.f2v)):
            if trips:
                q, p, n = zip(*trips)
                name = f"match_{tag}{d}_sl_{split}"
                matching.append(MatchingList(name, d, np.array(q), np.array(p), np.array(n)))
                origin[name] = {"from": src, "trials": len(q)}
        for d, trials in zip(DIRECTIONS, (lists.v2f_n, lists.f2v_n)):
            if trials:
                name = f"sl_match_{d}_{tag}{split}.txt"
                side[name] = [" ".join([q, *cands]) for q, cands in trials]
                origin[name] = {"from": src, "trials": len(trials), "format": "query correct other... (training.eval.one_to_n)",
                                "candidates": sorted({len(c) for _, c in trials})}
        for k, (voices, faces) in enumerate(lists.galleries, 1):
            suffix = f"_{k}" if len(lists.galleries) > 1 else ""
            for d in DIRECTIONS:
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
    clear_previous(folder, overwrite)
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
        written.append(atomic_write_text(folder / name, "".join(line + "\n" for line in lines)))
    info = {"lists": origin, "identities": len(identities),
            "note": "SL reports retrieval mAP as the mean over its galleries (reterival_*_<k>); "
                    "sl_match_* files hold SL's 1:N trials (scored by training.eval.evaluate via training.eval.one_to_n)",
            "files": sorted(p.name for p in written)}
    atomic_write_json(folder / LISTS_MANIFEST, info)
    return {**info, "folder": str(folder)}


LISTS_MANIFEST = "sl_lists.json"


def clear_previous(folder: Path, overwrite: bool, delete: bool = True) -> None:
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
