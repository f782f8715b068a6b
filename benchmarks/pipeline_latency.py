"""Latency of the inference pipeline against the bare encoder forwards, measured side by side.

For a 5 s recording and 1, 4 and 8 faces (one face per 640x480 photo) it
times the whole pipeline call (decoding, detection, alignment, both encoders,
fusion) and, in the same loop, MTCNN.detect + InceptionResnetV1 + ECAPA-TDNN
called directly on the same inputs. Prints a table, then one JSON line.

    python benchmarks/pipeline_latency.py [--repeats 20] [--checkpoint DIR] [--weights random]

Encoder weights default to ``random``: the architectures (and so the cost) are
the real ones, and nothing needs downloading.

How close to the hardware: the FLOPs of one 4-face request are counted
(``torch.utils.flop_counter``: convolutions, matmuls, attention) and the
machine's fp32 matmul rate is measured in the same loop as the pipeline
(a 1024^3 matmul between repeats, so both see the same load). ``floor_s`` =
FLOPs / rate is what the request would take if all its work ran at matmul
speed; ``floor_ratio`` = p50 / floor_s. Cold calls clear the face cache first
(every photo decoded, detected and encoded, as on first sight);
``cached_speedup`` = cold p50 / p50 with the photos already in the cache (a
new voice on the same photos).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from PIL import Image, ImageDraw, ImageOps
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import flop_registry

ROOT = Path(__file__).resolve().parents[1]

from faa_core.allocator import keep_freed_memory  # noqa: E402
from faa_core.checkpoint import load_checkpoint  # noqa: E402
from faa_core.device import PRECISION_CHOICES, DeviceError, pick_precision  # noqa: E402
from faa_core.encoders import FaceEncoder, VoiceEncoder, resolve_weights  # noqa: E402
from faa_core.encoders.face import detector_input  # noqa: E402
from faa_core.model import FAAConfig, FAAModel  # noqa: E402
from faa_core.pipeline import MATCH_MIN_FACE_SIZE, MatchPipeline  # noqa: E402

SHARED_PHOTOS = ROOT.parent / "shared" / "data" / "media" / "photos"
FACE_COUNTS = (1, 4, 8)


def drawn_face_photo(seed: int) -> Image.Image:
    """A 640x480 photo with one drawn face (MTCNN detects this drawing)."""
    rng = np.random.default_rng(seed)
    s = 300 / 400
    face = Image.new("RGB", (300, 300), tuple(int(v) for v in rng.integers(60, 180, 3)))
    d = ImageDraw.Draw(face)
    skin = tuple(int(v) for v in (np.array([224, 180, 150]) * rng.uniform(0.6, 1.05)).clip(0, 255))
    d.ellipse([100 * s, 60 * s, 300 * s, 330 * s], fill=skin)
    d.ellipse([80 * s, 40 * s, 320 * s, 150 * s], fill=(60, 40, 30))
    d.ellipse([100 * s, 90 * s, 300 * s, 330 * s], fill=skin)
    for cx in (160, 240):
        d.ellipse([(cx - 22) * s, 165 * s, (cx + 22) * s, 190 * s], fill=(255, 255, 255))
        d.ellipse([(cx - 9) * s, 168 * s, (cx + 9) * s, 187 * s], fill=(40, 30, 20))
        d.line([(cx - 25) * s, 150 * s, (cx + 25) * s, 145 * s], fill=(50, 35, 25), width=5)
    d.polygon([(200 * s, 190 * s), (185 * s, 245 * s), (215 * s, 245 * s)], fill=(200, 150, 120))
    d.ellipse([165 * s, 265 * s, 235 * s, 290 * s], fill=(170, 80, 80))
    photo = Image.new("RGB", (640, 480), (90, 120, 160))
    photo.paste(face, (int(rng.integers(0, 340)), int(rng.integers(0, 180))))
    return photo


def make_photos(count: int, folder: Path) -> tuple[list[Path], str]:
    """``count`` 640x480 JPEGs: real press photos when ../shared is there, drawn faces otherwise."""
    real = sorted(SHARED_PHOTOS.glob("*.jpg")) if SHARED_PHOTOS.is_dir() else []
    paths = []
    for i in range(count):
        if real:
            img = ImageOps.fit(Image.open(real[i % len(real)]).convert("RGB"), (640, 480), centering=(0.5, 0.25))
            if (i // len(real)) % 2:
                img = ImageOps.mirror(img)
        else:
            img = drawn_face_photo(i)
        path = folder / f"face{i}.jpg"
        img.save(path, quality=92)
        paths.append(path)
    return paths, "real press photos (../shared)" if real else "drawn faces"


def make_speech(path: Path, seconds: float = 5.0) -> str:
    """Exactly ``seconds`` of 16 kHz speech (espeak-ng), or a voiced synthetic signal."""
    rate = 16000
    try:
        tmp = path.with_suffix(".espeak.wav")
        subprocess.run(
            ["espeak-ng", "-w", str(tmp), "Voices and faces share more than we think; this is a test "
             "recording for the latency benchmark of the voice face matching pipeline."],
            check=True, capture_output=True, timeout=60,
        )
        x, sr = sf.read(tmp, dtype="float32")
        import torchaudio

        x = torchaudio.functional.resample(torch.from_numpy(x), sr, rate).numpy()
        kind = "espeak-ng speech"
    except (OSError, subprocess.SubprocessError):
        t = np.arange(int(seconds * rate)) / rate
        x = (0.3 * np.sin(2 * np.pi * 130 * t) * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t))).astype(np.float32)
        kind = "synthetic voiced signal"
    n = int(seconds * rate)
    x = np.resize(x, n) if len(x) < n else x[:n]
    sf.write(path, x, rate)
    return kind


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def matmul_rate(n: int = 1024, repeats: int = 3, dtype: torch.dtype = torch.float32) -> float:
    """Matmul rate right now (FLOP/s) in ``dtype``: the best of a few n x n x n products."""
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - t)
    return 2.0 * n**3 / best


class FlopsByDtype(TorchDispatchMode):
    """Counts FLOPs as ``torch.utils.flop_counter`` does (same formulas), split by the dtype they ran in."""

    def __init__(self) -> None:
        super().__init__()
        self.flops: dict[torch.dtype, float] = {}

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        formula = flop_registry.get(func._overloadpacket)
        if formula is None:  # e.g. conv1d under inference mode: count the ops it decomposes into
            with self:
                decomposed = func.decompose(*args, **kwargs)
            if decomposed is not NotImplemented:
                return decomposed
        out = func(*args, **kwargs)
        if formula is not None:
            dtype = next(a.dtype for a in args if isinstance(a, torch.Tensor))
            self.flops[dtype] = self.flops.get(dtype, 0.0) + float(formula(*args, **kwargs, out_val=out))
        return out


def request_flops(pipe: MatchPipeline, speech: Path, images: list[Path]) -> dict[str, dict[torch.dtype, float]]:
    """FLOPs by dtype of one cold request (face cache cleared) and of the same request with the photos cached."""
    out = {}
    overlap, pipe.overlap_encoders = pipe.overlap_encoders, False  # the counter sees only its own thread
    pipe.face_cache.clear()
    try:
        for name in ("cold", "cached"):
            with FlopsByDtype() as counter:
                pipe(speech, images)
            out[name] = counter.flops
    finally:
        pipe.overlap_encoders = overlap
        pipe.face_cache.clear()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--checkpoint", default=None, help="checkpoint folder (default: a fresh FAAConfig() model)")
    parser.add_argument("--weights", default="random")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    parser.add_argument("--no-overlap", action="store_true",
                        help="voice encoder after the face work instead of beside it (to measure what overlap buys)")
    parser.add_argument("--no-thread-share", action="store_true",
                        help="with overlap, let the voice and the photos' work each use all torch threads "
                             "(to measure what sharing them buys)")
    parser.add_argument("--precision", default="auto", help=f"encoders' arithmetic, as in the app: {PRECISION_CHOICES}")
    parser.add_argument("--system-malloc", action="store_true",
                        help="leave glibc's malloc as it is, instead of keep_freed_memory() as the app does "
                             "(to measure what that buys)")
    parser.add_argument("--min-face-size", type=int, default=MATCH_MIN_FACE_SIZE,
                        help="MTCNN minimum face size in pixels of the detection copy (default: the pipeline's "
                             f"{MATCH_MIN_FACE_SIZE}, as the app and CLI use; 20 = the encoder's full pyramid)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    kept_freed_memory = False if args.system_malloc else keep_freed_memory()

    weights = resolve_weights(args.weights)
    if args.checkpoint:
        model, card = load_checkpoint(args.checkpoint)
    else:
        torch.manual_seed(0)
        model, card = FAAModel(FAAConfig()).eval(), {}
    try:
        precision = pick_precision(args.precision, "cpu")
    except DeviceError as exc:
        raise SystemExit(f"error: {exc}") from None
    face_enc = FaceEncoder(weights.face, min_face_size=args.min_face_size, precision=precision)
    voice_enc = VoiceEncoder(weights.voice, precision=precision)
    pipe = MatchPipeline(model, card, face_enc, voice_enc, weights, args.checkpoint or "FAAConfig()",
                         overlap_encoders=not args.no_overlap, share_threads=not args.no_thread_share)
    pipe.warmup()

    work = Path(tempfile.mkdtemp(prefix="faa-bench-"))
    photos, photo_kind = make_photos(max(FACE_COUNTS), work)
    speech = work / "speech.wav"
    speech_kind = make_speech(speech)

    # Inputs of the bare forwards: the same decoded photos, crops and features the pipeline uses.
    pil = [Image.open(p).convert("RGB") for p in photos]
    wav16k = torch.from_numpy(sf.read(speech, dtype="float32")[0])
    fbank = voice_enc.features(wav16k[None])
    crops_all = []
    for img in pil:
        faces = face_enc.detect(img)
        if len(faces) != 1:
            raise SystemExit(f"benchmark photo should hold exactly one detectable face, found {len(faces)}")
        crops_all.append(faces[0].crop)
    crops_t = (torch.from_numpy(np.stack(crops_all)).permute(0, 3, 1, 2).float() - 127.5) / 128.0

    def bare(n: int) -> dict[str, float]:
        out = {}
        with torch.inference_mode():
            t = time.perf_counter()
            for img in pil[:n]:
                face_enc.detector.detect(detector_input([img]))
            out["mtcnn"] = time.perf_counter() - t
            t = time.perf_counter()
            face_enc.forward_features(crops_t[:n])  # the network in the encoder's precision
            out["inception"] = time.perf_counter() - t
            t = time.perf_counter()
            voice_enc.forward_features(fbank)
            out["ecapa"] = time.perf_counter() - t
        out["total"] = sum(out.values())
        return out

    rows, report = [], {}
    rates: list[float] = []
    rates_bf16: list[float] = []
    cached_t: list[float] = []
    for n in FACE_COUNTS:
        images = photos[:n]
        for _ in range(args.warmup):
            pipe.face_cache.clear()
            pipe(speech, images)
            bare(n)
        pipe_t, parts, bare_t = [], {k: [] for k in ("detection", "face_encoder", "voice_encoder", "fusion")}, []
        bare_parts = {k: [] for k in ("mtcnn", "inception", "ecapa")}
        for _ in range(args.repeats):  # interleaved, so that all see the same machine load
            pipe.face_cache.clear()  # cold: every photo decoded, detected and encoded
            t = time.perf_counter()
            result = pipe(speech, images)
            pipe_t.append(time.perf_counter() - t)
            if n == 4:
                t = time.perf_counter()
                again = pipe(speech, images)  # the same photos again: served from the face cache
                cached_t.append(time.perf_counter() - t)
                assert again.face_cache["faces_encoded"] == 0
                rates.append(matmul_rate())
                rates_bf16.append(matmul_rate(dtype=torch.bfloat16))
            assert len(result.faces) == n
            for k in parts:
                parts[k].append(result.timings[k])
            b = bare(n)
            bare_t.append(b["total"])
            for k in bare_parts:
                bare_parts[k].append(b[k])
        report[str(n)] = {
            "p50_s": round(percentile(pipe_t, 50), 4),
            "p95_s": round(percentile(pipe_t, 95), 4),
            "bare_p50_s": round(percentile(bare_t, 50), 4),
            **{f"{k}_p50_s": round(percentile(v, 50), 4) for k, v in parts.items()},
            **{f"bare_{k}_p50_s": round(percentile(v, 50), 4) for k, v in bare_parts.items()},
        }
        rows.append((n, report[str(n)]))

    print(f"pipeline latency, 5 s {speech_kind}, {photo_kind} at 640x480, {args.repeats} repeats, "
          f"{torch.get_num_threads()} torch threads, weights={args.weights}")
    head = ("faces", "p50 s", "p95 s", "detect", "face enc", "voice enc", "fusion", "| bare p50", "mtcnn", "irv1", "ecapa", "ratio")
    print(" ".join(f"{h:>9}" for h in head))
    for n, r in rows:
        vals = (n, r["p50_s"], r["p95_s"], r["detection_p50_s"], r["face_encoder_p50_s"], r["voice_encoder_p50_s"],
                r["fusion_p50_s"], r["bare_p50_s"], r["bare_mtcnn_p50_s"], r["bare_inception_p50_s"],
                r["bare_ecapa_p50_s"], round(r["p50_s"] / r["bare_p50_s"], 3))
        print(" ".join(f"{v:>9}" for v in vals))
    ratio = report["4"]["p50_s"] / report["4"]["bare_p50_s"]
    flops = request_flops(pipe, speech, photos[:4])
    rate, rate_bf16 = percentile(rates, 50), percentile(rates_bf16, 50)
    cold, cached = sum(flops["cold"].values()), sum(flops["cached"].values())
    cold_bf16 = flops["cold"].get(torch.bfloat16, 0.0)
    floor_s = cold / rate
    # the same work with each FLOP at the matmul rate of the dtype it ran in
    floor_mixed_s = (cold - cold_bf16) / rate + cold_bf16 / rate_bf16
    cached_p50 = percentile(cached_t, 50)
    print(f"4 faces: {cold / 1e9:.2f} GFLOP per cold request ({cached / 1e9:.2f} with the photos cached; "
          f"{cold_bf16 / 1e9:.2f} of the cold ones in bf16, precision={args.precision}); fp32 matmul rate "
          f"{rate / 1e9:.1f} GFLOP/s, bf16 {rate_bf16 / 1e9:.1f} (medians of {len(rates)}); floor {floor_s:.4f} s "
          f"(all at the fp32 rate), {floor_mixed_s:.4f} s (each FLOP at its dtype's rate); "
          f"p50 / floor = {report['4']['p50_s'] / floor_s:.3f} ({report['4']['p50_s'] / floor_mixed_s:.3f} mixed); "
          f"cached p50 {cached_p50:.4f} s (speedup {report['4']['p50_s'] / cached_p50:.2f}x)")
    summary = {
        "faces": {k: {"p50_s": v["p50_s"], "p95_s": v["p95_s"]} for k, v in report.items()},
        "overhead_ratio": round(ratio, 3),
        "flops_4_faces": cold,
        "flops_4_faces_cached": cached,
        "flops_4_faces_bf16": cold_bf16,
        "precision": str(precision).replace("torch.", ""),
        "matmul_gflops": round(rate / 1e9, 2),
        "matmul_gflops_bf16": round(rate_bf16 / 1e9, 2),
        "floor_s": round(floor_s, 4),
        "floor_ratio": round(report["4"]["p50_s"] / floor_s, 3),
        "floor_mixed_s": round(floor_mixed_s, 4),
        "floor_ratio_mixed": round(report["4"]["p50_s"] / floor_mixed_s, 3),
        "cached_p50_s": round(cached_p50, 4),
        "cached_speedup": round(report["4"]["p50_s"] / cached_p50, 3),
        "overlap_encoders": pipe.overlap_encoders,
        "share_threads": pipe.share_threads,
        "keep_freed_memory": kept_freed_memory,
        "min_face_size": int(face_enc.detector.min_face_size),
        "torch_threads": torch.get_num_threads(),
        "detail": report,
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    main()
