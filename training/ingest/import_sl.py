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

Encoders: ``store.json``'s ``source`` names SL's encoders (``SL_ENCODERS``: SL's own ECAPA-TDNN retrained on
VoxCeleb2 and SL's face pipeline, weight files unknown), and so does the card of a checkpoint trained on the
store; ``faa_core`` refuses to serve such a checkpoint on this package's encoders (their features differ)
unless ``--allow-encoder-mismatch`` is given.

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

Modules: :mod:`~training.ingest.sl_pickles` (what a pickle holds; the three
trial readers), :mod:`~training.ingest.sl_release` (the release folder),
:mod:`~training.ingest.sl_store` (identities, videos, splits, the store),
:mod:`~training.ingest.sl_lists` (the Wen-format lists); this module runs them
and is the command line.
"""

from __future__ import annotations

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

from faa_core.fileio import atomic_write_json
from training.ingest.sl_lists import clear_previous, write_protocol
from training.ingest.sl_pickles import (
    EvalLists,
    SLFormatError,
    SLImportError,
    make_kind,
    read_matching,
    read_retrieval,
    read_verification,
)
from training.ingest.sl_release import SLRelease, find_sl_root, read_release
from training.ingest.sl_store import assign_splits, build_identities, read_identity_tables, write_store

__all__ = [
    "SLImportError",
    "SLFormatError",
    "SLRelease",
    "EvalLists",
    "find_sl_root",
    "make_kind",
    "read_release",
    "read_verification",
    "read_matching",
    "read_retrieval",
    "import_sl",
    "main",
]


#: What made SL's released embeddings (from SL's code): its voice extraction loads SL's own ECAPA-TDNN checkpoint,
#: retrained on VoxCeleb2, and its face crops come from its own pipeline; neither weight file comes with the
#: release, so their identity is unknown. Recorded in the store's source, copied into the card of a checkpoint
#: trained on the store, where it makes faa_core refuse to serve that checkpoint with this package's encoders.
SL_ENCODERS: dict[str, dict[str, Any]] = {
    "face": {
        "name": "Self-Lifting's face pipeline: facenet-pytorch InceptionResnetV1 (VGGFace2) on SL's own face crops",
        "weights_id": "unknown: Self-Lifting's face pipeline (its own crops; the release names no weight file)",
    },
    "voice": {
        "name": "Self-Lifting's ECAPA-TDNN (SpeechBrain's architecture) retrained on VoxCeleb2",
        "weights_id": "unknown: Self-Lifting's own ECAPA-TDNN checkpoint retrained on VoxCeleb2 (not released)",
    },
}
SL_WEIGHTS = {
    "mode": "self-lifting",
    "description": "face: SL's face pipeline (InceptionResnetV1 VGGFace2 on SL's own crops; weight file hash unknown); "
                   "voice: SL's ECAPA (VoxCeleb2), SL's own retrained checkpoint (weight file hash unknown)",
}


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
    clear_previous(folder, overwrite, delete=False)  # fail before the (long) reading, not after
    release = read_release(sl_dir, log)
    table, meta = read_identity_tables(protocol_dir) if protocol_dir else ({}, {})
    ids = build_identities(release, table, meta)
    for line in ids.conflicts[:10]:
        log(f"warning: identity evidence: {line}")

    splits = assign_splits(release)

    face_dim = len(next(iter(release.faces.values())))
    voice_dim = len(next(iter(release.voices.values())))
    # lists first: they validate every trial against the identities before anything is written
    protocol: dict[str, Any] = {}
    if release.evals:
        log(f"writing the lists to {folder}")
        protocol = write_protocol(release, ids, splits.item_split, folder, overwrite=overwrite)
    source = {
        "kind": "self-lifting-release", "sl_dir": str(release.root), "normalized": "l2",
        "identity_table": str(protocol_dir) if protocol_dir else None,
        "encoders": {side: dict(entry) for side, entry in SL_ENCODERS.items()},
        "weights": dict(SL_WEIGHTS),
    }
    counts = write_store(release, ids, splits, out, source, shard_size=shard_size, overwrite=overwrite)
    log(f"wrote {out}: {len(release.voices)} voices ({voice_dim}-d), {len(release.faces)} faces ({face_dim}-d)")
    face_names = ids.face_names(release)
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
        "train_items_in_eval": dict(splits.leaks),
        "movie_paths_without_embedding": splits.no_embedding,
        "ignored_files": release.ignored,
        "protocol": protocol,
    }
    atomic_write_json(out / "sl_import.json", summary)
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
