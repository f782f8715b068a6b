"""One Learn run, in its own process: ``python -m training.learn.worker JOB.json RUN_DIR``.

It builds (or reuses) the synthetic world, measures the untrained model and
the oracle on the validation trials, trains with :class:`Trainer` (one line
per round in ``RUN_DIR/train/metrics.jsonl``), then evaluates the best model
on the world's test lists and measures what the pictures show: the 2-D
projection of voice and face embeddings before and after alignment, and the
match head's attention on a few test pairs against the world's truth.

Its own process bounds the run's memory (the parent watches it and can
terminate it at any moment: a Stop leaves no thread behind) and keeps the
server's threads free. ``RUN_DIR/status.json`` says which phase it is in,
``RUN_DIR/start.json`` holds the numbers known before training and
``RUN_DIR/result.json`` everything at the end; each is written atomically.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any

import numpy as np

from faa_core.fileio import atomic_write_json
from training.learn.choices import LearnJob, settings

def world_dir(root: Path, job: LearnJob) -> Path:
    return Path(root) / f"{job.world}-seed{job.world_seed}"


def ensure_world(root: Path, job: LearnJob) -> Path:
    """The job's world under ``root``, built on first use (later runs reuse it)."""
    from training.synth import build_world

    import shutil

    folder = world_dir(root, job)
    if (folder / "truth" / "oracle.json").is_file():
        return folder
    from training.learn.choices import world_overrides

    overrides = world_overrides()
    # built aside and renamed into place: a run stopped mid-build never leaves a half world behind
    for stale in folder.parent.glob(f".{folder.name}.*"):  # left by a run stopped mid-build (one run at a time)
        shutil.rmtree(stale, ignore_errors=True)
    tmp = folder.with_name(f".{folder.name}.{os.getpid()}")
    build_world(job.world, job.world_seed, tmp, overwrite=True, overrides=overrides)
    shutil.rmtree(folder, ignore_errors=True)
    os.replace(tmp, folder)
    return folder


def _pca(x: np.ndarray) -> np.ndarray:
    """The first two principal components of the rows of x (sign fixed for stable pictures)."""
    x = x - x.mean(axis=0, keepdims=True)
    _, _, vt = np.linalg.svd(x, full_matrices=False)
    comps = vt[:2]
    comps = comps * np.sign(comps[np.arange(len(comps)), np.abs(comps).argmax(axis=1)])[:, None]
    out = x @ comps.T
    return out if out.shape[1] == 2 else np.pad(out, ((0, 0), (0, 2 - out.shape[1])))


def projection_items(world: Any, split: str, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Up to n voice and n face items of a split, spread over its identities (deterministic)."""
    out = []
    for src in (world.voice, world.face):
        items = np.flatnonzero(np.asarray(src.splits) == split)
        step = max(1, int(np.ceil(len(items) / n)))
        out.append(items[::step][:n])
    return out[0], out[1]


def projection(model: Any, world: Any, voice_items: np.ndarray, face_items: np.ndarray) -> dict[str, Any]:
    """2-D PCA of the aligned voice and face embeddings together, with each point's truth."""
    from training.eval.scoring import embed_items

    v = embed_items(model, world.voice, voice_items, "voice").cpu().numpy()
    f = embed_items(model, world.face, face_items, "face").cpu().numpy()
    xy = _pca(np.concatenate([v, f]).astype(np.float64))
    ident = np.concatenate([np.asarray(world.voice.identities)[voice_items], np.asarray(world.face.identities)[face_items]])
    truth = world.truth.identities
    gender_of = {str(k): int(g) for k, g in zip(truth["vox_id"], truth["gender"])}
    names = sorted(set(ident.astype(str)))
    return {
        "xy": np.round(xy, 4).tolist(),
        "modality": ["voice"] * len(v) + ["face"] * len(f),
        "identity": [names.index(str(i)) for i in ident],
        "gender": [gender_of.get(str(i), -1) for i in ident],
    }


def attention_examples(model: Any, world: Any, n: int, rng_seed: int) -> list[dict[str, Any]]:
    """The match head's attention on n positive test pairs (different videos), next to the truth.

    Each example: the face attention over the token grid, the informative
    face region (True = carries the shared traits), the voice attention per
    token and which voice tokens are voiced, and the pair's match probability.
    """
    import torch

    from training.eval.scoring import embed_items, item_tokens

    cfg = model.config
    if cfg.face_token_dim <= 0 and cfg.voice_token_dim <= 0:
        return []
    v_src, f_src = world.voice, world.face
    v_items = np.flatnonzero(np.asarray(v_src.splits) == "test")
    f_items = np.flatnonzero(np.asarray(f_src.splits) == "test")
    f_ident, f_video = np.asarray(f_src.identities)[f_items], np.asarray(f_src.videos)[f_items]
    rng = np.random.default_rng(rng_seed)
    pairs = []
    for v in rng.permutation(v_items):
        ok = f_items[(f_ident == v_src.identities[v]) & (f_video != v_src.videos[v])]
        if len(ok):
            pairs.append((int(v), int(ok[0])))
        if len(pairs) == n:
            break
    if not pairs:
        return []
    vi = np.array([p[0] for p in pairs])
    fi = np.array([p[1] for p in pairs])
    model.eval()
    with torch.inference_mode():
        ve, fe = embed_items(model, v_src, vi, "voice"), embed_items(model, f_src, fi, "face")
        vt, vm = item_tokens(v_src, vi, cfg.voice_token_dim > 0, "cpu")
        ft, _ = item_tokens(f_src, fi, cfg.face_token_dim > 0, "cpu")
        res = model.match(None, None, vt, ft, vm, voice_emb=ve, face_emb=fe, need_weights=True)
        prob = model.match_probability(res.logits).numpy()
    mask = world.truth.face_mask
    rows = []
    for k, (v, f) in enumerate(pairs):
        ex: dict[str, Any] = {"voice": str(v_src.ids[v]), "face": str(f_src.ids[f]), "probability": round(float(prob[k]), 4)}
        if res.face_attention is not None:
            ex["face_attention"] = np.round(res.face_attention[k].numpy().astype(np.float64), 5).tolist()
            ex["face_region"] = mask.astype(bool).tolist()
        if res.voice_attention is not None and vm is not None:
            t = int(vm[k].sum())
            ex["voice_attention"] = np.round(res.voice_attention[k, :t].numpy().astype(np.float64), 5).tolist()
            ex["voiced"] = world.truth.voiced(v).astype(bool).tolist()
        rows.append(ex)
    return rows


def probe_val_auc(world: Any, vs: np.ndarray, fs: np.ndarray, labels: np.ndarray) -> Any:
    """The reachable ceiling on the validation trials, where the world provides one.

    The linear trait probe of ``training.synth.probe`` on the global
    embeddings (what a read-out that is given the truth reaches from the
    features the projection heads see); None for worlds without it.
    """
    try:
        from training.synth.probe import get_probe
    except ImportError:
        return None
    from faa_core.metrics import verification_auc

    try:
        probe = get_probe(world, "global")
        scores = probe.scores(np.asarray(world.voice.ids)[vs], np.asarray(world.face.ids)[fs])
    except (ValueError, KeyError):
        return None
    return float(verification_auc(scores, labels))


def _peak_memory_mb() -> float | None:
    """This process's peak resident memory (what the run's memory limit is measured against)."""
    try:
        import resource
    except ImportError:  # not on this platform
        return None
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, 1)  # kB on Linux


def _watch_parent() -> None:
    """End this process when the server that started it is gone (no orphaned trainings)."""
    parent = os.getppid()

    def loop() -> None:
        while True:
            time.sleep(1.0)
            if os.getppid() != parent:
                os._exit(3)

    threading.Thread(target=loop, daemon=True).start()


def run(job: LearnJob, run_dir: Path, worlds_root: Path) -> dict[str, Any]:
    """Build, measure, train, evaluate; returns (and writes) result.json's content."""
    import torch

    from faa_core.checkpoint import load_checkpoint
    from faa_core.metrics import verification_auc
    from training.eval.evaluate import evaluate
    from training.loop.trainer import Trainer
    from training.synth import load_world, oracle_scores

    limits = settings()["limits"]
    t0 = time.perf_counter()
    status = run_dir / "status.json"
    atomic_write_json(status, {"phase": "world", "since": time.time()})
    folder = ensure_world(worlds_root, job)
    world = load_world(folder)
    cfg = job.config()
    atomic_write_json(status, {"phase": "setup", "since": time.time()})
    trainer = Trainer(cfg, folder, run_dir / "train", progress=False)
    vs, fs, labels = trainer.val
    oracle_val = verification_auc(oracle_scores(world, np.asarray(world.voice.ids)[vs], np.asarray(world.face.ids)[fs]), labels)
    untrained = trainer.validate()
    pv, pf = projection_items(world, "test", int(limits["projection_items"]))
    before = projection(trainer.model, world, pv, pf)
    start = {
        "untrained_val_auc": untrained["val_auc"], "oracle_val_auc": oracle_val, "probe": probe_val_auc(world, vs, fs, labels),
        "val_trials": int(len(labels)), "config": cfg, "world_counts": world.meta.get("counts"),
        "max_rounds": int(cfg["schedule"]["max_rounds"]), "setup_seconds": round(time.perf_counter() - t0, 2),
    }
    atomic_write_json(run_dir / "start.json", start)
    atomic_write_json(status, {"phase": "training", "since": time.time()})
    t_train = time.perf_counter()
    summary = trainer.train()
    train_s = time.perf_counter() - t_train
    atomic_write_json(status, {"phase": "evaluating", "since": time.time()})
    # the scoring validation used: the configured one when the match head trains (FVM), else the cosine
    scoring = cfg["validation"]["scoring"] if cfg["loss"].get("fvm") and "val_auc_fusion" in untrained else "cosine"
    ev = evaluate(str(run_dir / "train" / "best"), folder, run_dir / "eval", scoring=scoring, with_oracle=True)
    model, _ = load_checkpoint(run_dir / "train" / "best")
    rows = [json.loads(line) for line in (run_dir / "train" / "metrics.jsonl").read_text().splitlines() if line.strip()]
    result = {
        **job.to_dict(),
        "rounds": int(summary["rounds"]),
        "best_round": int(summary["best_round"]),
        "seconds": round(time.perf_counter() - t0, 1),
        "train_seconds": round(train_s, 1),
        "val_auc": float(summary["best_val_auc"]),
        "untrained_val_auc": untrained["val_auc"],
        "oracle_val_auc": oracle_val,
        "probe": start["probe"],
        "scoring": scoring,
        "test": {name: e["value"] for name, e in ev["lists"].items()},
        "oracle_test": {name: e["value"] for name, e in ev.get("oracle", {}).get("lists", {}).items()},
        "metrics": rows,
        "projection": {"before": before, "after": projection(model, world, pv, pf)},
        "attention": attention_examples(model, world, int(limits["attention_pairs"]), job.seed),
        "face_grid": list(world.spec.face.grid),
        "torch_threads": torch.get_num_threads(),
        "peak_memory_mb": _peak_memory_mb(),
    }
    atomic_write_json(run_dir / "result.json", result)
    atomic_write_json(status, {"phase": "done", "since": time.time()})
    return result


def _preload() -> None:
    """Import what a run needs (torch, the trainer, evaluation, clustering, plotting) before the job comes.

    Why: on a busy 2-core machine these imports take 10-20 s, a third of a
    one-minute run; a spare process pays them while nobody waits.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot  # noqa: F401  (the Trainer's end-of-run plots)

    import faa_core.clustering  # noqa: F401
    import training.eval.evaluate  # noqa: F401
    import training.loop.trainer  # noqa: F401
    import training.synth  # noqa: F401


def _wait_for_job() -> list[str] | None:
    """A spare: preload, then read one line ``JOB RUN_DIR WORLDS`` (JSON list) from stdin; None at EOF.

    Its output goes to the run's log.txt from then on.
    """
    _preload()
    line = sys.stdin.readline()
    if not line.strip():
        return None
    args = [str(a) for a in json.loads(line)]
    log = os.open(Path(args[1]) / "log.txt", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    sys.stdout.flush()
    sys.stderr.flush()
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.close(log)
    return args


def main(argv: list[str] | None = None) -> int:
    """Entry of the training process; any failure is written to status.json for the parent to show.

    ``JOB RUN_DIR WORLDS`` runs at once; ``--spare`` preloads and waits for
    those three on stdin (the runner keeps one such process ready).
    """
    args = sys.argv[1:] if argv is None else argv
    _watch_parent()
    import torch

    torch.set_num_threads(max(1, int(settings()["limits"]["threads"])))
    if args and args[0] == "--spare":
        got = _wait_for_job()
        if got is None:
            return 0
        args = got
    job_path, run_dir, worlds_root = Path(args[0]), Path(args[1]), Path(args[2])
    try:
        run(LearnJob.from_dict(json.loads(job_path.read_text())), run_dir, worlds_root)
    except Exception as exc:  # the parent shows the message; the traceback goes to the run's log only
        traceback.print_exc()
        atomic_write_json(run_dir / "status.json", {"phase": "failed", "error": f"{type(exc).__name__}: {exc}", "since": time.time()})
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
