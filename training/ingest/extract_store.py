"""Extraction's final store: the parts merged into one feature store, and the report of what was skipped.

Part of ``python -m training.extract`` (see :mod:`training.ingest.extract`).
The merge itself is :func:`training.features.merge_parts` (shards hard-linked,
items.csv and store.json written as the store writer writes them).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from faa_core.fileio import atomic_write_json, atomic_write_text
from training.ingest.extract_plan import ExtractError, gib, part_folder
from training.ingest.extract_work import dims_of
from training.ingest.manifest import Manifest

def finalise(out: Path, plan: dict[str, Any], manifest: Manifest, settings_by_mod: dict[str, Any]) -> dict[str, Any]:
    """Write the report, then merge every part into the store layout (store.json last)."""
    from training.features import FeatureStore, merge_parts

    report: dict[str, Any] = {"store": str(out.resolve()), "manifest": plan["manifest"], "modalities": {}}
    folders: dict[str, list[Path]] = {}
    for m, entry in plan["modalities"].items():
        folders[m] = [part_folder(out, m, i) for i in range(int(entry["parts"]))]
        written, size, skipped, centred = 0, 0, [], []
        made_by: dict[str, str] = {}  # weights_id -> the first part written with it
        provenance: dict[str, Any] = {}
        for i, pdir in enumerate(folders[m]):
            part = FeatureStore(pdir)
            encoder = part.source.get("encoder") or {}
            made_by.setdefault(str(encoder.get("weights_id", "unknown: the part records no encoder")), pdir.name)
            if len(made_by) == 1:
                provenance = dict(encoder)
            skipped += part.source.get("skipped", [])
            centred += part.source.get("center_crop", [])
            written += len(part[m])
            size += sum(f.stat().st_size for f in (pdir / m).glob("shard-*.npy"))
        if len(made_by) > 1:
            raise ExtractError(f"the {m} parts were written with different encoder weights ("
                               + ", ".join(f"{name}: {wid}" for wid, name in made_by.items())
                               + "); rerun the extraction with --overwrite")
        described = settings_by_mod.get("encoders", {}).get(m)
        if isinstance(described, dict):  # the store names the weights that made its features (the card copies it)
            described.update(provenance)
        report["modalities"][m] = {
            "manifest_items": int(entry["items"]), "written": written, "skipped_count": len(skipped),
            "center_crop_count": len(centred), "parts": int(entry["parts"]), "bytes": size,
            "skipped": skipped, "center_crop": centred,
        }
    source = {
        "generator": "training.extract",
        "synthetic": False,
        "manifest": plan["manifest"],
        "protocol": manifest.meta.get("protocol"),
        "face_source": manifest.meta.get("face_source"),
        "face_video": manifest.meta.get("face_video"),
        **settings_by_mod,
        "skipped": {m: r["skipped_count"] for m, r in report["modalities"].items()},
        "center_crop": report["modalities"].get("face", {}).get("center_crop_count", 0),
    }
    atomic_write_json(out / "extract_report.json", report)
    atomic_write_text(out / "extract_report.txt", report_text(report))
    shapes = {m: dims_of(m) for m in folders}
    try:
        merge_parts(out, folders, {m: d for m, (d, _) in shapes.items()},
                    {m: g for m, (_, g) in shapes.items() if g}, source)
    except FileNotFoundError as exc:
        raise ExtractError(f"{exc}; rerun the extraction with --overwrite") from None
    return report


def report_text(report: dict[str, Any], limit: int = 200) -> str:
    lines = [f"feature store {report['store']} from manifest {report['manifest']}"]
    for m, r in report["modalities"].items():
        crops = f", {r['center_crop_count']} centre crops (no face detected)" if m == "face" else ""
        lines.append(f"{m}: {r['written']} of {r['manifest_items']} items written ({gib(r['bytes'])}), "
                     f"{r['skipped_count']} skipped{crops}")
    for m, r in report["modalities"].items():
        if r["skipped"]:
            lines.append(f"skipped {m} items ({r['skipped_count']}):")
            lines += [f"  {s['id']}: {s['reason']}" for s in r["skipped"][:limit]]
            if r["skipped_count"] > limit:
                lines.append(f"  ... and {r['skipped_count'] - limit} more (all in extract_report.json)")
        if r["center_crop"]:
            lines.append(f"{m} items cut by the centre fallback ({r['center_crop_count']}):")
            lines += [f"  {s}" for s in r["center_crop"][:limit]]
            if r["center_crop_count"] > limit:
                lines.append(f"  ... and {r['center_crop_count'] - limit} more (all in extract_report.json)")
    return "\n".join(lines) + "\n"
