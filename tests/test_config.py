"""training.config: YAML configs, merging, command-line overrides, and refusing what cannot be right."""

import pytest

from training.config import DEFAULTS, OBJECTIVES, ConfigError, config_differences, load_config, resolve_config
from training.loop.objectives import LOSSES, OBJECTIVES as TABLE


@pytest.mark.parametrize("name", OBJECTIVES)
def test_every_objective_config_loads(name):
    cfg = load_config(name)
    assert cfg["objective"] == name
    row = TABLE[name]
    # the objective's own defaults are resolved into the config
    assert cfg["loss"]["fvc"] == row.loss and cfg["loss"]["fvm"] is row.trains_fvm
    assert cfg["clustering"]["space"] == row.clustering_space


def test_objective_rows_resolve_as_the_configs_used_to_say():
    faa, sl, wen, sup = (load_config(n) for n in ("faa", "sl", "wen2021_variant", "faa_supervised"))
    # faa: multi-similarity since the suite table (it was infonce before)
    assert (faa["loss"]["fvc"], faa["loss"]["fvm"], faa["clustering"]["space"]) == ("multi_similarity", True, "input")
    assert (sl["loss"]["fvc"], sl["loss"]["fvm"], sl["clustering"]["space"]) == ("multi_similarity", False, "learned")
    assert (wen["loss"]["fvc"], wen["loss"]["fvm"]) == ("wen_two_level", False)
    assert (load_config("wen2021")["loss"]["fvc"], load_config("cca")["clustering"]["space"]) == ("wen2021", "input")
    assert (sup["loss"]["fvc"], sup["loss"]["fvm"]) == ("infonce", True)
    assert set(LOSSES) >= {row.loss for row in TABLE.values()}


def test_configs_merge_left_to_right_then_overrides():
    cfg = load_config(["faa", "small"], ["model.d_model=32"])
    assert cfg["objective"] == "faa"  # from faa.yaml
    assert cfg["optim"]["batch_size"] == 128  # small.yaml resizes faa.yaml's 256
    assert cfg["model"]["d_model"] == 32  # the override wins
    assert cfg["clustering"]["start_fraction"] == 0.15  # faa.yaml's, untouched by small.yaml
    assert cfg["model"]["mlp_ratio"] == 4.0  # FAAConfig's default, the one source of model defaults


def test_yaml_one_point_one_exponents_are_numbers():
    assert load_config("faa", ["optim.lr=3e-4"])["optim"]["lr"] == 3e-4  # PyYAML reads 3e-4 as a string


@pytest.mark.parametrize("override, message", [
    ("clustring.fixed=true", "override clustring.fixed=true: unknown key 'clustring' (did you mean 'clustering'?)"),
    ("clustering.niterr=3", "override clustering.niterr=3: unknown key 'clustering.niterr' (did you mean 'clustering.niter'?)"),
    ("optim.lr=abc", "optim.lr=abc: must be a number > 0"),
    ("optim.lr=0", "optim.lr=0: must be a number > 0"),
    ("optim.batch_size=0", "optim.batch_size=0: must be an integer >= 2"),
    ("optim.batch_size=-4", "optim.batch_size=-4: must be an integer >= 2"),
    ("optim.batch_size=12.5", "optim.batch_size=12.5: must be an integer >= 2"),
    ("schedule.max_rounds=-1", "schedule.max_rounds=-1: must be an integer >= 0"),
    ("schedule.steps_per_round=0", "schedule.steps_per_round=0: must be an integer >= 1"),
    ("clustering.start_fraction=1.5", "clustering.start_fraction=1.5: must be a number in (0, 1]"),
    ("loss.fvm=yes please", "loss.fvm=yes please: must be true or false"),
    ("validation.scoring=fusoin", "validation.scoring=fusoin: must be one of fusion, cosine, combined"),
    ("optim.name=adamw", "optim.name=adamw: must be one of adam, sgd"),
    ("seed=-1", "seed=-1: must be an integer >= 0"),
    ("model.face_dim=3", "override model.face_dim=3: model.face_dim comes from the data's features; remove it"),
    ("model.d_model=30", "model: d_model 30 is not divisible by n_heads 4"),
    ("model.dropout=1.5", "model.dropout must be in [0, 1), got 1.5"),
    ("optim.lr.x=1", "override optim.lr.x=1: optim.lr is a value, not a config section"),
    ("loss.fvc=wen_two_level", "loss.fvc=wen_two_level: objective faa trains with multi_similarity or infonce"),
    ("data.link=identity", "data.link=identity uses identity labels; objective faa is unsupervised "
                           "(use faa_supervised or wen2021, or face-track frames that share videos)"),
])
def test_bad_overrides_are_refused_in_one_line(override, message):
    with pytest.raises(ConfigError) as err:
        load_config("faa", [override])
    assert str(err.value) == message


def test_objective_without_a_match_head_refuses_fvm():
    with pytest.raises(ConfigError, match="objective sl does not train the match head"):
        load_config("sl", ["loss.fvm=true"])
    assert load_config("sl", ["loss.fvm=false"])["loss"]["fvm"] is False


def test_unknown_keys_in_a_file_name_the_file_and_the_nearest_key(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("objective: faa\nclustring: {fixed: true}\n")
    with pytest.raises(ConfigError) as err:
        load_config(str(bad))
    assert str(err.value) == f"{bad}: unknown key 'clustring' (did you mean 'clustering'?)"
    bad.write_text("optim: {lr: 0.1, batchsize: 4}\n")
    with pytest.raises(ConfigError, match=r"unknown key 'optim.batchsize' \(did you mean 'optim.batch_size'\?\)"):
        load_config(str(bad))
    bad.write_text("optim: [1, 2]\n")
    with pytest.raises(ConfigError, match="optim must be a mapping"):
        load_config(str(bad))
    bad.write_text("optim: {lr: [\n")
    with pytest.raises(ConfigError, match="not valid YAML at line"):
        load_config(str(bad))


def test_bad_configs_and_overrides_are_specific(tmp_path):
    with pytest.raises(FileNotFoundError, match="no-such"):
        load_config("no-such")
    with pytest.raises(ConfigError, match="section.key=value"):
        load_config("faa", ["optim.lr"])
    bad = tmp_path / "bad.yaml"
    bad.write_text("objective: nope\n")
    with pytest.raises(ConfigError, match="objective=nope: must be one of faa, sl"):
        load_config(str(bad))
    with pytest.raises(ConfigError, match="no config"):
        load_config([])


def test_resolve_is_idempotent_and_fills_a_partial_config():
    full = load_config(["faa", "small"])
    assert resolve_config(full) == full
    partial = resolve_config({"objective": "sl", "optim": {"lr": 0.01}})
    assert partial["optim"]["lr"] == 0.01 and partial["optim"]["batch_size"] == DEFAULTS["optim"]["batch_size"]
    assert partial["loss"]["fvc"] == "multi_similarity"


def test_config_differences_list_each_changed_key():
    a = load_config("faa")
    b = load_config("faa", ["optim.lr=0.002", "pairs.hard_negatives=false"])
    assert config_differences(a, b) == ["optim.lr: 0.001 -> 0.002", "pairs.hard_negatives: true -> false",
                                        "pairs.negatives: hard -> uniform"]  # resolved from hard_negatives
    assert config_differences(a, a) == []
