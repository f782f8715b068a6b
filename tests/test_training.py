"""The training chain on the tiny synthetic world: train, resume after a kill, evaluate."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from training.config import load_config
from training.eval.evaluate import evaluate
from training.loop.trainer import Trainer

ROOT = Path(__file__).resolve().parents[1]
FAST = [
    "schedule.steps_per_round=8", "optim.batch_size=32", "validation.trials=120",
    "model.d_model=32", "model.n_heads=2", "model.n_layers=1", "model.proj_hidden=32", "model.embed_dim=16",
]


@pytest.fixture(scope="module")
def tiny_world(tmp_path_factory) -> Path:
    from training.synth import build_world

    out = tmp_path_factory.mktemp("world") / "tiny"
    build_world(preset="tiny", seed=0, out=out)
    return out


def train(world: Path, run: Path, objective: str = "faa", rounds: int = 3, extra=()):
    cfg = load_config(objective, FAST + [f"schedule.max_rounds={rounds}", *extra])
    return Trainer(cfg, world, run, progress=False).train()


@pytest.mark.parametrize("objective", ["faa", "sl", "wen2021", "faa_supervised"])
def test_every_objective_trains_and_keeps_best(tiny_world, tmp_path, objective):
    summary = train(tiny_world, tmp_path / "run", objective, rounds=2)
    assert summary["rounds"] == 2
    rows = [json.loads(l) for l in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["round"] for r in rows] == [0, 1]
    # the kept model is the best validated round, and its card records that validation
    aucs = [r["val_auc"] for r in rows]
    assert summary["best_val_auc"] == max(aucs) and summary["best_round"] == int(np.argmax(aucs))
    assert all(np.isfinite(r["loss"]) for r in rows)
    card = json.loads((tmp_path / "run" / "best" / "config.json").read_text())
    assert card["synthetic"] is True and card["trained_on"]["objective"] == objective
    assert (tmp_path / "run" / "plots" / "validation_auc.png").is_file()
    saved = json.loads((tmp_path / "run" / "best" / "config.json").read_text())
    assert saved["evaluation"]["validation"]["val_auc"] == summary["best_val_auc"]


def test_ablation_switches_and_fixed_clusters(tiny_world, tmp_path):
    extra = ["loss.fvm=false", "pairs.diverse_positives=false", "pairs.hard_negatives=false", "clustering.fixed=true"]
    train(tiny_world, tmp_path / "run", "faa", rounds=3, extra=extra)
    rows = [json.loads(l) for l in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert len({r["clusters"] for r in rows}) == 1
    assert all("fvm" not in r for r in rows)
    assert all("purity" in r for r in rows)


def test_same_seed_same_result(tiny_world, tmp_path):
    train(tiny_world, tmp_path / "a", rounds=2)
    train(tiny_world, tmp_path / "b", rounds=2)
    a = (tmp_path / "a" / "best" / "model.safetensors").read_bytes()
    assert a == (tmp_path / "b" / "best" / "model.safetensors").read_bytes()


def _cli(world: Path, run: Path, rounds: int) -> list[str]:
    return [sys.executable, "-m", "training.train", "--config", "faa", "--data", str(world), "--out", str(run),
            "--no-progress", f"schedule.max_rounds={rounds}", *FAST]


def test_kill_and_resume_ends_like_uninterrupted_run(tiny_world, tmp_path):
    rounds = 8
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    full = subprocess.run(_cli(tiny_world, tmp_path / "full", rounds), env=env, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert full.returncode == 0, full.stderr
    run = tmp_path / "killed"
    proc = subprocess.Popen(_cli(tiny_world, run, rounds), env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    log = run / "metrics.jsonl"
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if log.is_file() and len(log.read_text().splitlines()) >= 2:
            break
        time.sleep(0.05)
    time.sleep(0.1)  # land somewhere inside a later round
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    assert len(log.read_text().splitlines()) < rounds
    resumed = subprocess.run(_cli(tiny_world, run, rounds), env=env, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    assert (run / "best" / "model.safetensors").read_bytes() == (tmp_path / "full" / "best" / "model.safetensors").read_bytes()
    strip = lambda p: [{k: v for k, v in json.loads(l).items() if k != "seconds"} for l in p.read_text().splitlines()]
    assert strip(log) == strip(tmp_path / "full" / "metrics.jsonl")


def test_evaluate_report_and_dumps(tiny_world, tmp_path):
    train(tiny_world, tmp_path / "run", rounds=2)
    out = tmp_path / "eval"
    report = evaluate(str(tmp_path / "run" / "best"), tiny_world, out, dump_scores=True, rerank_k=5)
    assert (out / "report.md").is_file() and (out / "roc.png").is_file()
    lists = report["lists"]
    assert {"verify_v2f_test", "match_v2f_2_test", "reterival_v2f_test"} <= set(lists)
    assert set(report["oracle"]["lists"]) == set(lists)
    # the dumped scores recompute the reported metric
    from faa_core.metrics import matching_accuracy, verification_auc
    import csv

    rows = list(csv.DictReader(open(out / "scores" / "verify_v2f_test.csv")))
    auc = verification_auc([float(r["score"]) for r in rows], [int(r["label"]) for r in rows])
    assert auc == pytest.approx(lists["verify_v2f_test"]["value"])
    rows = list(csv.DictReader(open(out / "scores" / "match_f2v_2_test.csv")))
    assert list(rows[0]) == ["face", "voice_pos", "voice_neg", "score_pos", "score_neg"]
    acc = matching_accuracy([float(r["score_pos"]) for r in rows], [float(r["score_neg"]) for r in rows])
    assert acc == pytest.approx(lists["match_f2v_2_test"]["value"])
    npz = np.load(out / "scores" / "retrieval_v2f.npz")
    assert npz["scores"].shape == (len(npz["query_identities"]), len(npz["gallery_identities"]))
    # the oracle is the ceiling: far above chance on verification
    assert report["oracle"]["lists"]["verify_v2f_test"]["value"] > 0.8
    # beside it the reachable ceiling: ridge probes of the true traits from the features, below the oracle
    for kind in ("probe_global", "probe_tokens"):
        assert set(report[kind]["lists"]) == set(lists)
        assert 0.5 < report[kind]["lists"]["verify_v2f_test"]["value"] < report["oracle"]["lists"]["verify_v2f_test"]["value"]


def test_publish_puts_the_test_evaluation_and_notes_in_the_card(tiny_world, tmp_path):
    from faa_core.checkpoint import README_FILE, load_checkpoint
    from training.eval.publish import publish

    train(tiny_world, tmp_path / "run", rounds=1)
    report = evaluate(str(tmp_path / "run" / "best"), tiny_world, tmp_path / "eval")
    out = publish(tmp_path / "run", tmp_path / "eval" / "report.json", tmp_path / "pub", notes="## How to train\nrun it")
    model, card = load_checkpoint(out)
    test = card["evaluation"]["test"]
    assert test["scoring"] == "fusion" and set(test["lists"]) == set(report["lists"])
    name = "verify_v2f_test"
    assert test["lists"][name]["value"] == pytest.approx(report["lists"][name]["value"], abs=1e-4)
    assert test["oracle"][name] == pytest.approx(report["oracle"]["lists"][name]["value"], abs=1e-4)
    assert "validation" in card["evaluation"]  # what training recorded is kept
    readme = (out / README_FILE).read_text()
    assert f"| {name} | auc |" in readme and "## How to train" in readme and "synthetic features" in readme


def test_prefetched_scoring_equals_list_by_list(tiny_world, tmp_path):
    from faa_core.checkpoint import load_checkpoint
    from training.loop.data import open_features
    from training.eval.evaluate import ModelScorer, evaluate_protocol, find_protocol

    train(tiny_world, tmp_path / "run", rounds=1)
    model, _ = load_checkpoint(tmp_path / "run" / "best")
    src = open_features(tiny_world)
    proto = find_protocol(tiny_world, None, None)
    results = []
    for prefetch in (False, True):
        scorer = ModelScorer(model, src["voice"], src["face"], "combined", rerank_k=3)
        if prefetch:
            scorer.prefetch_protocol(proto)
            assert len(scorer._keys) > 0
        results.append(evaluate_protocol(proto, src["voice"], src["face"], scorer.pairs, scorer.retrieval, scorer.rerank))
    for name, entry in results[0].items():
        assert results[1][name]["value"] == pytest.approx(entry["value"], abs=1e-5), name


def test_one_to_n_lists_score_the_correct_candidate_against_all_others(tmp_path):
    from training.features import ItemTable
    from training.eval.one_to_n import evaluate_one_to_n

    voice = ItemTable(["v0", "v1"], ["a", "b"], ["p", "q"], ["test"] * 2)
    face = ItemTable(["f0", "f1", "f2"], ["a", "b", "c"], ["p", "q", "r"], ["test"] * 3)
    (tmp_path / "sl_match_v2f_10_test.txt").write_text("v0 f0 f1 f2\nv1 f1 f0 f2\n")
    (tmp_path / "sl_match_f2v_10_test.txt").write_text("f0 v0 v1\n")
    truth = {(0, 0): 0.9, (0, 1): 0.5, (0, 2): 0.1, (1, 1): 0.4, (1, 0): 0.6, (1, 2): 0.0}
    out = evaluate_one_to_n(tmp_path, voice, face, lambda v, f: np.array([truth[(a, b)] for a, b in zip(v, f)]))
    assert out["sl_match_v2f_10_test"]["value"] == 0.5 and out["sl_match_v2f_10_test"]["candidates"] == 3
    assert out["sl_match_f2v_10_test"]["value"] == 1.0 and out["sl_match_f2v_10_test"]["direction"] == "f2v"
    (tmp_path / "sl_match_v2f_bad.txt").write_text("v0 f0 f1\nv1 f1\n")
    with pytest.raises(ValueError, match="same number"):
        evaluate_one_to_n(tmp_path, voice, face, lambda v, f: np.zeros(len(v)))


def test_features_of_random_encoders_make_a_card_that_warns(tiny_world, tmp_path):
    """A store extracted with random encoder weights must not yield a card that looks real."""
    import shutil

    from faa_core.checkpoint import load_checkpoint

    store = tmp_path / "store"
    shutil.copytree(tiny_world / "features", store)  # a plain feature store: no world.json, no truth/
    meta = json.loads((store / "store.json").read_text())
    meta["source"] = {"random_weights": True, "weights": {"mode": "random"}}
    (store / "store.json").write_text(json.dumps(meta))
    train(store, tmp_path / "run", rounds=1)
    _, card = load_checkpoint(tmp_path / "run" / "best")
    assert card["synthetic"] is True and card["trained_on"]["random_encoder_features"] is True
    meta["source"] = {"random_weights": False, "weights": {"mode": "pretrained"}}
    (store / "store.json").write_text(json.dumps(meta))
    train(store, tmp_path / "run2", rounds=1)
    _, card = load_checkpoint(tmp_path / "run2" / "best")
    assert card["synthetic"] is False and card["trained_on"]["feature_weights"] == {"mode": "pretrained"}


def test_identity_link_trains_supervised_objectives_on_faces_without_videos(tiny_world, tmp_path):
    """VGGFace1-like faces (each its own "video") share no video with voices: link by identity instead."""
    import csv
    import shutil

    store = tmp_path / "store"
    shutil.copytree(tiny_world / "features", store)
    items = store / "face" / "items.csv"
    rows = list(csv.DictReader(items.open()))
    for r in rows:
        r["video"] = r["id"]  # a photo comes from no known video
    with items.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    with pytest.raises(ValueError, match="no train"):
        train(store, tmp_path / "a", "faa_supervised", rounds=1)
    with pytest.raises(ValueError, match="unsupervised"):
        train(store, tmp_path / "b", "faa", rounds=1, extra=["data.link=identity"])
    summary = train(store, tmp_path / "c", "faa_supervised", rounds=1, extra=["data.link=identity"])
    assert summary["rounds"] == 1 and (tmp_path / "c" / "best").is_dir()


def test_evaluate_writes_the_report_when_truth_is_no_world(tiny_world, tmp_path):
    """A data folder with a truth/ folder that is not a synthetic world: the report is written, no oracle, one line."""
    import shutil

    train(tiny_world, tmp_path / "run", rounds=1)
    store = tmp_path / "store"
    shutil.copytree(tiny_world / "features", store)  # a plain feature store ...
    shutil.copytree(tiny_world / "protocol", store / "protocol")
    (store / "truth").mkdir()  # ... with a folder named truth/ that holds no world
    lines: list[str] = []
    report = evaluate(str(tmp_path / "run" / "best"), store, tmp_path / "eval", log=lines.append)
    saved = json.loads((tmp_path / "eval" / "report.json").read_text())
    assert set(saved["lists"]) == set(report["lists"]) and "verify_v2f_test" in saved["lists"]
    assert "oracle" not in saved and (tmp_path / "eval" / "report.md").is_file()
    # a world whose oracle fails: the model's report stays, the failure is one line in the log and the report
    world = tmp_path / "world"
    shutil.copytree(tiny_world, world)
    shutil.rmtree(world / "truth")
    (world / "truth").mkdir()
    lines.clear()
    report = evaluate(str(tmp_path / "run" / "best"), world, tmp_path / "eval2", log=lines.append)
    saved = json.loads((tmp_path / "eval2" / "report.json").read_text())
    assert set(saved["lists"]) == set(report["lists"]) and "lists" not in saved.get("oracle", {})
    failed = [l for l in lines if l.startswith("oracle: not computed")]
    assert len(failed) == 1 and "\n" not in failed[0] and saved["oracle"]["error"] in failed[0]


def test_retrieval_1_to_n_curves_use_the_pair_scoring_not_cosine():
    """Under fusion scoring the 1:N curves of a retrieval entry come from the same scores as everything else."""
    from faa_core.protocols import Protocol, RetrievalList
    from training.eval.evaluate import evaluate_protocol
    from training.features import ItemTable

    n_id, per = 12, 3
    ident = [f"id{k:02d}" for k in range(n_id) for _ in range(per)]
    voice = ItemTable([f"v{k}" for k in range(len(ident))], [f"x{k}" for k in range(len(ident))], ident, ["test"] * len(ident))
    face = ItemTable([f"f{k}" for k in range(len(ident))], [f"y{k}" for k in range(len(ident))], ident, ["test"] * len(ident))
    rl = RetrievalList("reterival_v2f_test", voice.ids, face.ids, voice.identities, face.identities)
    proto = Protocol("test", {}, retrieval={rl.name: rl})
    codes = np.repeat(np.arange(n_id), per)
    rng = np.random.default_rng(0)
    # the pair scorer knows the answer (distinct values: no ties); the cosine matrix is noise
    pair = lambda v, f: (codes[v] == codes[f]) + 0.01 * rng.random(len(v))  # noqa: E731
    noise = rng.standard_normal((len(ident), len(ident)))
    lists = evaluate_protocol(proto, voice, face, pair, lambda v, f: noise)
    curve = lists["reterival_v2f_test"]["v2f_matching_1_to_n"]
    assert set(curve) == {str(n) for n in range(2, 11)}
    assert all(value == 1.0 for value in curve.values())  # before: about 1/N (the noise matrix)


def test_one_to_n_lists_split_credit_on_ties(tmp_path):
    """One definition of 1:N accuracy (faa_core.metrics): a tie at the top earns 1 / (number tied)."""
    from training.features import ItemTable
    from training.eval.one_to_n import evaluate_one_to_n

    voice = ItemTable(["v0", "v1"], ["a", "b"], ["p", "q"], ["test"] * 2)
    face = ItemTable(["f0", "f1", "f2"], ["a", "b", "c"], ["p", "q", "r"], ["test"] * 3)
    (tmp_path / "sl_match_v2f_3_test.txt").write_text("v0 f0 f1 f2\nv1 f1 f0 f2\n")
    truth = {(0, 0): 0.5, (0, 1): 0.5, (0, 2): 0.1, (1, 1): 0.7, (1, 0): 0.7, (1, 2): 0.7}
    out = evaluate_one_to_n(tmp_path, voice, face, lambda v, f: np.array([truth[(a, b)] for a, b in zip(v, f)]))
    assert out["sl_match_v2f_3_test"]["value"] == pytest.approx((1 / 2 + 1 / 3) / 2)  # before: 0.0


def test_clustering_both_spaces_puts_input_and_learned_side_by_side(tiny_world, tmp_path, monkeypatch):
    """`clustering.space=both` clusters [input pooled ; learned pooled], each exactly as its own space pools it."""
    import training.loop.trainer as trainer_mod

    seen = {}
    real = trainer_mod.kmeans

    def spy(x, k, **kw):
        seen.setdefault("pooled", []).append(np.array(x))
        return real(x, k, **kw)

    monkeypatch.setattr(trainer_mod, "kmeans", spy)
    pooled = {}
    for space in ("input", "learned", "both"):
        cfg = load_config("faa", FAST + ["schedule.max_rounds=1", f"clustering.space={space}"])
        trainer = Trainer(cfg, tiny_world, tmp_path / space, progress=False)
        seen.clear()
        trainer.round_labels(0)
        pooled[space] = seen["pooled"][0]
    width = pooled["input"].shape[1]
    assert pooled["both"].shape == (pooled["input"].shape[0], width + pooled["learned"].shape[1])
    np.testing.assert_array_equal(pooled["both"][:, :width], pooled["input"])
    np.testing.assert_allclose(pooled["both"][:, width:], pooled["learned"], atol=1e-6)
