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
    masses = [r["attention"]["face_mass"] for r in results]
    assert att["face_mass"] == pytest.approx((np.mean(masses), np.std(masses))) and att["face_share"] == pytest.approx(0.25)
    assert "face_mass" not in rows[("raw cosine", "cosine")]
    oracle = data["table"]["oracle"]
    assert 0.5 < oracle["verif. AUC"] <= 1.0
    md = (table_dir / "result" / "table.md").read_text()
    assert "| oracle |" in md and "FAA" in md


def test_second_run_reuses_finished_runs(table_dir):
    (result,) = (table_dir / "result" / "runs").glob("faa_seed0_*/result.json")
    before = result.stat().st_mtime_ns
    table = run_table(str(table_dir / "spec.yaml"), table_dir / "result", jobs=1)
    assert result.stat().st_mtime_ns == before
    assert "FAA" in format_table(table)


RAW = """
world: {{preset: tiny, seed: 0}}
seeds: [0]
scale: small
methods:
  - {{name: raw cosine, config: faa, overrides: [schedule.max_rounds=0, loss.fvm=false{extra}], scoring: [cosine]}}
"""


def test_a_changed_override_does_not_reuse_the_old_result(tmp_path):
    spec = tmp_path / "spec.yaml"
    spec.write_text(RAW.format(extra=""))
    run_table(str(spec), tmp_path / "out", jobs=1)
    (first,) = (tmp_path / "out" / "runs").glob("raw_cosine_seed0_*/result.json")
    before = first.stat().st_mtime_ns
    spec.write_text(RAW.format(extra=", model.embed_dim=16"))
    table = run_table(str(spec), tmp_path / "out", jobs=1)
    runs = sorted((tmp_path / "out" / "runs").glob("raw_cosine_seed0_*/result.json"))
    assert len(runs) == 2 and first.stat().st_mtime_ns == before  # a new run; the old one untouched
    new = json.loads(next(r for r in runs if r != first).read_text())
    assert new["config"]["model"]["embed_dim"] == 16
    old = json.loads(first.read_text())
    assert old["config"]["model"]["embed_dim"] == 64 and old["key"] != new["key"]
    got = table["rows"][0]["columns"]["verif. AUC"][0]
    assert got == pytest.approx(np.mean([new["cosine"]["verify_v2f_test"], new["cosine"]["verify_f2v_test"]]))


def test_data_runs_a_spec_on_a_store_without_an_oracle(table_dir, tmp_path):
    import shutil

    world = next((table_dir / "result").glob("world_tiny_0"))
    store = tmp_path / "store"
    shutil.copytree(world / "features", store)  # a plain store: no world.json, no truth/
    shutil.copytree(world / "protocol", store / "protocol")
    spec = tmp_path / "spec.yaml"
    spec.write_text(RAW.format(extra=""))
    table = run_table(str(spec), tmp_path / "out", jobs=1, data=store)
    assert table["oracle"] is None and table["data"] == str(store)
    assert not (tmp_path / "out" / "world_tiny_0").exists()  # the spec's world was not built
    md = (tmp_path / "out" / "table.md").read_text()
    assert "| raw cosine | cosine |" in md and "oracle" not in md


def test_spec_errors_are_specific(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("world: {preset: tiny}\nmethods: []\n")
    with pytest.raises(ValueError, match="seeds"):
        read_spec(str(bad))
    with pytest.raises(FileNotFoundError):
        read_spec("no-such-spec")
    bad.write_text("world: {preset: tiny}\nseeds: [0]\nmethod: []\n")
    with pytest.raises(ValueError, match=r"unknown key 'method' \(did you mean 'methods'\?\)"):
        read_spec(str(bad))
    bad.write_text("world: {preset: tiny}\nseeds: [0]\nmethods: [{name: a, config: faa, overides: []}]\n")
    with pytest.raises(ValueError, match=r"methods\[0\]: unknown key 'overides' \(did you mean 'overrides'\?\)"):
        read_spec(str(bad))


def test_main_bad_input_is_one_line(tmp_path, capsys):
    from training.experiments import main

    spec = tmp_path / "spec.yaml"
    spec.write_text(RAW.format(extra=", optim.lr=abc"))
    assert main(["--spec", str(spec), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err == ("python -m training.experiments: error: method 'raw cosine': optim.lr=abc: must be a number > 0 "
                   "(add --debug for the traceback)\n")
    assert not (tmp_path / "out").exists()  # refused before any work
    with pytest.raises(ValueError, match="optim.lr=abc"):
        main(["--spec", str(spec), "--out", str(tmp_path / "out"), "--debug"])


def test_suite_spec_errors_are_specific(tmp_path):
    bad = tmp_path / "bad.yaml"
    methods = "seeds: [0]\nmethods: [{name: a, config: faa}]\n"
    bad.write_text("world: {preset: tiny}\nworlds: {names: suite}\n" + methods)
    with pytest.raises(ValueError, match="one of 'world' .* or 'worlds' .*, not both or neither"):
        read_spec(str(bad))
    bad.write_text("worlds: {names: 3}\n" + methods)
    with pytest.raises(ValueError, match="worlds.names must be 'suite'"):
        read_spec(str(bad))
    bad.write_text("worlds: {names: suite}\ntargets: {rows: FAA/fusion}\n" + methods)
    with pytest.raises(ValueError, match=r"targets: unknown key 'rows' \(did you mean 'row'\?\)"):
        read_spec(str(bad))
    bad.write_text("worlds: {names: [tiny]}\n" + methods)
    with pytest.raises(ValueError, match="--data names one folder, but this spec is a suite"):
        run_table(str(bad), tmp_path / "out", data=str(tmp_path))


def test_the_shipped_suite_spec_resolves_every_method():
    from training.experiments import method_config, suite_world_names
    from training.synth.presets import suite_names

    spec = read_spec("suite")
    assert suite_world_names(spec) == suite_names() and len(suite_names()) == 4
    for m in spec["methods"]:
        method_config(spec, m, 0)  # every override is valid


def test_suite_target_keys_are_checked(tmp_path):
    bad = tmp_path / "bad.yaml"
    head = "worlds: {names: suite}\nseeds: [0]\nmethods: [{name: a, config: faa}]\n"
    bad.write_text(head + "targets: {row: a/cosine, g_floor: {value: 0.6, where_oracle_atleast: 0.75}}\n")
    with pytest.raises(ValueError, match=r"targets.g_floor: unknown key 'where_oracle_atleast' "
                                         r"\(did you mean 'where_oracle_at_least'\?\)"):
        read_spec(str(bad))
    bad.write_text(head + "targets: {row: a/cosine, ceiling_share: {ceiling: probe_tokens}}\n")
    with pytest.raises(ValueError, match=r"targets.ceiling_share needs a 'value'"):
        read_spec(str(bad))
