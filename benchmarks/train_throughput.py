"""Training throughput: optimiser steps/s and pairs/s, and k-means time per round at 1k/10k/100k videos.

Steps are timed inside a real ``training.loop.trainer.Trainer`` (pair sampling,
feature reads, FVC + FVM forward/backward, Adam) for two settings:

* ``small``: the ``small`` synthetic world with ``--config faa --config small``
  (what the experiment table and the teaching quickstart run);
* ``real-dims``: FAA's default config (``faa.yaml``) on features with the real
  encoders' shapes (512/192 globals, 8x8x896 face tokens, 1024-d voice tokens).

k-means is timed as one FAA round runs it with ``faa.yaml``: the dual-modality
pooled vectors of the frozen features (512 + 192 = 704-d), ``start_fraction``
x videos clusters, ``niter`` iterations, on identity-structured points whose
truth gives purity and NMI: the exact path (faiss on the CPU) and the fast
path (``backend="fast"``: PCA to 64 dims + centroids fitted on a sample), plus what ``auto`` picks (the GPU
when faiss-gpu sees one). ``--kmeans-world N`` also compares the two paths'
cluster quality on the pooled globals of a real-dims synthetic world with N
training videos.

    python benchmarks/train_throughput.py [--steps 30] [--videos 1000 10000 100000] [--threads N]
    python benchmarks/train_throughput.py --kmeans-only [--exact-max 100000] [--kmeans-world 20000]

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

from faa_core.clustering import choose_backend, cluster_purity, dual_modality_pooling, kmeans, nmi  # noqa: E402
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


def _blobs(n_videos: int, dim: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """n_videos pooled-like unit vectors around n_videos / 20 identity centres, and their identities."""
    rng = np.random.default_rng(seed)
    n_ids = max(2, n_videos // 20)
    centers = rng.standard_normal((n_ids, dim)).astype(np.float32)
    ids = rng.integers(0, n_ids, n_videos)
    x = centers[ids] + 2.0 * rng.standard_normal((n_videos, dim)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x, ids


def time_kmeans(n_videos: int, dim: int, fraction: float, niter: int, backend: str = "faiss",
                seed: int = 0) -> dict[str, float]:
    """One round's k-means on n_videos pooled unit vectors with identity structure: time, purity, NMI."""
    x, ids = _blobs(n_videos, dim, seed)
    k = max(2, int(round(fraction * n_videos)))
    t = time.perf_counter()
    res = kmeans(x, k, niter=niter, seed=seed, backend=backend)
    seconds = time.perf_counter() - t
    return {"videos": n_videos, "k": k, "dim": dim, "niter": niter, "backend": backend,
            "used": choose_backend(n_videos, dim, backend=backend), "seconds": seconds,
            "purity": cluster_purity(res.labels, ids), "nmi": nmi(res.labels, ids)}


def kmeans_world_quality(train_videos: int, fraction: float, niter: int) -> list[dict[str, float]]:
    """Exact vs fast k-means on the pooled 704-d globals of a real-dims synthetic world (truth: identities)."""
    from training.synth import get_preset
    from training.synth.layout import make_layout
    from training.synth.world import LatentModel

    spec = get_preset("real-dims", {"identities": {"train": max(2, train_videos // 10), "val": 2, "test": 2},
                                    "videos_per_identity": {"train": 10}, "frames_per_video": 1,
                                    "utterances_per_video": 1})
    model = LatentModel(spec, 0, make_layout(spec, 0))
    t = time.perf_counter()
    emb = {}
    for m in ("face", "voice"):
        it = model.manifest.items[m]
        train = np.flatnonzero(it.split == "train")
        g, _ = model.generate(m, train, want_tokens=False)
        emb[m] = (g, model.manifest.video_keys[it.video[train]], model.manifest.vox_ids[it.identity[train]])
    keys, pooled = dual_modality_pooling(emb["voice"][0], emb["voice"][1], emb["face"][0], emb["face"][1])
    vid_id = dict(zip(emb["face"][1].tolist(), emb["face"][2].tolist()))
    truth = np.array([vid_id[k] for k in keys.tolist()])
    print(f"world: {len(keys)} pooled {pooled.shape[1]}-d videos generated in {time.perf_counter() - t:.1f} s", flush=True)
    k = max(2, int(round(fraction * len(keys))))
    out = []
    for backend in ("faiss", "fast"):
        t = time.perf_counter()
        res = kmeans(pooled, k, niter=niter, seed=0, backend=backend)
        out.append({"videos": len(keys), "k": k, "backend": backend, "seconds": time.perf_counter() - t,
                    "purity": cluster_purity(res.labels, truth), "nmi": nmi(res.labels, truth)})
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--videos", type=int, nargs="*", default=[1000, 10000, 100000])
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--workdir", default=None, help="keeps the generated worlds between runs")
    p.add_argument("--kmeans-only", action="store_true", help="skip the training steps")
    p.add_argument("--exact-max", type=int, default=100000, help="time the exact path only up to this many videos")
    p.add_argument("--kmeans-world", type=int, default=0, help="also compare exact and fast on a world of N videos")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    work = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="faa-train-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    faa = load_config("faa")
    cl = faa["clustering"]
    print(f"threads {torch.get_num_threads()}", flush=True)

    rows = {}
    if not args.kmeans_only:
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
    km = []
    print(f"\n{'videos':>8s} {'k':>6s} {'dim':>4s} {'niter':>5s} {'backend':>9s} {'k-means s':>9s} {'purity':>6s} {'NMI':>6s}",
          flush=True)
    for n in args.videos:
        backends = (["faiss"] if n <= args.exact_max else []) + ["fast"] + (["auto"] if choose_backend(n, dim) == "faiss-gpu" else [])
        for b in backends:
            r = time_kmeans(n, dim, cl["start_fraction"], cl["niter"], backend=b)
            km.append(r)
            print(f"{r['videos']:8d} {r['k']:6d} {r['dim']:4d} {r['niter']:5d} {r['used']:>9s} {r['seconds']:9.2f} "
                  f"{r['purity']:6.3f} {r['nmi']:6.3f}", flush=True)
    wq = kmeans_world_quality(args.kmeans_world, cl["start_fraction"], cl["niter"]) if args.kmeans_world else []
    for r in wq:
        print(f"world {r['videos']:6d} videos k {r['k']:5d} {r['backend']:>6s} {r['seconds']:7.2f} s "
              f"purity {r['purity']:.3f} NMI {r['nmi']:.3f}")
    out: dict = {}
    if rows:
        out.update({
            "steps_per_s": round(rows["real-dims"]["steps_per_s"], 3),
            "pairs_per_s": round(rows["real-dims"]["pairs_per_s"], 1),
            "small_steps_per_s": round(rows["small"]["steps_per_s"], 3),
            "small_pairs_per_s": round(rows["small"]["pairs_per_s"], 1),
        })
    by = {}
    for r in km:
        by.setdefault(r["used"] if r["backend"] != "faiss" else "exact", {})[str(r["videos"])] = r
    out.update({
        "kmeans_s": {name: {n: round(r["seconds"], 2) for n, r in d.items()} for name, d in by.items()},
        "kmeans_purity": {name: {n: round(r["purity"], 4) for n, r in d.items()} for name, d in by.items()},
        "kmeans_nmi": {name: {n: round(r["nmi"], 4) for n, r in d.items()} for name, d in by.items()},
        "kmeans_k": {str(r["videos"]): r["k"] for r in km},
        "kmeans_world": [{k: (round(v, 4) if isinstance(v, float) else v) for k, v in r.items()} for r in wq],
        "threads": torch.get_num_threads(),
    })
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
