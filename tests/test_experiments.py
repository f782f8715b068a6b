"""training.experiments: the table command on the tiny world (2 methods x 2 seeds)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from training.experiments import format_table, read_spec, run_table

SPEC = """
world: {preset: tiny, seed: 0}
seeds: [0, 1]
scale: small
methods:
  - {name: raw cosine, config: faa, overrides: [schedule.max_rounds=0, loss.fvm=false], scoring: [cosine]}
  - {name: FAA, config: faa, overrides: [schedule.max_rounds=2, schedule.steps_per_round=5, optim.batch_size=16],
     scoring: [fusion, cosine]}
"""


@pytest.fixture(scope="module")
def table_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("table")
    (out / "spec.yaml").write_text(SPEC)
    run_table(str(out / "spec.yaml"), out / "result", jobs=1)
    return out


def test_table_has_every_method_scoring_and_the_oracle(table_dir):
    data = json.loads((table_dir / "result" / "table.json").read_text())
    rows = {(r["method"], r["scoring"]): r for r in data["table"]["rows"]}
    assert set(rows) == {("raw cosine", "cosine"), ("FAA", "fusion"), ("FAA", "cosine")}
    results = [r for r in data["results"] if r["method"] == "FAA"]
    assert sorted(r["seed"] for r in results) == [0, 1]
    # the table's mean +- std is the seeds' own numbers
    vals = [np.mean([r["fusion"]["verify_v2f_test"], r["fusion"]["verify_f2v_test"]]) for r in results]
    mean, std = rows[("FAA", "fusion")]["columns"]["verif. AUC"]
    assert mean == pytest.approx(np.mean(vals)) and std == pytest.approx(np.std(vals))
    # attention is measured for the fusion model against the world's informative region
    att = rows[("FAA", "fusion")]
    assert 0.0 <= att["face_mass"][0] <= 1.0 and att["face_share"] == pytest.approx(0.25)
    assert "face_mass" not in rows[("raw cosine", "cosine")]
    oracle = data["table"]["oracle"]
    assert 0.5 < oracle["verif. AUC"] <= 1.0
    md = (table_dir / "result" / "table.md").read_text()
    assert "| oracle |" in md and "FAA" in md


def test_second_run_reuses_finished_runs(table_dir):
    result = table_dir / "result" / "runs" / "faa_seed0" / "result.json"
    before = result.stat().st_mtime_ns
    table = run_table(str(table_dir / "spec.yaml"), table_dir / "result", jobs=1)
    assert result.stat().st_mtime_ns == before
    assert "FAA" in format_table(table)


def test_spec_errors_are_specific(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("world: {preset: tiny}\nmethods: []\n")
    with pytest.raises(ValueError, match="seeds"):
        read_spec(str(bad))
    with pytest.raises(FileNotFoundError):
        read_spec("no-such-spec")
