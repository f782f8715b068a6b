"""Extraction workers: decoding in threads, the face and voice encoders over batches, one part's store.

Part of ``python -m training.extract`` (see :mod:`training.ingest.extract`).
Faces go through :meth:`faa_core.encoders.FaceEncoder.detect_batch`, so every
training crop is cut exactly as the app cuts it.
"""

from __future__ import annotations

import logging
import math
import shutil
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Optional

import numpy as np

from training.ingest.extract_plan import FACE_CROPS, ExtractError, Part, RunOptions

log = logging.getLogger("training.ingest.extract")

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
    """Detection (FaceEncoder.detect_batch), the crop policy and InceptionResnetV1 over a batch."""

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

    def choose(self, images: list[Any]) -> list[tuple[Any, Optional[str]]]:
        """Per image: the detected face nearest its centre (ties: the more probable) or None, and the
        detector's error message when it could not search the image (FaceEncoder.detect_batch)."""
        out: list[tuple[Any, Optional[str]]] = []
        for im, found in zip(images, self.encoder.detect_batch(images)):
            if found.error is not None:
                out.append((None, f"face detection failed: {_reason(found.error)}"))
                continue
            if not found.faces:
                out.append((None, None))
                continue
            boxes = np.stack([f.box for f in found.faces])
            probs = np.array([f.probability for f in found.faces])
            centre = np.array([im.width / 2.0, im.height / 2.0])
            dist = np.hypot(*(((boxes[:, :2] + boxes[:, 2:]) / 2.0 - centre).T)) / math.hypot(im.width, im.height)
            out.append((found.faces[int(np.lexsort((-probs, np.round(dist, 3)))[0])], None))
        return out

    def run(self, batch: list[Loaded]) -> tuple[list[tuple[dict[str, str], np.ndarray, np.ndarray]], list[tuple[str, str]], list[str]]:
        """(rows with embedding and tokens, [(id, reason) skipped], [ids cut by the centre fallback])."""
        from faa_core.encoders.face import crop_face

        skipped = [(b.row["id"], b.reason or "") for b in batch if b.obj is None]
        good = [b for b in batch if b.obj is not None]
        if not good:
            return [], skipped, []
        images = [b.obj for b in good]
        chosen: list[tuple[Any, Optional[str]]] = [(None, None)] * len(good)
        if self.crop != "center":
            chosen = self.choose(images)
        crops, rows, centred = [], [], []
        for b, im, (face, error) in zip(good, images, chosen):
            if error is not None:
                skipped.append((b.row["id"], error))
                continue
            if face is not None:
                crops.append(face.crop)  # cut by FaceEncoder exactly as for the app
            elif self.crop == "detect":
                skipped.append((b.row["id"], "no face detected (MTCNN)"))
                continue
            else:
                crops.append(crop_face(im, self.center_box(im), margin=self.encoder.margin))
                if self.crop == "detect-or-center":
                    centred.append(b.row["id"])
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


def dims_of(modality: str) -> tuple[tuple[int, int], Optional[tuple[int, int]]]:
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
    dims, grid = dims_of(part.modality)
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
    from faa_core.encoders.provenance import weights_provenance

    writer.source = {
        "part": part.index, "rows": [part.start, part.stop], "rank": rank,
        "encoder": weights_provenance(getattr(work.encoder, "weights", None)),
        "written": written, "skipped": skipped, "center_crop": centred,
        "seconds": round(time.perf_counter() - t0, 2),
    }
    writer.close()  # its store.json marks the part as finished
    return written, len(skipped)
