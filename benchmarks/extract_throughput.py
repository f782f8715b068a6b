"""Throughput and disk size of feature extraction (``python -m training.extract``).

Generates face photos (640x480 JPEG, one drawn face each) and recordings
(espeak-ng speech, or a voiced signal without it, 5 to 8 s, 16 kHz), writes a
manifest for them and times ``training.ingest.extract.run_extraction`` on each
modality separately: decoding in threads, MTCNN + crop + InceptionResnetV1
for faces, resampling + ECAPA-TDNN for voices, fp16 shards written to disk.
Encoder construction and a warm-up run are not timed. CPU always; CUDA too when
present. Prints a table, then one JSON line.

    python benchmarks/extract_throughput.py [--faces 64] [--voices 16] [--batch-size 32] [--threads 0]

Weights default to ``random``: the architectures (and so the cost) are the
published ones, and nothing needs downloading.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]

from faa_core.encoders import FaceEncoder, VoiceEncoder, resolve_weights  # noqa: E402
from pipeline_latency import drawn_face_photo, make_speech  # noqa: E402
from training.ingest.extract import RunOptions, Settings, estimate_bytes, run_extraction  # noqa: E402
from faa_core.fileio import atomic_write_json  # noqa: E402
from training.ingest.manifest import MANIFEST_FORMAT, MANIFEST_VERSION, read_manifest, write_rows  # noqa: E402

# For the projection line: VoxCeleb1 has 153,516 utterances of 8.2 s on average.
VOX1_UTTERANCES, VOX1_MEAN_S = 153_516, 8.2


def make_media(work: Path, n_faces: int, n_voices: int) -> tuple[Path, str]:
    """Photos, recordings and a manifest describing them; returns (manifest folder, speech kind)."""
    faces, voices = work / "faces", work / "voices"
    face_rows, voice_rows = [], []
    for i in range(n_faces):
        ident = f"id{10001 + i % 8}"
        rel = f"Person_{i % 8}/{i:08d}.jpg"
        (faces / rel).parent.mkdir(parents=True, exist_ok=True)
        drawn_face_photo(i).save(faces / rel, quality=92)
        face_rows.append({"id": rel, "video": rel, "identity": ident, "split": "train", "name": f"Person_{i % 8}",
                          "gender": "", "nationality": "", "width": "640", "height": "480"})
    kind = ""
    for i in range(n_voices):
        seconds = 5.0 + 3.0 * i / max(1, n_voices - 1)
        ident = f"id{10001 + i % 8}"
        rel = f"{ident}/video{i:03d}/00001.wav"
        (voices / rel).parent.mkdir(parents=True, exist_ok=True)
        kind = make_speech(voices / rel, seconds)
        voice_rows.append({"id": rel, "video": f"{ident}/video{i:03d}", "identity": ident, "split": "train",
                           "name": f"Person_{i % 8}", "gender": "", "nationality": "",
                           "duration_s": f"{seconds:.3f}", "sample_rate": "16000"})
    man = work / "manifest"
    man.mkdir()
    write_rows(man / "face.csv", "face", face_rows)
    write_rows(man / "voice.csv", "voice", voice_rows)
    atomic_write_json(man / "manifest.json", {
        "format": MANIFEST_FORMAT, "version": MANIFEST_VERSION, "protocol": None, "face_source": "generated",
        "face_video": "photo", "roots": {"face": str(faces), "voice": str(voices)},
    })
    return man, kind


def time_modality(manifest: Path, store: Path, modality: str, encoders: dict, batch: int, workers: int,
                  crop: str) -> tuple[float, int, int]:
    """Seconds, items written and bytes on disk for one modality."""
    if store.exists():
        shutil.rmtree(store)
    settings = Settings(weights="random", shard_size=1 << 20, face_crop=crop)
    opts = RunOptions(batch_size=batch, workers=workers, progress=False)
    if any(str(e.device).startswith("cuda") for e in encoders.values()):
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    out = run_extraction(manifest, store, [modality], settings, opts, say=lambda s: None, encoders=encoders)
    seconds = time.perf_counter() - t0
    size = sum(p.stat().st_size for p in (store / modality).glob("shard-*.npy"))
    return seconds, out.items_written, size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--faces", type=int, default=64)
    parser.add_argument("--voices", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--workers", type=int, default=4, help="decoding threads")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    parser.add_argument("--face-crop", default="detect-or-center", choices=("detect-or-center", "detect", "center"))
    parser.add_argument("--devices", nargs="*", default=None, help="default: cpu, and cuda when available")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    devices = args.devices or (["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"])

    work = Path(tempfile.mkdtemp(prefix="faa-extract-bench-"))
    try:
        manifest, kind = make_media(work, args.faces, args.voices)
        warm, _ = make_media(work / "warm", 4, 2)
        m = read_manifest(manifest)
        est = {mod: estimate_bytes(m, mod) for mod in ("face", "voice")}
        weights = resolve_weights("random")
        results: dict[str, dict] = {}
        rows = []
        for dev in devices:
            t0 = time.perf_counter()
            enc = {"face": FaceEncoder(weights.face, device=dev), "voice": VoiceEncoder(weights.voice, device=dev)}
            build_s = time.perf_counter() - t0
            for mod in ("face", "voice"):  # warm-up: kernels, allocator, thread pools
                time_modality(warm, work / "warm_store", mod, enc, args.batch_size, args.workers, args.face_crop)
            res = {"build_s": round(build_s, 2)}
            for mod, n in (("face", args.faces), ("voice", args.voices)):
                s, written, size = time_modality(manifest, work / f"store_{dev}", mod, enc, args.batch_size,
                                                 args.workers, args.face_crop)
                res[f"{mod}_items_per_s"] = round(written / s, 2)
                res[f"{mod}_bytes_per_item"] = round(size / max(1, written))
                rows.append((dev, mod, n, written, s, written / s, size / max(1, written), est[mod] / max(1, n)))
            results[dev] = res
    finally:
        shutil.rmtree(work, ignore_errors=True)

    print(f"media: {args.faces} photos 640x480 (drawn faces), {args.voices} recordings 5-8 s ({kind}); "
          f"batch {args.batch_size}, {args.workers} decoding threads, torch threads {torch.get_num_threads()}, "
          f"face crop {args.face_crop}")
    print(f"{'device':>6} {'modality':>8} {'items':>6} {'written':>7} {'seconds':>8} {'items/s':>8} "
          f"{'bytes/item':>11} {'estimate':>9}")
    for dev, mod, n, written, s, rate, per, est_per in rows:
        print(f"{dev:>6} {mod:>8} {n:>6} {written:>7} {s:>8.2f} {rate:>8.2f} {per:>11.0f} {est_per:>9.0f}")
    cpu = results["cpu"] if "cpu" in results else next(iter(results.values()))
    vox1_bytes = VOX1_UTTERANCES * (192 + (VOX1_MEAN_S * 4 + 1) * 1024) * 2
    print(f"projection: VoxCeleb1 voices ({VOX1_UTTERANCES:,} x {VOX1_MEAN_S} s) = {vox1_bytes / 2**30:.1f} GiB; "
          f"100k face items = {100_000 * (512 + 64 * 896) * 2 / 2**30:.1f} GiB")
    for dev, res in results.items():
        print(f"{dev}: VoxCeleb1 voices in {VOX1_UTTERANCES / res['voice_items_per_s'] / 3600:.1f} h, "
              f"100k faces in {100_000 / res['face_items_per_s'] / 3600:.1f} h (one process)")
    summary = {
        "face_items_per_s": cpu["face_items_per_s"], "voice_items_per_s": cpu["voice_items_per_s"],
        "device": "cpu" if "cpu" in results else next(iter(results)),
        "face_bytes_per_item": cpu["face_bytes_per_item"], "voice_bytes_per_item": cpu["voice_bytes_per_item"],
        "per_device": results, "faces": args.faces, "voices": args.voices, "batch_size": args.batch_size,
        "torch_threads": torch.get_num_threads(),
    }
    if "cuda" in results:
        summary["cuda_face_items_per_s"] = results["cuda"]["face_items_per_s"]
        summary["cuda_voice_items_per_s"] = results["cuda"]["voice_items_per_s"]
        summary["cuda_device"] = torch.cuda.get_device_name(0)
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
