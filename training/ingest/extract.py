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
``--face-crop detect-or-center``: MTCNN through
:meth:`faa_core.encoders.FaceEncoder.detect_batch`, as at inference, and the
detected face nearest the image centre keeps the crop the encoder cut (so
training sees exactly the crops the demo gives); when MTCNN finds nothing (profile views, blur), the
central square of ``--center-fraction`` (0.6) of the shorter side is used
instead of losing the item, and the item is listed as a centre crop.
``detect`` skips such items instead; ``center`` never runs the detector.

**Voices.** Each recording is embedded alone: padding recordings of different
lengths into one batch would change ECAPA-TDNN's output (its convolutions pad
by reflection and its statistics pooling and the mean normalisation would see
the padding); recordings of identical length in a batch do run together.
Files are decoded in ``--workers`` threads while the encoders run.

**Modules.** :mod:`~training.ingest.extract_plan` (settings, ranks, parts, the
plan, the size estimate), :mod:`~training.ingest.extract_work` (decoding and the
encoders over one part), :mod:`~training.ingest.extract_store` (the report and
the merge into the final store, :func:`training.features.merge_parts`); this
module runs them and is the command line.
"""


from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

from faa_core.device import DEVICE_CHOICES
from training.features import MODALITIES
from training.ingest.extract_plan import (
    EXIT_INCOMPLETE,
    FACE_CROPS,
    ExtractError,
    Outcome,
    Part,
    RunOptions,
    Settings,
    estimate_bytes,
    gib,
    merge_plan,
    parts_of,
    prepare_out,
    rank_from_env,
    voice_token_count,
)
from training.ingest.extract_store import finalise, report_text
from training.ingest.extract_work import FaceWork, VoiceWork, write_part
from training.ingest.manifest import Manifest, ManifestError, read_manifest

__all__ = [
    "ExtractError",
    "Settings",
    "RunOptions",
    "Outcome",
    "estimate_bytes",
    "voice_token_count",
    "run_extraction",
    "main",
]

log = logging.getLogger("training.ingest.extract")


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
    prepare_out(out, overwrite, world)
    plan = merge_plan(out, manifest, modalities, settings)
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
        f"{m} {counts[m]} items x {'(512 + 64x896)' if m == 'face' else '(192 + ~T x 1024)'} x 2 bytes = {gib(est[m])}"
        for m in modalities) + f"; total {gib(sum(est.values()))}")
    remaining = sum(est[m] * todo[m] / max(1, counts[m]) for m in modalities)
    say(f"still to write: {sum(todo.values())} items, about {gib(remaining)}; free at {out}: {gib(free)}")
    if remaining > free:
        say(f"WARNING: the store needs about {gib(remaining)} but only {gib(free)} is free at {out}")

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
