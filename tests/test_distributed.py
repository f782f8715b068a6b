"""torchrun with 2 CPU processes (gloo) against one process on the tiny world.

The equality tested: for the same global batch, a 2-process DDP run takes
the same optimiser steps as the single-process run, so its weights after a
few rounds match with ``torch.testing.assert_close(rtol=1e-4, atol=1e-6)``
(the float sums run in another order: the batch-global losses see gathered
embeddings, DDP averages two gradients). Two settings make that a test of
the gradients rather than of noise:

* dropout off: each rank draws dropout masks for its own rows from its own
  stream, so masks cannot match the single process's;
* SGD (with momentum): Adam divides by the running gradient magnitude, so
  on parameters whose true gradient is exactly zero (the key biases of
  attention: softmax ignores a shift shared by all keys) it turns float noise
  into lr-sized steps that differ between any two summation orders.
"""

from __future__ import annotations

import csv
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist

from training.loop import distributed as du
from training.config import load_config
from training.eval.evaluate import evaluate
from training.loop.trainer import Trainer

ROOT = Path(__file__).resolve().parents[1]
SMALL = [
    "schedule.steps_per_round=6", "optim.batch_size=32", "validation.trials=120",
    "model.d_model=32", "model.n_heads=2", "model.n_layers=1", "model.proj_hidden=32", "model.embed_dim=16",
]
EQUAL = SMALL + ["model.dropout=0", "model.proj_dropout=0", "optim.name=sgd", "optim.lr=0.05"]

needs_gloo = pytest.mark.skipif(
    not (dist.is_available() and dist.is_gloo_available()), reason="torch.distributed with the gloo backend is unavailable"
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun(module: str, args: list[str], nproc: int = 2) -> subprocess.CompletedProcess:
    """``python -m torch.distributed.run --nproc_per_node N -m module args`` on 127.0.0.1, one thread each."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc),
           "--master_addr", "127.0.0.1", "--master_port", str(_free_port()), "-m", module, *args]
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    return subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)


def train_args(world: Path, run: Path, objective: str, overrides: list[str]) -> list[str]:
    return ["--config", objective, "--data", str(world), "--out", str(run), "--no-progress", *overrides]


def rows(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def assert_runs_match(single: Path, ddp: Path) -> None:
    """Same weights (to float-order tolerance), same round records, same files."""
    a = torch.load(single / "state.pt", weights_only=True)
    b = torch.load(ddp / "state.pt", weights_only=True)
    for part in ("model", "extra"):
        assert a[part].keys() == b[part].keys()
        for k in a[part]:
            torch.testing.assert_close(b[part][k], a[part][k], rtol=1e-4, atol=1e-6, msg=lambda m: f"{part}.{k}: {m}")
    assert a["state"]["round"] == b["state"]["round"] and a["state"]["step"] == b["state"]["step"]
    assert a["state"]["best_round"] == b["state"]["best_round"]
    for k in ("round", "bad_rounds", "count"):  # the cluster schedule moved alike
        assert a["schedule"][k] == b["schedule"][k], k
    ra, rb = rows(single), rows(ddp)
    assert len(ra) == len(rb)
    for x, y in zip(ra, rb):
        assert x.keys() == y.keys()
        for k, v in x.items():
            if k == "seconds":
                continue
            if isinstance(v, float):
                tol = 1e-3 if k.startswith("val_auc") else 1e-5  # an AUC moves by 1/(pos*neg) per swapped pair
                assert y[k] == pytest.approx(v, rel=tol, abs=tol), (x["round"], k)
            else:
                assert y[k] == v, (x["round"], k)
    names = lambda p: sorted(str(f.relative_to(p)) for f in p.rglob("*") if f.is_file())
    assert names(ddp) == names(single)  # rank 1 wrote nothing of its own


@pytest.fixture(scope="module")
def tiny_world(tmp_path_factory) -> Path:
    from training.synth import build_world

    out = tmp_path_factory.mktemp("world") / "tiny"
    build_world(preset="tiny", seed=0, out=out)
    return out


@pytest.fixture(scope="module")
def single_faa(tiny_world, tmp_path_factory) -> Path:
    """FAA (InfoNCE + FVM with hard negatives), 2 rounds, one process."""
    run = tmp_path_factory.mktemp("single") / "faa"
    Trainer(load_config("faa", EQUAL + ["schedule.max_rounds=2"]), tiny_world, run, progress=False).train()
    return run


@needs_gloo
def test_two_processes_train_like_one_and_resume(tiny_world, single_faa, tmp_path):
    run = tmp_path / "ddp"
    # round 0, then a second launch that resumes from state.pt (every rank loads it) for round 1
    for rounds in (1, 2):
        res = torchrun("training.train", train_args(tiny_world, run, "faa", EQUAL + [f"schedule.max_rounds={rounds}"]))
        assert res.returncode == 0, res.stderr[-3000:]
        printed = [line for line in res.stdout.splitlines() if line.startswith("{")]
        assert len(printed) == 1 and json.loads(printed[0])["rounds"] == rounds  # only rank 0 prints
    assert_runs_match(single_faa, run)


@needs_gloo
def test_wen2021_with_extra_parameters_and_reweighting(tiny_world, tmp_path):
    """The classifier outside the model, the replicated reweighter, unused fusion parameters."""
    extra = EQUAL + ["schedule.max_rounds=1", "loss.reweight_start_round=0"]
    Trainer(load_config("wen2021", extra), tiny_world, tmp_path / "single", progress=False).train()
    res = torchrun("training.train", train_args(tiny_world, tmp_path / "ddp", "wen2021", extra))
    assert res.returncode == 0, res.stderr[-3000:]
    assert_runs_match(tmp_path / "single", tmp_path / "ddp")


@needs_gloo
def test_sharded_evaluation_matches_single_process(tiny_world, single_faa, tmp_path):
    ckpt = str(single_faa / "best")
    one = evaluate(ckpt, tiny_world, tmp_path / "one", dump_scores=True, rerank_k=5)
    res = torchrun("training.evaluate", ["--checkpoint", ckpt, "--data", str(tiny_world), "--out", str(tmp_path / "two"),
                                         "--dump-scores", "--rerank-k", "5"])
    assert res.returncode == 0, res.stderr[-3000:]
    assert "on 2 processes" in res.stderr and res.stdout.count("# Evaluation") == 1
    two = json.loads((tmp_path / "two" / "report.json").read_text())
    assert set(two["lists"]) == set(one["lists"])
    for name, entry in one["lists"].items():
        assert two["lists"][name]["value"] == pytest.approx(entry["value"], abs=1e-6), name
    assert {k: v["value"] for k, v in two["oracle"]["lists"].items()} == {
        k: v["value"] for k, v in one["oracle"]["lists"].items()
    }
    for path in sorted((tmp_path / "one" / "scores").glob("*.csv")):
        a = list(csv.DictReader(open(path)))
        b = list(csv.DictReader(open(tmp_path / "two" / "scores" / path.name)))
        keys = [k for k in a[0] if k.startswith("score")]
        assert [{k: r[k] for k in r if k not in keys} for r in a] == [{k: r[k] for k in r if k not in keys} for r in b]
        np.testing.assert_allclose([[float(r[k]) for k in keys] for r in b], [[float(r[k]) for k in keys] for r in a],
                                   rtol=0, atol=1e-6, err_msg=path.name)


def test_helpers_without_a_process_group():
    """A plain run creates no group and every helper gives the single-process answer."""
    assert not du.is_distributed() and du.world_size() == 1 and du.rank() == 0 and du.is_main()
    assert du.broadcast_object({"a": 1}) == {"a": 1} and du.on_main_then_broadcast(lambda: 3) == 3
    assert du.gather_objects(5) == [5] and du.all_reduce_sums({"x": 1.5}) == {"x": 1.5}
    t = torch.ones(2, requires_grad=True)
    assert du.all_gather_cat(t) is t
    assert du.per_rank_batch(32, 1) == 32 and du.per_rank_batch(32, 4) == 8
    with pytest.raises(ValueError, match="must divide evenly over the 3 processes"):
        du.per_rank_batch(32, 3)
    bounds = [du.shard_bounds(10, 3, r) for r in range(3)]
    assert bounds == [(0, 4), (4, 7), (7, 10)]
    assert du.rank_seed(123, 0) == 123 and du.rank_seed(123, 1) != du.rank_seed(123, 2)
