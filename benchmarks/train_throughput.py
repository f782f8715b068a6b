"""Training throughput: optimiser steps/s and pairs/s, and k-means time per round at 1k/10k/100k videos.

Steps are timed inside a real ``training.loop.trainer.Trainer`` (pair sampling,
feature reads, FVC + FVM forward/backward, Adam) for two settings:

* ``small``: the ``small`` synthetic world with ``--config faa --config small``
  (what the experiment table and the teaching quickstart run);
* ``real-dims``: FAA's default config (``faa.yaml``) on features with the real
  encoders' shapes (512/192 globals, 8x8x896 face tokens, 1024-d voice tokens).

k-means is timed as one FAA round runs it with ``faa.yaml``: the dual-modality
pooled vectors of the frozen features (512 + 192 = 704-d), ``start_fraction``
x videos clusters, ``niter`` iterations, faiss on the CPU.

    python benchmarks/train_throughput.py [--steps 30] [--videos 1000 10000 100000] [--threads N]

Prints a table, then one JSON line.
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

from faa_core.clustering import kmeans  # noqa: E402
from training.config import load_config  # noqa: E402
from training.loop.data import PairSampler  # noqa: E402
from training.loop.trainer import Trainer  # noqa: E402


def world(preset: str, folder: Path, **kw) -> Path:
    from training.synth import build_world

    if not (folder / "world.json").is_file():
        build_world(preset=preset, seed=0, out=folder, overwrite=True, report=False, **kw)
    return folder


def time_steps(configs: list[str], data: Path, run: Path, steps: int, overrides=()) -> dict[str, float]:
    """Steps/s and pairs/s of the trainer's own step on its own sampler, after one warm-up step."""
    cfg = load_config(configs, list(overrides))
    trainer = Trainer(cfg, data, run, progress=False)
    labels, _ = trainer.round_labels(0)
    sampler = PairSampler(trainer.index, labels, bool(cfg["pairs"]["diverse_positives"]))
    rng = np.random.default_rng(0)
    gen = torch.Generator().manual_seed(0)
    batch_size = cfg["optim"]["batch_size"]
    trainer.model.train()
    trainer.step(sampler.sample(batch_size, rng), gen, 0)
    sample_s = 0.0
    t0 = time.perf_counter()
    for _ in range(steps):
        t = time.perf_counter()
        batch = sampler.sample(batch_size, rng)
        sample_s += time.perf_counter() - t
        trainer.step(batch, gen, 0)
    seconds = time.perf_counter() - t0
    c = trainer.model.config
    return {
        "steps_per_s": steps / seconds, "pairs_per_s": steps * batch_size / seconds, "batch_size": batch_size,
        "sampling_fraction": sample_s / seconds, "d_model": c.d_model, "n_layers": c.n_layers,
        "params": sum(p.numel() for p in trainer.model.parameters()),
    }


def time_kmeans(n_videos: int, dim: int, fraction: float, niter: int, seed: int = 0) -> dict[str, float]:
    """One round's k-means on n_videos pooled unit vectors with identity structure."""
    rng = np.random.default_rng(seed)
    n_ids = max(2, n_videos // 20)
    centers = rng.standard_normal((n_ids, dim)).astype(np.float32)
    x = centers[rng.integers(0, n_ids, n_videos)] + 2.0 * rng.standard_normal((n_videos, dim)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    k = max(2, int(round(fraction * n_videos)))
    t = time.perf_counter()
    kmeans(x, k, niter=niter, seed=seed)
    return {"videos": n_videos, "k": k, "dim": dim, "niter": niter, "seconds": time.perf_counter() - t}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--videos", type=int, nargs="*", default=[1000, 10000, 100000])
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--workdir", default=None, help="keeps the generated worlds between runs")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    work = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="faa-train-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    faa = load_config("faa")
    cl = faa["clustering"]
    print(f"threads {torch.get_num_threads()}", flush=True)

    rows = {}
    rows["small"] = time_steps(["faa", "small"], world("small", work / "small"), work / "run_small", args.steps)
    rows["real-dims"] = time_steps(["faa"], world(
        "real-dims", work / "real", storage="stored",  # stored: feature reads as from an extracted store
        overrides={"identities": {"train": 100, "val": 20, "test": 20}}), work / "run_real",
                                   max(3, args.steps // 3))
    print(f"\n{'setting':10s} {'d_model':>7s} {'layers':>6s} {'params':>9s} {'batch':>5s} {'steps/s':>8s} "
          f"{'pairs/s':>8s} {'sampling':>8s}")
    for name, r in rows.items():
        print(f"{name:10s} {r['d_model']:7d} {r['n_layers']:6d} {r['params']:9d} {r['batch_size']:5d} "
              f"{r['steps_per_s']:8.2f} {r['pairs_per_s']:8.0f} {r['sampling_fraction']:8.1%}")

    dim = 512 + 192
    km = [time_kmeans(n, dim, cl["start_fraction"], cl["niter"]) for n in args.videos]
    print(f"\n{'videos':>8s} {'k':>6s} {'dim':>4s} {'niter':>5s} {'k-means s':>9s}")
    for r in km:
        print(f"{r['videos']:8d} {r['k']:6d} {r['dim']:4d} {r['niter']:5d} {r['seconds']:9.2f}")
    print(json.dumps({
        "steps_per_s": round(rows["real-dims"]["steps_per_s"], 3),
        "pairs_per_s": round(rows["real-dims"]["pairs_per_s"], 1),
        "small_steps_per_s": round(rows["small"]["steps_per_s"], 3),
        "small_pairs_per_s": round(rows["small"]["pairs_per_s"], 1),
        "kmeans_s": {str(r["videos"]): round(r["seconds"], 2) for r in km},
        "kmeans_k": {str(r["videos"]): r["k"] for r in km},
        "threads": torch.get_num_threads(),
    }))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
