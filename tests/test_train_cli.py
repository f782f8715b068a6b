"""Bad input to the training commands ends in one line on stderr (exit code 2), tracebacks only with --debug."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from training.loop.train import main as train_main

PROG = "python -m training.train: error: "
TAIL = " (add --debug for the traceback)\n"
FAST = [
    "schedule.steps_per_round=4", "optim.batch_size=16", "validation.trials=60", "model.d_model=16",
    "model.n_heads=2", "model.n_layers=1", "model.proj_hidden=16", "model.embed_dim=8",
]


@pytest.fixture(scope="module")
def tiny_world(tmp_path_factory) -> Path:
    from training.synth import build_world

    out = tmp_path_factory.mktemp("world") / "tiny"
    build_world(preset="tiny", seed=0, out=out)
    return out


def _store(world: Path, folder: Path) -> Path:
    shutil.copytree(world / "features", folder)  # a stored feature store of its own
    return folder


def _train(data: Path, out: Path, *extra: str) -> list[str]:
    return ["--config", "faa", "--data", str(data), "--out", str(out), "--no-progress", "--device", "cpu",
            *FAST, *extra]


def _one_line(capsys) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(PROG) and err.endswith(TAIL), err
    return err[len(PROG):-len(TAIL)]


@pytest.mark.parametrize("override, message", [
    ("optim.lr=abc", "optim.lr=abc: must be a number > 0"),
    ("optim.batch_size=0", "optim.batch_size=0: must be an integer >= 2"),
    ("schedule.max_rounds=-1", "schedule.max_rounds=-1: must be an integer >= 0"),
    ("clustring.fixed=true", "override clustring.fixed=true: unknown key 'clustring' (did you mean 'clustering'?)"),
])
def test_bad_config_values(tiny_world, tmp_path, capsys, override, message):
    assert train_main(_train(tiny_world, tmp_path / "run", override)) == 2
    assert _one_line(capsys) == message
    assert not (tmp_path / "run").exists()


def test_debug_shows_the_traceback(tiny_world, tmp_path):
    with pytest.raises(ValueError, match="optim.lr=abc"):
        train_main(_train(tiny_world, tmp_path / "run", "optim.lr=abc", "--debug"))


def test_out_on_an_existing_file(tiny_world, tmp_path, capsys):
    out = tmp_path / "run.txt"
    out.write_text("not a run")
    assert train_main(_train(tiny_world, out)) == 2
    assert _one_line(capsys) == f"--out {out} is a file; give a folder for the run (a new one, or a run to resume)"
    assert out.read_text() == "not a run"


def test_invalid_store_json_is_named(tiny_world, tmp_path, capsys):
    store = _store(tiny_world, tmp_path / "store")
    (store / "store.json").write_text('{"format": "faa-features", ')
    assert train_main(_train(store, tmp_path / "run")) == 2
    msg = _one_line(capsys)
    assert msg.startswith(f"{store / 'store.json'}: invalid JSON (") and msg.endswith("(re-run what made the folder)")
    (store / "store.json").write_text('{"format": "faa-features", "version": 1}')
    assert train_main(_train(store, tmp_path / "run")) == 2
    assert _one_line(capsys) == (f"{store / 'store.json'}: no 'modalities' mapping, so not a feature store "
                                 "(re-run the extraction that made it)")


def test_a_nan_global_vector_is_named(tiny_world, tmp_path, capsys):
    from training.features import FeatureStore

    store = _store(tiny_world, tmp_path / "store")
    g = np.load(store / "voice" / "shard-00001.global.npy", mmap_mode="r+")
    g[5, 3] = np.nan  # item 64 + 5 of the voice store
    g.flush()
    del g
    item = str(FeatureStore(store)["voice"].ids[69])
    assert train_main(_train(store, tmp_path / "run")) == 2
    assert _one_line(capsys) == (f"voice item {item!r} in {store} has NaN/inf values in its global vector; "
                                 "re-extract it or remove it from the store")


def test_nan_tokens_are_named_when_a_step_meets_them(tiny_world, tmp_path, capsys):
    """Tokens are too many to scan up front: a NaN loss is traced back to the item whose tokens are damaged."""
    from training.features import FeatureStore

    store = _store(tiny_world, tmp_path / "store")
    t = np.load(store / "voice" / "shard-00000.tokens.npy", mmap_mode="r+")
    t[:] = np.inf  # every token of the first 64 voice items
    t.flush()
    del t
    damaged = {str(i) for i in FeatureStore(store)["voice"].ids[:64]}
    assert train_main(_train(store, tmp_path / "run", "schedule.max_rounds=1")) == 2
    msg = _one_line(capsys)
    prefix, _, rest = msg.partition(" in ")
    assert prefix.startswith("voice item ") and prefix[len("voice item "):].strip("'") in damaged
    assert rest == f"{store} has NaN/inf values in its tokens; re-extract it or remove it from the store"


def test_resuming_with_another_config_is_refused_unless_allowed(tiny_world, tmp_path, capsys):
    run = tmp_path / "run"
    assert train_main(_train(tiny_world, run, "schedule.max_rounds=1")) == 0
    capsys.readouterr()
    before = (run / "state.pt").read_bytes()
    assert train_main(_train(tiny_world, run, "schedule.max_rounds=1", "optim.lr=0.002",
                             "clustering.niter=5")) == 2
    assert _one_line(capsys) == (
        f"{run} was started with another config (clustering.niter: 20 -> 5; optim.lr: 0.001 -> 0.002); "
        "resume with the same config, use a new --out folder, or pass --allow-config-change")
    assert (run / "state.pt").read_bytes() == before  # nothing touched
    # more rounds only say where the run stops: resumed without a flag
    assert train_main(_train(tiny_world, run, "schedule.max_rounds=2")) == 0
    assert json.loads(capsys.readouterr().out)["rounds"] == 2
    with pytest.warns(UserWarning, match=r"changed config: optim.lr: 0.001 -> 0.002"):
        assert train_main(_train(tiny_world, run, "schedule.max_rounds=3", "optim.lr=0.002",
                                 "--allow-config-change")) == 0
    assert json.loads((run / "config.json").read_text())["optim"]["lr"] == 0.002
    changes = [json.loads(line) for line in (run / "config_changes.jsonl").read_text().splitlines()]
    assert changes == [{"round": 2, "changes": ["optim.lr: 0.001 -> 0.002"]}]


def test_evaluate_and_publish_bad_input_is_one_line(tiny_world, tmp_path, capsys):
    from training.evaluate import main as evaluate_main
    from training.publish import main as publish_main

    missing = tmp_path / "no-checkpoint"
    assert evaluate_main(["--checkpoint", str(missing), "--data", str(tiny_world), "--out", str(tmp_path / "e")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("python -m training.evaluate: error: ") and err.count("\n") == 1 and str(missing) in err
    assert publish_main(["--run", str(tmp_path / "no-run"), "--report", str(tmp_path / "r.json"),
                         "--out", str(tmp_path / "p")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("python -m training.publish: error: ") and err.count("\n") == 1 and "no-run" in err
    with pytest.raises(Exception):
        evaluate_main(["--checkpoint", str(missing), "--data", str(tiny_world), "--out", str(tmp_path / "e"), "--debug"])
