"""Command line: ``python -m faa_core match --checkpoint C --voice a.wav --faces x.jpg y.jpg``."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Optional, Sequence

from .errors import FAAError


def build_parser() -> argparse.ArgumentParser:
    from .device import PRECISION_CHOICES

    parser = argparse.ArgumentParser(prog="python -m faa_core", description="FAA voice-face association")
    sub = parser.add_subparsers(dest="command", required=True)
    m = sub.add_parser("match", help="score every face in some photos as the speaker of a recording")
    m.add_argument("--checkpoint", required=True, help="checkpoint folder or Hugging Face Hub repo id")
    m.add_argument("--voice", required=True, help="audio file (wav, flac, ogg, mp3)")
    m.add_argument("--faces", required=True, nargs="+", help="one or more image files")
    m.add_argument(
        "--weights", default="pretrained",
        help="encoder weights: 'pretrained' (download/cache), 'random' (tests only) or a directory",
    )
    m.add_argument("--allow-encoder-mismatch", action="store_true",
                   help="serve a checkpoint trained on features of other encoder weights than --weights (with a warning)")
    m.add_argument("--device", default="cpu", help="cpu (default), auto, cuda or cuda:N")
    m.add_argument("--precision", default="auto", help=f"encoders' arithmetic: {PRECISION_CHOICES}")
    m.add_argument("--strict", action="store_true", help="fail on the first image without a usable face")
    m.add_argument("--json", action="store_true", help="print the result as one JSON object")
    return parser


def _print_table(result, pipeline) -> None:
    for w in pipeline.model_warnings() + result.warnings:
        print(f"WARNING: {w}")
    for r in result.images:
        if r.error:
            print(f"skipped {r.name}: {r.error}")
    print(f"{'rank':>4}  {'probability':>11}  {'cosine':>7}  face")
    for f in result.faces:
        print(f"{f.rank:>4}  {f.probability:>11.3f}  {f.cosine:>7.3f}  {f.image_name} #{f.face_index + 1}")


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    from .device import pick_device
    from .pipeline import MatchPipeline, json_safe

    try:
        device = pick_device(args.device)
        pipeline = MatchPipeline.from_checkpoint(args.checkpoint, weights=args.weights, device=device,
                                                 allow_encoder_mismatch=args.allow_encoder_mismatch,
                                                 precision=args.precision)
        result = pipeline(args.voice, args.faces, strict=args.strict)
    except FAAError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # a bug, not the input: still one line, with what to report
        print(f"error: unexpected {type(exc).__name__} while matching ({exc}); please report it with the "
              "command line (set FAA_TRACEBACK=1 to see the traceback)", file=sys.stderr)
        if os.environ.get("FAA_TRACEBACK"):
            raise
        return 1
    if args.json:
        out = result.to_dict()
        out["checkpoint"] = args.checkpoint
        out["encoder_weights"] = pipeline.weights.describe()
        out["model_warnings"] = pipeline.model_warnings()
        print(json.dumps(json_safe(out), allow_nan=False))
    else:
        _print_table(result, pipeline)
    return 0
