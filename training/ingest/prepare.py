"""``python -m training.prepare``: manifests of real media for feature extraction.

::

    python -m training.prepare --protocol wen2021 --protocol-dir ../shared/data/protocols/wen2021 \\
        --voices /data/voxceleb1/wav --faces /data/vggface1 --face-source vggface1 --out manifests/wen-vgg

Walks a VoxCeleb1 wav tree and a face tree (VGGFace1 photos or VoxCeleb1
face-track frames, see :mod:`training.ingest.media_index`), keeps the files of the
protocol's identities, checks that every one can be read (audio: the header
with ``soundfile.info``, at least 1 s; images: ``PIL.Image.verify``, or a full
decode with ``--full-decode``) and writes ``OUT/voice.csv``, ``OUT/face.csv``,
``OUT/manifest.json`` and a report (``report.json`` + ``report.txt``).

Nothing is dropped without a word: the report lists every unreadable file,
every file of an identity outside the protocol (counted per folder), every
stray file in the trees, and every path of the protocol's lists that is not in
the manifest (absent from the trees or unreadable). The manifest leaves those
out.

Identity, split, gender and nationality come from the protocol (Wen:
``vox1_*.csv``; Nagrani: ``vox1_meta.csv`` + ``identity_splits.txt``); the
identity key is the VoxCeleb1 id. ``video`` links a face and a voice of the
same YouTube video: ``idXXXXX/<youtube_id>`` for recordings and face-track
frames. A VGGFace1 photo comes from no known video, so its ``video`` is the
photo itself (its id): it never shares a video with a recording, and
training that pairs a face and a voice through a shared video finds no pairs
in a VGGFace1 manifest (it needs identity-level pairing instead).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any, Callable, Optional

from faa_core.fileio import atomic_write_json, atomic_write_text
from faa_core.protocols import PROTOCOL_NAMES, Protocol, ProtocolError, read_protocol

from training.features import MODALITIES
from training.ingest.manifest import MANIFEST_FORMAT, MANIFEST_VERSION, write_rows
from training.ingest.media_index import (
    FACE_SOURCES,
    FoundFile,
    check_files,
    legacy_face_path,
    legacy_voice_path,
    resolve_tree_root,
    scan_faces,
    scan_voices,
)

TEXT_LIST_LIMIT = 200  # report.txt shows this many paths per section; report.json has all


class PrepareError(Exception):
    """A user mistake (a path, an existing output, a protocol file) with a message to show as is."""


def _list_paths(protocol: Protocol) -> dict[str, tuple[set[str], set[str]]]:
    """Unique voice and face paths of every list of the protocol."""
    out: dict[str, tuple[set[str], set[str]]] = {}
    for name, vl in protocol.verification.items():
        out[name] = (set(vl.voices.tolist()), set(vl.faces.tolist()))
    for name, ml in protocol.matching.items():
        q = set(ml.queries.tolist())
        c = set(ml.positives.tolist()) | set(ml.negatives.tolist())
        out[name] = (q, c) if ml.voices_are_queries else (c, q)
    for name, rl in protocol.retrieval.items():
        out[name] = (set(rl.voices.tolist()), set(rl.faces.tolist()))
    return out


def _check_out(out: Path, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise PrepareError(f"--out {out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()):
        if not (out / "manifest.json").is_file() and not (out / "report.json").is_file():
            raise PrepareError(f"--out {out} is not empty and holds no manifest; choose an empty or new folder")
        if not overwrite:
            raise PrepareError(f"--out {out} already holds a manifest; pass --overwrite to replace it")


def _progress_bar(total: int, desc: str, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="file", disable=not enabled, dynamic_ncols=True, leave=False)


def _assign(
    found: list[FoundFile], keys: dict[str, str]
) -> tuple[list[tuple[FoundFile, str]], dict[str, int]]:
    """Files of protocol identities with their VoxCeleb1 id; files per unknown owner folder."""
    inside: list[tuple[FoundFile, str]] = []
    outside: Counter = Counter()
    for f in found:
        vid = keys.get(f.owner)
        if vid is None:
            outside[f.owner] += 1
        else:
            inside.append((f, vid))
    return inside, dict(sorted(outside.items()))


def prepare_manifest(
    protocol: str,
    protocol_dir: str | Path,
    voices: str | Path,
    faces: str | Path,
    face_source: str,
    out: str | Path,
    *,
    workers: int = 8,
    full_decode: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Build and write the manifest and its report; returns the report (also in ``out/report.json``).

    Raises :class:`PrepareError` for user mistakes (missing folders, an output
    folder in the way, a malformed protocol file).
    """
    t0 = time.perf_counter()
    if protocol not in PROTOCOL_NAMES:
        raise PrepareError(f"--protocol must be one of {', '.join(PROTOCOL_NAMES)}, got {protocol!r}")
    if face_source not in FACE_SOURCES:
        raise PrepareError(f"--face-source must be one of {', '.join(FACE_SOURCES)}, got {face_source!r}")
    for flag, p in (("--protocol-dir", protocol_dir), ("--voices", voices), ("--faces", faces)):
        if not Path(p).is_dir():
            raise PrepareError(f"{flag}: folder not found: {p}")
    out = Path(out)
    _check_out(out, overwrite)
    try:
        proto = read_protocol(protocol, protocol_dir)
    except (ProtocolError, FileNotFoundError) as exc:
        raise PrepareError(f"cannot read the {protocol} protocol in {protocol_dir}: {exc}") from None
    if not proto.identities:
        raise PrepareError(f"{protocol_dir}: the {protocol} protocol lists no identities")

    roots = {
        "voice": resolve_tree_root(Path(voices), "voice").resolve(),
        "face": resolve_tree_root(Path(faces), face_source).resolve(),
    }
    log(f"protocol {protocol}: {len(proto.identities)} identities; voices from {roots['voice']}, "
        f"faces ({face_source}) from {roots['face']}")

    # identity keys: VoxCeleb1 id and VGGFace1 name both map to the VoxCeleb1 id
    keys: dict[str, str] = {}
    for ident in proto.identities.values():
        keys[ident.voice_id] = ident.voice_id
        keys[ident.face_id] = ident.voice_id

    scanned = {"voice": scan_voices(roots["voice"]), "face": scan_faces(roots["face"], face_source)}
    rows: dict[str, list[dict[str, str]]] = {}
    section: dict[str, dict[str, Any]] = {}
    bad_ids: dict[str, dict[str, str]] = {}
    kept_ids: dict[str, set[str]] = {}
    aliases: dict[str, dict[str, str]] = {}
    for m in MODALITIES:
        found, problems = scanned[m]
        inside, outside = _assign(found, keys)
        log(f"{m}: {len(found)} files found, {len(inside)} of protocol identities; checking them")
        bar = _progress_bar(len(inside), f"checking {m} files", progress)
        checked = check_files(roots[m], [f.id for f, _ in inside], m, workers=workers,
                              full_decode=full_decode, progress=bar.update)
        bar.close()
        rows[m], bad, kept, alias = [], {}, set(), {}
        for (f, vid), (facts, reason) in zip(inside, checked):
            ident = proto.identities[vid]
            legacy = legacy_voice_path(f.id, ident.face_id) if m == "voice" else legacy_face_path(f.id)
            if legacy:
                alias[legacy] = f.id
            if reason is not None:
                bad[f.id] = reason
                continue
            kept.add(f.id)
            video = f"{vid}/{f.youtube_id}" if f.youtube_id is not None else f.id
            rows[m].append({
                "id": f.id, "video": video, "identity": vid, "split": ident.split,
                "name": ident.face_id, "gender": ident.gender, "nationality": ident.nationality, **facts,
            })
        bad_ids[m], kept_ids[m], aliases[m] = bad, kept, alias
        section[m] = {
            "root": str(roots[m]),
            "found": len(found),
            "of_protocol_identities": len(inside),
            "kept": len(rows[m]),
            "unreadable_count": len(bad),
            "unreadable": [{"path": p, "reason": r} for p, r in sorted(bad.items())],
            "outside_protocol_files": sum(outside.values()),
            "outside_protocol_folders": outside,
            "other_problems_count": len(problems),
            "other_problems": [p.as_dict() for p in problems],
        }

    # identities and splits
    by_split: dict[str, dict[str, int]] = {}
    with_items = {m: Counter(r["identity"] for r in rows[m]) for m in MODALITIES}
    for ident in proto.identities.values():
        s = by_split.setdefault(ident.split, {"identities": 0, "with_voice": 0, "with_face": 0, "with_both": 0,
                                              "voice_items": 0, "face_items": 0})
        s["identities"] += 1
        nv, nf = with_items["voice"][ident.voice_id], with_items["face"][ident.voice_id]
        s["with_voice"] += nv > 0
        s["with_face"] += nf > 0
        s["with_both"] += nv > 0 and nf > 0
        s["voice_items"] += nv
        s["face_items"] += nf
    no_items = {m: sorted(k for k in proto.identities if with_items[m][k] == 0) for m in MODALITIES}

    # the protocol's lists against the manifest
    lists_report: dict[str, Any] = {}
    missing: dict[str, dict[str, set[str]]] = {m: {"absent": set(), "unreadable": set()} for m in MODALITIES}
    legacy_hits: dict[str, int] = {m: 0 for m in MODALITIES}
    status_cache: dict[tuple[str, str], str] = {}

    def status(m: str, path: str) -> str:
        key = (m, path)
        st = status_cache.get(key)
        if st is None:
            target = path if (path in kept_ids[m] or path in bad_ids[m]) else aliases[m].get(path, path)
            if target != path:
                legacy_hits[m] += 1
            st = "kept" if target in kept_ids[m] else "unreadable" if target in bad_ids[m] else "absent"
            status_cache[key] = st
        return st

    for name, (vpaths, fpaths) in sorted(_list_paths(proto).items()):
        entry: dict[str, Any] = {}
        for m, paths in (("voice", vpaths), ("face", fpaths)):
            miss = 0
            for p in paths:
                st = status(m, p)
                if st != "kept":
                    missing[m][st].add(p)
                    miss += 1
            entry[f"{m}_paths"] = len(paths)
            entry[f"{m}_missing"] = miss
        lists_report[name] = entry

    notes: list[str] = []
    if face_source == "vggface1":
        notes.append("faces are VGGFace1 photos: a photo comes from no known video, so its 'video' is the photo "
                     "itself (its id) and no face shares a video with a recording")
    face_paths = {p for _, f in _list_paths(proto).values() for p in f}
    if face_paths:
        sample = next(iter(sorted(face_paths)))
        frames_like = len(sample.split("/")) >= 3
        if face_source == "vggface1" and frames_like:
            notes.append(f"the {protocol} lists name face-track frames ({sample}); with --face-source vggface1 "
                         "their faces cannot be in this manifest")
        if face_source == "voxceleb_frames" and not frames_like:
            notes.append(f"the {protocol} lists name VGGFace1 photos ({sample}); with --face-source "
                         "voxceleb_frames their faces cannot be in this manifest")
    for m in MODALITIES:
        if legacy_hits[m]:
            notes.append(f"{legacy_hits[m]} {m} path(s) of the lists use the first VoxCeleb1 release's form "
                         f"({'Name/<video>_0000001.wav' if m == 'voice' else 'Name/<video>/<frame>.jpg'}) and were "
                         "matched to the files under their current name; evaluation needs the same mapping")

    report: dict[str, Any] = {
        "protocol": protocol,
        "protocol_dir": str(Path(protocol_dir).resolve()),
        "face_source": face_source,
        "full_decode": full_decode,
        "identities": {
            "in_protocol": len(proto.identities),
            "by_split": by_split,
            "without_voice_items": no_items["voice"],
            "without_face_items": no_items["face"],
        },
        **section,
        "lists": lists_report,
        "list_items_missing": {
            m: {"absent_count": len(missing[m]["absent"]), "unreadable_count": len(missing[m]["unreadable"]),
                "absent": sorted(missing[m]["absent"]), "unreadable": sorted(missing[m]["unreadable"])}
            for m in MODALITIES
        },
        "notes": notes,
        "seconds": round(time.perf_counter() - t0, 2),
    }

    out.mkdir(parents=True, exist_ok=True)
    (out / "manifest.json").unlink(missing_ok=True)  # first: a half-rewritten folder must not look finished
    for m in MODALITIES:
        write_rows(out / f"{m}.csv", m, rows[m])
    atomic_write_json(out / "report.json", report)
    atomic_write_text(out / "report.txt", report_text(report))
    meta = {
        "format": MANIFEST_FORMAT,
        "version": MANIFEST_VERSION,
        "protocol": protocol,
        "protocol_dir": report["protocol_dir"],
        "face_source": face_source,
        "face_video": "photo" if face_source == "vggface1" else "youtube",
        "roots": {m: str(roots[m]) for m in MODALITIES},
        "counts": {m: len(rows[m]) for m in MODALITIES},
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    atomic_write_json(out / "manifest.json", meta)
    return report


def _paths_block(title: str, items: list[str], limit: int = TEXT_LIST_LIMIT) -> list[str]:
    if not items:
        return []
    lines = [f"{title} ({len(items)}):"]
    lines += [f"  {x}" for x in items[:limit]]
    if len(items) > limit:
        lines.append(f"  ... and {len(items) - limit} more (all in report.json)")
    return lines


def report_text(report: dict[str, Any]) -> str:
    """The report for people: counts first, then every problem (long sections cut, see report.json)."""
    L = [f"Manifest for {report['protocol']} ({report['protocol_dir']}), faces from {report['face_source']}", ""]
    for m in MODALITIES:
        s = report[m]
        L.append(
            f"{m}: {s['root']}\n  {s['found']} files found; {s['of_protocol_identities']} belong to protocol "
            f"identities; {s['kept']} kept; {s['unreadable_count']} unreadable (left out); "
            f"{s['outside_protocol_files']} files in {len(s['outside_protocol_folders'])} folders of identities "
            f"outside the protocol (left out); {s['other_problems_count']} other paths not used"
        )
    ids = report["identities"]
    L += ["", f"identities in the protocol: {ids['in_protocol']}"]
    for split, s in ids["by_split"].items():
        L.append(f"  {split:<15} {s['identities']:>5} identities: {s['with_voice']} with voice items "
                 f"({s['voice_items']}), {s['with_face']} with face items ({s['face_items']}), "
                 f"{s['with_both']} with both")
    L += ["", "protocol lists (unique paths not in the manifest / unique paths):"]
    for name, e in report["lists"].items():
        L.append(f"  {name:<36} voices {e['voice_missing']}/{e['voice_paths']}   faces {e['face_missing']}/{e['face_paths']}")
    for m in MODALITIES:
        lm = report["list_items_missing"][m]
        L.append(f"  {m} list items missing: {lm['absent_count']} absent from the tree, {lm['unreadable_count']} unreadable")
    L.append("")
    for m in MODALITIES:
        s = report[m]
        L += _paths_block(f"unreadable {m} files", [f"{u['path']}: {u['reason']}" for u in s["unreadable"]])
        L += _paths_block(f"{m} folders outside the protocol (files)",
                          [f"{k}: {v}" for k, v in s["outside_protocol_folders"].items()])
        L += _paths_block(f"other {m} paths not used", [f"{p['path']}: {p['reason']}" for p in s["other_problems"]])
        L += _paths_block(f"{m} list items absent from the tree", report["list_items_missing"][m]["absent"], 50)
        L += _paths_block(f"{m} list items unreadable", report["list_items_missing"][m]["unreadable"], 50)
        L += _paths_block(f"protocol identities without {m} items", ids[f"without_{m}_items"], 50)
    if report["notes"]:
        L += ["", "notes:"] + [f"  - {n}" for n in report["notes"]]
    return "\n".join(L) + "\n"


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m training.prepare", description="build voice and face manifests (and a report of every missing or unreadable file) for feature extraction")
    p.add_argument("--protocol", required=True, choices=PROTOCOL_NAMES, help="which protocol gives identities and splits")
    p.add_argument("--protocol-dir", required=True, help="folder with the protocol's files (vox1_*.csv or vox1_meta.csv ...)")
    p.add_argument("--voices", required=True, help="VoxCeleb1 wav tree: idXXXXX/<video>/00001.wav (or its parent holding wav/)")
    p.add_argument("--faces", required=True, help="face tree (VGGFace1 <Name>/<file>.jpg or unzippedFaces/<Name>/1.6/<video>/<frame>.jpg)")
    p.add_argument("--face-source", required=True, choices=FACE_SOURCES, help="layout of --faces")
    p.add_argument("--out", required=True, help="manifest folder to write")
    p.add_argument("--workers", type=int, default=8, help="threads checking files (default 8)")
    p.add_argument("--full-decode", action="store_true", help="decode every image fully (slower; also catches truncated JPEGs)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing manifest in --out")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    if args.workers < 1:
        p.error("--workers must be >= 1")
    try:
        report = prepare_manifest(
            args.protocol, args.protocol_dir, args.voices, args.faces, args.face_source, args.out,
            workers=args.workers, full_decode=args.full_decode, overwrite=args.overwrite,
            progress=not args.no_progress, log=lambda s: print(s, file=sys.stderr),
        )
    except PrepareError as exc:
        print(f"{p.prog}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{p.prog}: interrupted; nothing was written as finished (no manifest.json)", file=sys.stderr)
        return 130
    print(report_text(report), end="")
    print(f"manifest written to {args.out} ({report['voice']['kept']} voice, {report['face']['kept']} face items; "
          f"report: {Path(args.out) / 'report.txt'})", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
