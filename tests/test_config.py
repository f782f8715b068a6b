"""training.config: YAML configs, merging and command-line overrides."""

import pytest

from training.config import OBJECTIVES, load_config


@pytest.mark.parametrize("name", OBJECTIVES)
def test_every_objective_config_loads(name):
    assert load_config(name)["objective"] == name


def test_configs_merge_left_to_right_then_overrides():
    cfg = load_config(["faa", "small"], ["model.d_model=32"])
    assert cfg["objective"] == "faa"  # from faa.yaml
    assert cfg["optim"]["batch_size"] == 128  # small.yaml resizes faa.yaml's 256
    assert cfg["model"]["d_model"] == 32  # the override wins
    assert cfg["clustering"]["space"] == "input"  # faa.yaml's, untouched by small.yaml


def test_bad_configs_and_overrides_are_specific(tmp_path):
    with pytest.raises(FileNotFoundError, match="no-such"):
        load_config("no-such")
    with pytest.raises(ValueError, match="unknown key"):
        load_config("faa", ["optim.nonsense=1"])
    with pytest.raises(ValueError, match="section.key=value"):
        load_config("faa", ["optim.lr"])
    bad = tmp_path / "bad.yaml"
    bad.write_text("objective: nope\n")
    with pytest.raises(ValueError, match="objective"):
        load_config(str(bad))
    with pytest.raises(ValueError, match="no config"):
        load_config([])
