"""The whole Wen 2021 protocol at its real list sizes, timed, with the fusion scorer's FLOP efficiency.

On a ``real-dims`` synthetic world bound to the real Wen 2021 lists (stored
as a memory-mapped feature store, ~9 GB, built once into ``--world``) it runs
``training.eval.evaluate`` end to end with fusion scoring: every verification and
1:2 matching list, and retrieval 21,850 x 20,076 in both directions with the
top-k re-ranked by the match head. Then, in the same process:

* fusion throughput on a sample of random test pairs (pairs/s), with the
  FLOPs those pairs really executed counted by ``torch.utils.flop_counter``;
* the machine's fp32 matmul rate (a square matmul, same threads);
* ``fusion_flop_fraction`` = achieved fusion FLOP/s over that matmul rate.

    python benchmarks/eval_scale.py [--checkpoint DIR] [--world DIR] [--threads N] [--sample 20000]

Without ``--checkpoint`` the model is ``training/configs/faa.yaml``'s, randomly
initialised (cost does not depend on the weights). Prints a table, then one
JSON line.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]

from faa_core.checkpoint import default_encoders, load_checkpoint, save_checkpoint  # noqa: E402
from faa_core.model import FAAModel  # noqa: E402
from training.config import load_config  # noqa: E402
from training.loop.data import open_features  # noqa: E402
from training.eval.evaluate import evaluate  # noqa: E402
from training.eval.scoring import fusion_probabilities  # noqa: E402
from training.loop.trainer import model_config  # noqa: E402

WEN_DIR = ROOT.parent / "shared" / "data" / "protocols" / "wen2021"


def ensure_world(folder: Path, protocol_dir: Path) -> Path:
    from training.synth import build_world

    if not (folder / "world.json").is_file():
        # stored, not procedural: evaluation then reads memory-mapped features, as from a real extraction
        build_world(preset="real-dims", seed=0, out=folder, protocol="wen2021", protocol_dir=protocol_dir,
                    storage="stored", overwrite=True, report=False)
    return folder


def matmul_flops_per_s(n: int = 2048, repeats: int = 5) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best


def fusion_rate(model: FAAModel, voice, face, n_pairs: int, seed: int = 0) -> dict[str, float]:
    """Pairs/s and FLOP/s of list-scale fusion scoring on random test pairs."""
    from torch.utils.flop_counter import FlopCounterMode

    rng = np.random.default_rng(seed)
    v_test = np.flatnonzero(np.asarray(voice.splits) == "test")
    f_test = np.flatnonzero(np.asarray(face.splits) == "test")
    v, f = rng.choice(v_test, n_pairs), rng.choice(f_test, n_pairs)
    fusion_probabilities(model, voice, face, v[:512], f[:512])  # warm-up
    t = time.perf_counter()
    fusion_probabilities(model, voice, face, v, f)
    seconds = time.perf_counter() - t
    counter = FlopCounterMode(display=False)
    with counter:
        fusion_probabilities(model, voice, face, v, f)
    flops = float(counter.get_total_flops())
    return {"pairs": n_pairs, "seconds": seconds, "pairs_per_s": n_pairs / seconds,
            "flops_per_pair": flops / n_pairs, "flops_per_s": flops / seconds}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", default=None, help="a checkpoint with real encoder dims (default: faa.yaml, random init)")
    p.add_argument("--world", default=None, help="where the bound real-dims world is kept (built on first use)")
    p.add_argument("--protocol-dir", default=str(WEN_DIR))
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--sample", type=int, default=20000, help="random pairs for the fusion FLOP measurement")
    p.add_argument("--rerank-k", type=int, default=10)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    tmp = Path(tempfile.mkdtemp(prefix="faa-eval-scale-"))
    world = ensure_world(Path(args.world) if args.world else tmp / "world", Path(args.protocol_dir))
    src = open_features(world)
    voice, face = src["voice"], src["face"]
    if args.checkpoint:
        ckpt = Path(args.checkpoint)
    else:
        torch.manual_seed(0)
        ckpt = tmp / "faa-random"
        model = FAAModel(model_config(load_config("faa"), voice, face)).eval()
        save_checkpoint(ckpt, model, trained_on={"data": "none: random init for timing", "synthetic": True},
                        evaluation={}, encoders=default_encoders(model.config))
    model, _ = load_checkpoint(ckpt)
    model.eval()
    c = model.config
    print(f"model: d_model {c.d_model}, {c.n_layers} layers, {c.n_heads} heads, tokens voice {c.voice_token_dim} "
          f"face {c.face_token_dim} ({c.face_grid[0]}x{c.face_grid[1]}); threads {torch.get_num_threads()}", flush=True)

    t = time.perf_counter()
    report = evaluate(str(ckpt), world, tmp / "eval", scoring="fusion", rerank_k=args.rerank_k, with_oracle=False,
                      log=lambda line: print("  " + line, flush=True))
    eval_s = time.perf_counter() - t
    rate = fusion_rate(model, voice, face, args.sample)
    mm = matmul_flops_per_s()
    fraction = rate["flops_per_s"] / mm

    print(f"\n{'list':28s} {'task':13s} {'size':>16s} {'value':>8s}")
    for name, e in report["lists"].items():
        size = e.get("trials", f"{e.get('voices')}x{e.get('faces')}")
        print(f"{name:28s} {e['task']:13s} {size!s:>16s} {e['value']:8.4f}")
    pairs = sum(e.get("trials", 0) * (2 if e["task"] == "matching" else 1) for e in report["lists"].values())
    rerank_pairs = sum(args.rerank_k * (e["voices"] if "v2f" in name else e["faces"])
                       for name, e in report["lists"].items() if e["task"] == "retrieval")
    print(f"\nwhole Wen 2021 evaluation (fusion, re-rank top-{args.rerank_k}): {eval_s:.1f} s "
          f"({pairs} list pairs + {rerank_pairs} re-ranked pairs)")
    print(f"fusion: {rate['pairs_per_s']:.0f} pairs/s, {rate['flops_per_pair'] / 1e6:.2f} MFLOP/pair, "
          f"{rate['flops_per_s'] / 1e9:.1f} GFLOP/s; matmul {mm / 1e9:.1f} GFLOP/s; fraction {fraction:.2f}")
    print(json.dumps({
        "wen2021_eval_s": round(eval_s, 1), "fusion_pairs_per_s": round(rate["pairs_per_s"], 1),
        "fusion_flop_fraction": round(fraction, 3), "fusion_gflop_per_s": round(rate["flops_per_s"] / 1e9, 2),
        "matmul_gflop_per_s": round(mm / 1e9, 2), "fusion_mflop_per_pair": round(rate["flops_per_pair"] / 1e6, 3),
        "list_pairs": pairs, "rerank_pairs": rerank_pairs, "threads": torch.get_num_threads(),
        "d_model": c.d_model, "n_layers": c.n_layers,
    }))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
