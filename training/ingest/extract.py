"""``python -m training.extract``: frozen-encoder features of a manifest, into a feature store.

::

    python -m training.extract --manifest manifests/wen-vgg --out features/wen-vgg [--weights pretrained]
    torchrun --nproc-per-node 4 -m training.extract --manifest ... --out ...      # one GPU per rank

Runs faa_core's :class:`~faa_core.encoders.FaceEncoder` and
:class:`~faa_core.encoders.VoiceEncoder` over every item of a manifest made by
``python -m training.prepare`` and writes a feature store
(:mod:`training.features`: fp16 globals + tokens, sharded) that
``training.loop.data.open_features`` reads.

**Work units and resuming.** Each modality's manifest rows are cut into parts of
``--shard-size`` consecutive rows. A part is written by
:class:`~training.features.FeatureStoreWriter` into its own folder
``OUT/parts/<modality>/part-NNNNN/`` whose ``store.json`` is written last and
atomically, so it is the part's completion mark: a rerun skips every part that
has it and redoes any other from scratch. ``OUT/extract.json`` records the
manifest's checksum and the settings; a rerun with another manifest or other
settings is refused (``--overwrite`` starts over).

**Ranks.** Under ``torchrun`` (or any launcher setting ``RANK`` and
``WORLD_SIZE``) the parts are dealt round-robin: rank ``r`` takes parts
``r, r + W, r + 2W, ...`` of the list of all parts (face first, then voice), so
ranks never write the same folder, and a restart may use another number of
ranks. Each rank uses ``cuda:LOCAL_RANK`` when CUDA is there. Ranks other than
0 exit when their parts are written; rank 0 then waits (polling the parts'
``store.json``, ``--wait-timeout``) until every part exists and finalises.

**Final layout** (what :class:`~training.features.FeatureStore` reads)::

    OUT/store.json                     written last, atomically
    OUT/<modality>/items.csv           id,video,identity,split (manifest order, minus skipped items)
    OUT/<modality>/shard-NNNNN.*.npy   hard links to part NNNNN's shard (no copy; a move
                                       where the file system has no hard links)
    OUT/parts/...                      the parts (same files), kept so that finalising can be redone
    OUT/extract.json                   the plan (manifest checksum, settings, parts)
    OUT/extract_report.{json,txt}      items written, skipped (with the reason), center crops

**Bad input never stops a run**: a file that cannot be decoded, audio that is
silent, too short or too long, an image without a detected face under
``--face-crop detect``: each is logged, skipped and listed with its reason.

**Faces.** Both face sources are already face crops (VGGFace1 photos, VoxCeleb1
face-track frames) with the face filling about 60% of the side. Default
``--face-crop detect-or-center``: MTCNN, as at inference, and the detected face
nearest the image centre is cut as faa_core cuts it (so training sees the crops
the demo will give); when MTCNN finds nothing (profile views, blur), the
central square of ``--center-fraction`` (0.6) of the shorter side is used
instead of losing the item, and the item is listed as a centre crop.
``detect`` skips such items instead; ``center`` never runs the detector.

**Voices.** Each recording is embedded alone: padding recordings of different
lengths into one batch would change ECAPA-TDNN's output (its convolutions pad
by reflection and its statistics pooling and the mean normalisation would see
the padding); recordings of identical length in a batch do run together.
Files are decoded in ``--workers`` threads while the encoders run.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import logging
import math
import os
import shutil
import sys
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Optional, Sequence

import numpy as np

from faa_core.device import DEVICE_CHOICES
from faa_core.fileio import atomic_write_json, atomic_write_text
from training.features import MODALITIES
from training.ingest.manifest import Manifest, ManifestError, read_manifest

log = logging.getLogger("training.ingest.extract")

PLAN_FORMAT = "faa-extraction"
PLAN_VERSION = 1
FACE_CROPS = ("detect-or-center", "detect", "center")
EXIT_INCOMPLETE = 3


class ExtractError(Exception):
    """A user mistake or a refused situation, with a message to show as is."""


@dataclass
class Settings:
    """Everything that decides the features; a resumed run must use the same values."""

    weights: str = "pretrained"
    face_crop: str = "detect-or-center"
    center_fraction: float = 0.6
    voice_token_rate: float = 4.0
    max_audio_seconds: float = 300.0
    shard_size: int = 1024


@dataclass
class RunOptions:
    """How this invocation works; changing these never changes the features."""

    batch_size: int = 32
    device: str = "auto"
    workers: int = 4
    stop_after_parts: Optional[int] = None
    wait_timeout: Optional[float] = None
    poll_seconds: float = 10.0
    progress: bool = True
    rank: Optional[int] = None
    world_size: Optional[int] = None
    local_rank: Optional[int] = None


@dataclass
class Outcome:
    """What one invocation did."""

    rank: int
    world_size: int
    parts_total: int
    parts_done_before: int
    parts_written: list[str] = field(default_factory=list)
    items_written: int = 0
    items_skipped: int = 0
    finalised: bool = False
    complete: bool = False
    stopped_early: bool = False
    message: str = ""


# ---------------------------------------------------------------------------
# ranks, parts and the plan
# ---------------------------------------------------------------------------


def rank_from_env(env: Optional[dict[str, str]] = None) -> tuple[int, int, int]:
    """(rank, world_size, local_rank) from torchrun's variables; (0, 1, 0) when absent."""
    env = dict(os.environ if env is None else env)
    try:
        rank = int(env.get("RANK", "0"))
        world = int(env.get("WORLD_SIZE", "1"))
        local = int(env.get("LOCAL_RANK", str(rank)))
    except ValueError:
        raise ExtractError(
            f"RANK/WORLD_SIZE/LOCAL_RANK must be integers, got {env.get('RANK')!r}/{env.get('WORLD_SIZE')!r}/"
            f"{env.get('LOCAL_RANK')!r}"
        ) from None
    if world < 1 or not 0 <= rank < world:
        raise ExtractError(f"need 0 <= RANK < WORLD_SIZE, got RANK={rank} WORLD_SIZE={world}")
    return rank, world, local


@dataclass(frozen=True)
class Part:
    modality: str
    index: int
    start: int
    stop: int

    @property
    def name(self) -> str:
        return f"part-{self.index:05d}"

    def folder(self, out: Path) -> Path:
        return out / "parts" / self.modality / self.name

    def done(self, out: Path) -> bool:
        return (self.folder(out) / "store.json").is_file()


def parts_of(counts: dict[str, int], shard_size: int, modalities: Sequence[str]) -> list[Part]:
    """All parts in the fixed order ranks deal from (modalities in MODALITIES order)."""
    parts: list[Part] = []
    for m in MODALITIES:
        if m not in modalities:
            continue
        n = counts[m]
        for i in range(math.ceil(n / shard_size)):
            parts.append(Part(m, i, i * shard_size, min(n, (i + 1) * shard_size)))
    return parts


def _weights_signature(weights: str) -> str:
    """``random``/``pretrained`` as is; a directory by its absolute path (same files on every rank)."""
    return weights if weights in ("random", "pretrained") else str(Path(weights).resolve())


def _modality_plan(manifest: Manifest, m: str, settings: Settings) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "manifest_checksum": manifest.checksum(m),
        "items": len(manifest.rows[m]),
        "shard_size": settings.shard_size,
        "parts": math.ceil(len(manifest.rows[m]) / settings.shard_size),
        "weights": _weights_signature(settings.weights),
    }
    if m == "face":
        entry["face_crop"] = settings.face_crop
        entry["center_fraction"] = settings.center_fraction
    else:
        entry["voice_token_rate"] = settings.voice_token_rate
        entry["max_audio_seconds"] = settings.max_audio_seconds
    return entry


def _load_plan(out: Path) -> Optional[dict[str, Any]]:
    path = out / "extract.json"
    if not path.is_file():
        return None
    try:
        plan = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ExtractError(f"{path} cannot be read ({exc}); remove it or pass --overwrite") from None
    if plan.get("format") != PLAN_FORMAT:
        raise ExtractError(f"{path} is not an extraction plan; choose another --out")
    return plan


def _merge_plan(out: Path, manifest: Manifest, modalities: Sequence[str], settings: Settings) -> dict[str, Any]:
    """Create the plan, or check that this run continues it (same manifest and settings)."""
    plan = _load_plan(out) or {
        "format": PLAN_FORMAT, "version": PLAN_VERSION, "manifest": str(manifest.root.resolve()), "modalities": {},
    }
    changed = False
    for m in modalities:
        want = _modality_plan(manifest, m, settings)
        have = plan["modalities"].get(m)
        if have is None:
            plan["modalities"][m] = want
            changed = True
            continue
        diff = [k for k in sorted(set(want) | set(have)) if want.get(k) != have.get(k)]
        if diff:
            what = ", ".join(f"{k}: {have.get(k)!r} -> {want.get(k)!r}" for k in diff if k != "manifest_checksum")
            if "manifest_checksum" in diff:
                what = "the manifest changed" + (f"; {what}" if what else "")
            raise ExtractError(
                f"{out} holds a {m} extraction made with other inputs ({what}); rerun with the same manifest and "
                "settings to resume, or pass --overwrite to start over (or use another --out)"
            )
    weights = {e["weights"] for e in plan["modalities"].values()}
    if len(weights) > 1:
        raise ExtractError(f"{out}: the modalities would use different encoder weights {sorted(weights)}; use one --weights")
    if changed:
        atomic_write_json(out / "extract.json", plan)
    return plan


def _prepare_out(out: Path, overwrite: bool, world: int) -> None:
    ours = ("extract.json", "parts", "store.json", "face", "voice", "extract_report.json", "extract_report.txt")
    if out.exists() and not out.is_dir():
        raise ExtractError(f"--out {out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()):
        if not (out / "extract.json").is_file():
            raise ExtractError(f"--out {out} is not empty and holds no extraction (extract.json); choose an empty or new folder")
        if overwrite:
            if world > 1:
                raise ExtractError("--overwrite cannot be used with several ranks (they would delete each other's "
                                   "parts); clear the folder with one process first")
            (out / "store.json").unlink(missing_ok=True)
            for name in ours:
                p = out / name
                if p.is_dir():
                    shutil.rmtree(p)
                elif p.exists():
                    p.unlink()
    out.mkdir(parents=True, exist_ok=True)


# ---------------------------------------------------------------------------
# disk size
# ---------------------------------------------------------------------------


def voice_token_count(duration_s: float, token_rate: float) -> int:
    """Tokens VoiceEncoder gives for a recording: Fbank frames (10 ms hop) pooled per 1/token_rate s."""
    from faa_core.encoders.voice import FRAMES_PER_SECOND

    frames = int(duration_s * FRAMES_PER_SECOND) + 1
    window = max(1, int(round(FRAMES_PER_SECOND / token_rate)))
    return -(-frames // window)


def estimate_bytes(manifest: Manifest, modality: str, token_rate: float = 4.0) -> int:
    """Store size of a modality: items x (global + token) dims x 2 bytes (fp16), plus offsets.

    Voice tokens come from the manifest's ``duration_s`` (8 s assumed where absent).
    """
    from faa_core.encoders import FACE_DIM, FACE_GRID, FACE_TOKEN_DIM, VOICE_DIM, VOICE_TOKEN_DIM

    rows = manifest.rows[modality]
    n = len(rows)
    if modality == "face":
        return n * (FACE_DIM + FACE_GRID[0] * FACE_GRID[1] * FACE_TOKEN_DIM) * 2 + n * 8
    tokens = 0
    for r in rows:
        try:
            d = float(r.get("duration_s") or 8.0)
        except ValueError:
            d = 8.0
        tokens += voice_token_count(d, token_rate)
    return n * VOICE_DIM * 2 + tokens * VOICE_TOKEN_DIM * 2 + n * 8


def _gib(n: float) -> str:
    return f"{n / 2**30:.2f} GiB" if n >= 2**28 else f"{n / 2**20:.1f} MiB"


# ---------------------------------------------------------------------------
# the encoders over batches
# ---------------------------------------------------------------------------


@dataclass
class Loaded:
    """One manifest row after decoding: the media object, or the reason it cannot be used."""

    row: dict[str, str]
    obj: Any = None
    reason: Optional[str] = None


def _prefetch(pool: ThreadPoolExecutor, load: Callable[[dict[str, str]], Loaded],
              batches: Iterable[list[dict[str, str]]]) -> Iterator[list[Loaded]]:
    """Decode the next batch in threads while the current one is encoded."""
    pending: Optional[list[Future]] = None
    for batch in batches:
        submitted = [pool.submit(load, r) for r in batch]
        if pending is not None:
            yield [f.result() for f in pending]
        pending = submitted
    if pending is not None:
        yield [f.result() for f in pending]


def _reason(exc: BaseException) -> str:
    text = str(exc).strip()
    return text if text else type(exc).__name__


class FaceWork:
    """Detection (batched per image size), the crop policy and InceptionResnetV1 over a batch."""

    def __init__(self, encoder: Any, crop: str, center_fraction: float) -> None:
        if crop not in FACE_CROPS:
            raise ExtractError(f"--face-crop must be one of {', '.join(FACE_CROPS)}, got {crop!r}")
        if not 0.1 <= center_fraction <= 1.0:
            raise ExtractError(f"--center-fraction must be in [0.1, 1], got {center_fraction}")
        self.encoder = encoder
        self.crop = crop
        self.center_fraction = center_fraction

    def load(self, root: Path) -> Callable[[dict[str, str]], Loaded]:
        from faa_core.media import load_image

        def one(row: dict[str, str]) -> Loaded:
            try:
                return Loaded(row, load_image(root / row["id"], name=row["id"]))
            except Exception as exc:  # every decode failure is the file's problem, never the run's
                return Loaded(row, reason=_reason(exc))

        return one

    def center_box(self, image: Any) -> np.ndarray:
        side = self.center_fraction * min(image.width, image.height)
        cx, cy = image.width / 2.0, image.height / 2.0
        return np.array([cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2], dtype=float)

    def detect(self, images: list[Any]) -> list[Optional[np.ndarray]]:
        """The box of the face nearest each image's centre, or None; one MTCNN call per image size."""
        from PIL import Image

        enc = self.encoder
        scaled, scales = [], []
        for im in images:
            s = min(1.0, enc.detect_max_side / max(im.width, im.height))
            small = im if s >= 1.0 else im.resize((max(1, round(im.width * s)), max(1, round(im.height * s))), Image.BILINEAR)
            scaled.append(small)
            scales.append(s)
        groups: dict[tuple[int, int], list[int]] = {}
        for i, im in enumerate(scaled):
            groups.setdefault(im.size, []).append(i)
        boxes_out: list[Optional[np.ndarray]] = [None] * len(images)
        for idx in groups.values():
            import torch

            with torch.inference_mode():
                batch_boxes, batch_probs = enc.detector.detect([scaled[i] for i in idx])
            for i, b, p in zip(idx, batch_boxes, batch_probs):
                if b is None:
                    continue
                b = np.asarray(b, dtype=float).reshape(-1, 4) / scales[i]
                p = np.asarray(p, dtype=float).reshape(-1)
                ok = (p >= enc.min_face_probability) & (b[:, 2] - b[:, 0] >= 4) & (b[:, 3] - b[:, 1] >= 4)
                if not ok.any():
                    continue
                b, p = b[ok], p[ok]
                im = images[i]
                centre = np.array([im.width / 2.0, im.height / 2.0])
                dist = np.hypot(*(((b[:, :2] + b[:, 2:]) / 2.0 - centre).T)) / math.hypot(im.width, im.height)
                boxes_out[i] = b[int(np.lexsort((-p, np.round(dist, 3)))[0])]
        return boxes_out

    def run(self, batch: list[Loaded]) -> tuple[list[tuple[dict[str, str], np.ndarray, np.ndarray]], list[tuple[str, str]], list[str]]:
        """(rows with embedding and tokens, [(id, reason) skipped], [ids cut by the centre fallback])."""
        from faa_core.encoders.face import crop_face

        skipped = [(b.row["id"], b.reason or "") for b in batch if b.obj is None]
        good = [b for b in batch if b.obj is not None]
        if not good:
            return [], skipped, []
        images = [b.obj for b in good]
        boxes: list[Optional[np.ndarray]] = [None] * len(good)
        if self.crop != "center":
            boxes = self.detect(images)
        crops, rows, centred = [], [], []
        for b, im, box in zip(good, images, boxes):
            if box is None:
                if self.crop == "detect":
                    skipped.append((b.row["id"], "no face detected (MTCNN)"))
                    continue
                box = self.center_box(im)
                if self.crop == "detect-or-center":
                    centred.append(b.row["id"])
            crops.append(crop_face(im, box, margin=self.encoder.margin))
            rows.append(b.row)
        if not crops:
            return [], skipped, centred
        feats = self.encoder.encode(crops)
        emb = feats.embeddings.float().cpu().numpy()
        tok = feats.tokens.float().cpu().numpy()
        return [(r, emb[i], tok[i]) for i, r in enumerate(rows)], skipped, centred


class VoiceWork:
    """Decoding + checks + resampling in threads; ECAPA-TDNN per recording (equal lengths together)."""

    def __init__(self, encoder: Any, max_audio_seconds: float) -> None:
        self.encoder = encoder
        self.max_audio_seconds = max_audio_seconds

    def load(self, root: Path) -> Callable[[dict[str, str]], Loaded]:
        from faa_core.encoders.voice import resample_to_16k
        from faa_core.media import MIN_AUDIO_SECONDS, check_audio, load_audio

        def one(row: dict[str, str]) -> Loaded:
            try:
                rec = check_audio(load_audio(root / row["id"], name=row["id"]), row["id"],
                                  min_seconds=MIN_AUDIO_SECONDS, max_seconds=self.max_audio_seconds)
                return Loaded(row, resample_to_16k(rec.samples, rec.sample_rate))
            except Exception as exc:  # every decode failure is the file's problem, never the run's
                return Loaded(row, reason=_reason(exc))

        return one

    def run(self, batch: list[Loaded]) -> tuple[list[tuple[dict[str, str], np.ndarray, np.ndarray]], list[tuple[str, str]], list[str]]:
        import torch

        skipped = [(b.row["id"], b.reason or "") for b in batch if b.obj is None]
        by_len: dict[int, list[Loaded]] = {}
        for b in batch:
            if b.obj is not None:
                by_len.setdefault(int(b.obj.numel()), []).append(b)
        results: dict[str, tuple[dict[str, str], np.ndarray, np.ndarray]] = {}
        enc = self.encoder
        for group in by_len.values():
            with torch.inference_mode():
                wav = torch.stack([b.obj for b in group])
                frames, emb = enc.forward_features(enc.features(wav))
                for j, b in enumerate(group):
                    tokens, _ = enc.pool_tokens(frames[j])
                    results[b.row["id"]] = (b.row, emb[j].float().cpu().numpy(), tokens.float().cpu().numpy())
        ordered = [results[b.row["id"]] for b in batch if b.row["id"] in results]
        return ordered, skipped, []


# ---------------------------------------------------------------------------
# one part
# ---------------------------------------------------------------------------


def _dims(modality: str) -> tuple[tuple[int, int], Optional[tuple[int, int]]]:
    from faa_core.encoders import FACE_DIM, FACE_GRID, FACE_TOKEN_DIM, VOICE_DIM, VOICE_TOKEN_DIM

    if modality == "face":
        return (FACE_DIM, FACE_TOKEN_DIM), tuple(FACE_GRID)  # type: ignore[return-value]
    return (VOICE_DIM, VOICE_TOKEN_DIM), None


def write_part(part: Part, rows: list[dict[str, str]], root: Path, work: Any, out: Path, opts: RunOptions,
               pool: ThreadPoolExecutor, rank: int, tick: Callable[[int], None]) -> tuple[int, int]:
    """Encode one part's rows into its own small feature store; returns (written, skipped)."""
    from training.features import FeatureStoreWriter

    folder = part.folder(out)
    if folder.exists():  # an unfinished earlier attempt: start the part again from scratch
        shutil.rmtree(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    dims, grid = _dims(part.modality)
    t0 = time.perf_counter()
    writer = FeatureStoreWriter(folder, {part.modality: dims}, shard_size=max(1, len(rows)),
                                token_grid={part.modality: grid} if grid else None)
    skipped: list[dict[str, str]] = []
    centred: list[str] = []
    written = 0
    batches = [rows[i:i + opts.batch_size] for i in range(0, len(rows), opts.batch_size)]
    try:
        for loaded in _prefetch(pool, work.load(root), batches):
            done, bad, centre = work.run(loaded)
            for item_id, reason in bad:
                log.warning("skipped %s %s: %s", part.modality, item_id, reason)
                skipped.append({"id": item_id, "reason": reason})
            centred.extend(centre)
            for row, g, t in done:
                try:
                    writer.add(part.modality, row["id"], row["video"], row["identity"], row["split"], g, t)
                    written += 1
                except ValueError as exc:  # NaN/inf or out of fp16 range: the item's problem
                    log.warning("skipped %s %s: %s", part.modality, row["id"], exc)
                    skipped.append({"id": row["id"], "reason": str(exc)})
            tick(len(loaded))
    except BaseException:
        writer.abort()
        raise
    writer.source = {
        "part": part.index, "rows": [part.start, part.stop], "rank": rank,
        "written": written, "skipped": skipped, "center_crop": centred,
        "seconds": round(time.perf_counter() - t0, 2),
    }
    writer.close()  # its store.json marks the part as finished
    return written, len(skipped)


# ---------------------------------------------------------------------------
# finalising
# ---------------------------------------------------------------------------


def _link(src: Path, dst: Path) -> None:
    """``dst`` becomes the same file as ``src`` (hard link; a move where links are not supported)."""
    if not src.exists():
        if dst.exists():  # moved there by an earlier finalisation
            return
        raise ExtractError(f"{src} is missing (and {dst} too); rerun the extraction with --overwrite")
    if dst.exists() or dst.is_symlink():
        if dst.exists() and os.path.samefile(src, dst):
            return
        dst.unlink()
    try:
        os.link(src, dst)
    except OSError:
        os.replace(src, dst)


def finalise(out: Path, plan: dict[str, Any], manifest: Manifest, settings_by_mod: dict[str, Any]) -> dict[str, Any]:
    """Gather every part into the store layout, then write store.json and the report."""
    from training.features import FORMAT, ITEM_COLUMNS, VERSION, FeatureStore

    meta_mods: dict[str, Any] = {}
    report: dict[str, Any] = {"store": str(out.resolve()), "manifest": plan["manifest"], "modalities": {}}
    for m, entry in plan["modalities"].items():
        mdir = out / m
        mdir.mkdir(exist_ok=True)
        rows: list[tuple[str, str, str, str]] = []
        shards: list[dict[str, Any]] = []
        skipped: list[dict[str, str]] = []
        centred: list[str] = []
        dims, grid = _dims(m)
        for i in range(int(entry["parts"])):
            pdir = out / "parts" / m / f"part-{i:05d}"
            part = FeatureStore(pdir)
            src = part.source
            skipped += src.get("skipped", [])
            centred += src.get("center_crop", [])
            feats = part[m]
            rows += list(zip(feats.ids.tolist(), feats.videos.tolist(), feats.identities.tolist(), feats.splits.tolist()))
            for k, sh in enumerate(part.meta["modalities"][m]["shards"]):
                name = f"shard-{i:05d}" if k == 0 else f"shard-{i:05d}-{k}"
                for kind in ("global", "tokens", "offsets"):
                    p = pdir / m / f"{sh['name']}.{kind}.npy"
                    if kind != "global" and not (p.exists() or (mdir / f"{name}.{kind}.npy").exists()):
                        continue
                    _link(p, mdir / f"{name}.{kind}.npy")
                shards.append({"name": name, "count": int(sh["count"])})
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(ITEM_COLUMNS)
        w.writerows(rows)
        atomic_write_text(mdir / "items.csv", buf.getvalue())
        meta_mods[m] = {"global_dim": dims[0], "token_dim": dims[1], "count": len(rows), "shards": shards}
        if grid:
            meta_mods[m]["token_grid"] = list(grid)
        report["modalities"][m] = {
            "manifest_items": int(entry["items"]), "written": len(rows), "skipped_count": len(skipped),
            "center_crop_count": len(centred), "parts": int(entry["parts"]),
            "bytes": sum((mdir / f"{s['name']}.{k}.npy").stat().st_size for s in shards
                         for k in ("global", "tokens", "offsets") if (mdir / f"{s['name']}.{k}.npy").exists()),
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
    store = {"format": FORMAT, "version": VERSION, "modalities": meta_mods, "source": source}
    atomic_write_json(out / "store.json", store)
    return report


def report_text(report: dict[str, Any], limit: int = 200) -> str:
    lines = [f"feature store {report['store']} from manifest {report['manifest']}"]
    for m, r in report["modalities"].items():
        crops = f", {r['center_crop_count']} centre crops (no face detected)" if m == "face" else ""
        lines.append(f"{m}: {r['written']} of {r['manifest_items']} items written ({_gib(r['bytes'])}), "
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


# ---------------------------------------------------------------------------
# the whole run
# ---------------------------------------------------------------------------


def _device(choice: str, local_rank: int) -> str:
    """The rank's device (faa_core's rule: cuda:LOCAL_RANK), a refusal as ExtractError."""
    from faa_core.device import DeviceError, pick_device

    try:
        return str(pick_device(choice, local_rank))
    except DeviceError as exc:
        raise ExtractError(str(exc)) from None


def _encoder_description(settings: Settings, weights: Any, modalities: Sequence[str]) -> dict[str, Any]:
    from faa_core.encoders import FACE_GRID, RANDOM_WARNING

    desc: dict[str, Any] = {
        "weights": {"mode": weights.mode, "description": weights.describe()},
        "random_weights": bool(weights.is_random),
        "encoders": {},
    }
    if weights.is_random:
        desc["warning"] = RANDOM_WARNING
    if "face" in modalities:
        desc["encoders"]["face"] = {
            "name": "facenet-pytorch InceptionResnetV1 (MTCNN detection, 160x160 crops)", "token_layer": "repeat_2",
            "token_grid": list(FACE_GRID), "face_crop": settings.face_crop, "center_fraction": settings.center_fraction,
        }
    if "voice" in modalities:
        desc["encoders"]["voice"] = {
            "name": "SpeechBrain ECAPA-TDNN (Fbank 80, sentence mean normalisation, 16 kHz)",
            "token_layer": "blocks[3] (last SE-Res2 block)", "token_rate_per_s": settings.voice_token_rate,
        }
    return desc


def run_extraction(
    manifest_dir: str | Path,
    out: str | Path,
    modalities: Sequence[str] = MODALITIES,
    settings: Optional[Settings] = None,
    options: Optional[RunOptions] = None,
    overwrite: bool = False,
    say: Callable[[str], None] = lambda s: print(s, file=sys.stderr, flush=True),
    encoders: Optional[dict[str, Any]] = None,
) -> Outcome:
    """Extract (this rank's share of) the manifest's features into ``out``; rank 0 finalises.

    ``encoders`` (modality -> FaceEncoder / VoiceEncoder already built with the
    weights named in ``settings``) lets tests and benchmarks reuse models instead
    of building them again. Raises :class:`ExtractError` for user mistakes; bad
    media never raise.
    """
    settings = settings or Settings()
    opts = options or RunOptions()
    env_rank, env_world, env_local = rank_from_env()
    rank = env_rank if opts.rank is None else opts.rank
    world = env_world if opts.world_size is None else opts.world_size
    local = (env_local if opts.rank is None else rank) if opts.local_rank is None else opts.local_rank
    if world < 1 or not 0 <= rank < world:
        raise ExtractError(f"need 0 <= rank < world_size, got {rank} and {world}")
    device = _device(opts.device, local)
    modalities = [m for m in MODALITIES if m in set(modalities)]
    if not modalities:
        raise ExtractError(f"--modalities must name at least one of {', '.join(MODALITIES)}")
    if settings.shard_size < 1:
        raise ExtractError(f"--shard-size must be >= 1, got {settings.shard_size}")
    if opts.batch_size < 1:
        raise ExtractError(f"--batch-size must be >= 1, got {opts.batch_size}")
    if settings.face_crop not in FACE_CROPS:
        raise ExtractError(f"--face-crop must be one of {', '.join(FACE_CROPS)}, got {settings.face_crop!r}")
    if settings.voice_token_rate <= 0 or settings.voice_token_rate > 100:
        raise ExtractError(f"--voice-token-rate must be in (0, 100], got {settings.voice_token_rate}")
    try:
        manifest = read_manifest(manifest_dir, modalities)
    except ManifestError as exc:
        raise ExtractError(str(exc)) from None
    for m in modalities:
        if not manifest.media_root(m).is_dir():
            raise ExtractError(f"the manifest's {m} root {manifest.media_root(m)} is not a folder on this machine")
    out = Path(out)
    _prepare_out(out, overwrite, world)
    plan = _merge_plan(out, manifest, modalities, settings)
    counts = {m: len(manifest.rows[m]) for m in modalities}
    parts = parts_of(counts, settings.shard_size, modalities)
    mine = [p for i, p in enumerate(parts) if i % world == rank]
    done_before = sum(p.done(out) for p in parts)
    outcome = Outcome(rank, world, len(parts), done_before)

    if (out / "store.json").is_file() and done_before == len(parts):
        from training.features import FeatureStore

        if set(plan["modalities"]) <= set(FeatureStore(out).modalities):
            outcome.complete = True
            outcome.message = f"{out} is already a complete feature store of this manifest; nothing to do"
            say(outcome.message)
            return outcome

    # the disk size, before any work
    est = {m: estimate_bytes(manifest, m, settings.voice_token_rate) for m in modalities}
    todo = {m: sum(p.stop - p.start for p in parts if p.modality == m and not p.done(out)) for m in modalities}
    free = shutil.disk_usage(out).free
    say("estimated store size: " + ", ".join(
        f"{m} {counts[m]} items x {'(512 + 64x896)' if m == 'face' else '(192 + ~T x 1024)'} x 2 bytes = {_gib(est[m])}"
        for m in modalities) + f"; total {_gib(sum(est.values()))}")
    remaining = sum(est[m] * todo[m] / max(1, counts[m]) for m in modalities)
    say(f"still to write: {sum(todo.values())} items, about {_gib(remaining)}; free at {out}: {_gib(free)}")
    if remaining > free:
        say(f"WARNING: the store needs about {_gib(remaining)} but only {_gib(free)} is free at {out}")

    pending = [p for p in mine if not p.done(out)]
    say(f"rank {rank}/{world}: {len(mine)} of {len(parts)} parts are this rank's, {len(mine) - len(pending)} already done")
    if pending:
        _run_parts(pending, manifest, out, settings, opts, rank, device, outcome, say, encoders or {})
    if outcome.stopped_early:
        return outcome

    if rank != 0:
        outcome.message = f"rank {rank}: all {len(mine)} parts of this rank are written; rank 0 finalises"
        say(outcome.message)
        return outcome

    # rank 0: wait for the other ranks' parts, then finalise
    all_parts = parts_of({m: int(e["items"]) for m, e in plan["modalities"].items()},
                         settings.shard_size, list(plan["modalities"]))
    t_wait = time.monotonic()
    last_note = 0.0
    while True:
        missing = [p for p in all_parts if not p.done(out)]
        if not missing:
            break
        waited = time.monotonic() - t_wait
        other = [p for p in missing if p.modality not in modalities]
        if other:
            outcome.message = (f"not finalised: {len(other)} parts of {sorted({p.modality for p in other})} (planned in "
                               f"{out / 'extract.json'}) are unfinished; run with --modalities {' '.join(plan['modalities'])}")
            say(outcome.message)
            return outcome
        if opts.wait_timeout is not None and waited >= opts.wait_timeout:
            outcome.message = (f"not finalised: {len(missing)} parts of other ranks are unfinished after {waited:.0f} s "
                               f"(e.g. {missing[0].modality}/{missing[0].name}); rerun (any number of ranks) to finish")
            say(outcome.message)
            return outcome
        if waited - last_note >= 60 or last_note == 0.0:
            say(f"rank 0: waiting for {len(missing)} parts of other ranks")
            last_note = max(waited, 1e-9)
        time.sleep(opts.poll_seconds)

    weights = _describe_weights(settings.weights)
    report = finalise(out, plan, manifest, _encoder_description(settings, weights, list(plan["modalities"])))
    outcome.finalised = outcome.complete = True
    say(report_text(report).rstrip())
    say(f"feature store complete: {out}")
    return outcome


class _WeightsNote:
    """What finalisation records about weights it did not need to load (rank 0 may have had no parts)."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.is_random = mode == "random"

    def describe(self) -> str:
        if self.mode == "random":
            return "RANDOM (untrained InceptionResnetV1 and ECAPA-TDNN)"
        return "published weights (pretrained)" if self.mode == "pretrained" else f"weights directory {self.mode}"


def _describe_weights(choice: str) -> Any:
    return _WeightsNote(choice if choice in ("random", "pretrained") else str(Path(choice).resolve()))


def _run_parts(pending: list[Part], manifest: Manifest, out: Path, settings: Settings, opts: RunOptions,
               rank: int, device: str, outcome: Outcome, say: Callable[[str], None], given: dict[str, Any]) -> None:
    import torch
    from tqdm import tqdm

    from faa_core.encoders import FaceEncoder, VoiceEncoder, resolve_weights
    from faa_core.errors import WeightsUnavailableError

    needed = {p.modality for p in pending}
    weights = None
    if needed - set(given):
        try:
            weights = resolve_weights(settings.weights)
        except WeightsUnavailableError as exc:
            raise ExtractError(str(exc)) from None
    works: dict[str, Any] = {}
    if "face" in needed:
        enc = given.get("face") or FaceEncoder(weights.face, device=device)
        works["face"] = FaceWork(enc, settings.face_crop, settings.center_fraction)
    if "voice" in needed:
        enc = given.get("voice")
        if enc is not None and enc.token_rate != settings.voice_token_rate:
            raise ExtractError(f"the given voice encoder makes {enc.token_rate} tokens/s, the settings say {settings.voice_token_rate}")
        enc = enc or VoiceEncoder(weights.voice, device=device, token_rate=settings.voice_token_rate)
        works["voice"] = VoiceWork(enc, settings.max_audio_seconds)
    device = ", ".join(sorted({str(w.encoder.device) for w in works.values()}))
    say(f"rank {rank}: {len(pending)} parts to write on {device} "
        f"({weights.describe() if weights else 'encoders given by the caller'})")
    total = sum(p.stop - p.start for p in pending)
    bar = tqdm(total=total, desc=f"extract (rank {rank})" if outcome.world_size > 1 else "extract", unit="item",
               disable=not opts.progress, dynamic_ncols=True)
    try:
        with ThreadPoolExecutor(max_workers=max(1, opts.workers)) as pool:
            for n, part in enumerate(pending):
                if opts.stop_after_parts is not None and n >= opts.stop_after_parts:
                    outcome.stopped_early = True
                    outcome.message = (f"stopped after {n} parts as asked (--stop-after-parts); "
                                       f"{len(pending) - n} parts of rank {rank} remain: rerun to continue")
                    say(outcome.message)
                    return
                rows = manifest.rows[part.modality][part.start:part.stop]
                written, skipped = write_part(part, rows, manifest.media_root(part.modality), works[part.modality],
                                              out, opts, pool, rank, bar.update)
                outcome.parts_written.append(f"{part.modality}/{part.name}")
                outcome.items_written += written
                outcome.items_skipped += skipped
                log.info("%s/%s written: %d items, %d skipped", part.modality, part.name, written, skipped)
    finally:
        bar.close()
        if device.startswith("cuda"):
            torch.cuda.empty_cache()


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m training.extract",
        description="run the frozen face and voice encoders over a manifest into a feature store "
                    "(resumable; sharded across torchrun ranks)",
    )
    p.add_argument("--manifest", required=True, help="manifest folder made by python -m training.prepare")
    p.add_argument("--out", required=True, help="feature store folder (resumes when it holds an unfinished extraction)")
    p.add_argument("--weights", default="pretrained", help="pretrained (default), random (tests only) or a folder with both files")
    p.add_argument("--batch-size", type=int, default=32, help="images per encoder batch, recordings per decode batch (default 32)")
    p.add_argument("--device", default="auto", help=DEVICE_CHOICES)
    p.add_argument("--modalities", nargs="+", default=list(MODALITIES), choices=MODALITIES)
    p.add_argument("--shard-size", type=int, default=1024, help="manifest rows per part/shard (default 1024)")
    p.add_argument("--workers", type=int, default=4, help="threads decoding files (default 4)")
    p.add_argument("--face-crop", default="detect-or-center", choices=FACE_CROPS,
                   help="MTCNN with a centre-crop fallback (default), MTCNN only (skip faceless images), or centre crops only")
    p.add_argument("--center-fraction", type=float, default=0.6, help="side of the centre crop / shorter image side (default 0.6)")
    p.add_argument("--voice-token-rate", type=float, default=4.0, help="voice tokens per second (default 4)")
    p.add_argument("--max-audio-seconds", type=float, default=300.0, help="longer recordings are skipped (default 300)")
    p.add_argument("--stop-after-parts", type=int, default=None, help="stop after this many parts (time-boxed jobs; rerun to go on)")
    p.add_argument("--wait-timeout", type=float, default=None, help="rank 0: seconds to wait for other ranks' parts (default: no limit)")
    p.add_argument("--overwrite", action="store_true", help="delete an earlier extraction in --out and start over")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    if not Path(args.manifest).is_dir():
        p.error(f"--manifest: folder not found: {args.manifest}")
    if args.weights not in ("pretrained", "random") and not Path(args.weights).is_dir():
        p.error(f"--weights must be pretrained, random or a folder with the weight files; {args.weights} is not a folder")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    settings = Settings(weights=args.weights, face_crop=args.face_crop, center_fraction=args.center_fraction,
                        voice_token_rate=args.voice_token_rate, max_audio_seconds=args.max_audio_seconds,
                        shard_size=args.shard_size)
    opts = RunOptions(batch_size=args.batch_size, device=args.device, workers=args.workers,
                      stop_after_parts=args.stop_after_parts, wait_timeout=args.wait_timeout,
                      progress=not args.no_progress)
    try:
        outcome = run_extraction(args.manifest, args.out, args.modalities, settings, opts, overwrite=args.overwrite)
    except ExtractError as exc:
        print(f"{p.prog}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{p.prog}: interrupted; finished parts are kept, rerun the same command to continue", file=sys.stderr)
        return 130
    print(json.dumps({k: v for k, v in asdict(outcome).items() if k != "parts_written"}
                     | {"parts_written": len(outcome.parts_written)}))
    if outcome.complete or (outcome.rank != 0 and not outcome.stopped_early):
        return 0
    return EXIT_INCOMPLETE


if __name__ == "__main__":
    raise SystemExit(main())
