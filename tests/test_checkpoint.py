"""Tests for faa_core.checkpoint: round trips, the model card, and a CheckpointError for every bad folder."""

from __future__ import annotations

import json
import os
import pickle
import shutil
import struct
from pathlib import Path

import pytest
import torch

import faa_core
from faa_core.checkpoint import (
    CARD_FILE,
    FORMAT,
    FORMAT_VERSION,
    README_FILE,
    WEIGHTS_FILE,
    default_encoders,
    load_checkpoint,
    read_card,
    save_checkpoint,
)
from faa_core.errors import CheckpointError, FAAError
from faa_core.model import FAAConfig, FAAModel
from model_fixtures import SMALL_CONFIG, SMALL_TRAINED_ON, fake_features, make_small_model

SYNTHETIC_WARNING = "Trained on synthetic features, not on real people"


@pytest.fixture(scope="module")
def original() -> FAAModel:
    with torch.random.fork_rng(devices=[]):
        return make_small_model()


@pytest.fixture
def ckpt(small_checkpoint, tmp_path) -> Path:
    """A private copy of the session checkpoint, free to break."""
    return Path(shutil.copytree(small_checkpoint, tmp_path / "ckpt"))


def _card(folder: Path) -> dict:
    return json.loads((folder / CARD_FILE).read_text())


def _write_card(folder: Path, card: dict) -> None:
    (folder / CARD_FILE).write_text(json.dumps(card))


def _outputs(model: FAAModel) -> torch.Tensor:
    v, f, vt, ft = fake_features(3, t=5, seed=42)
    mask = torch.ones(3, 5, dtype=torch.bool)
    mask[1, 3:] = False
    with torch.no_grad():
        out = model.match(v, f, vt, ft, voice_mask=mask, need_weights=True)
    return torch.cat([out.logits.flatten(), out.face_attention.flatten(), out.voice_attention.flatten()])


# --------------------------------------------------------------------------- round trip


def test_round_trip_identical_outputs(small_checkpoint, original):
    model, card = load_checkpoint(small_checkpoint)
    assert isinstance(model, FAAModel)
    assert not model.training
    assert model.config == original.config == FAAConfig(**SMALL_CONFIG)
    for k, v in original.state_dict().items():
        assert torch.equal(model.state_dict()[k], v), k
    assert torch.equal(_outputs(model), _outputs(original))


def test_round_trip_card_fields(small_checkpoint, original):
    _, card = load_checkpoint(small_checkpoint)
    assert card["format"] == FORMAT == "faa-checkpoint"
    assert card["format_version"] == FORMAT_VERSION == 1
    assert card["faa_core_version"] == faa_core.__version__
    assert card["synthetic"] is True
    assert card["trained_on"] == SMALL_TRAINED_ON
    assert card["evaluation"] == {}
    assert card["model_config"] == original.config.to_dict()
    assert card["encoders"] == json.loads(json.dumps(default_encoders(original.config)))
    face, voice = card["encoders"]["face"], card["encoders"]["voice"]
    assert (face["global_dim"], face["token_dim"], face["token_grid"]) == (512, 896, [8, 8])
    assert (voice["global_dim"], voice["token_dim"], voice["token_rate_per_s"]) == (192, 1024, 4.0)
    assert "20180402-114759-vggface2.pt" in face["weights"] and "spkrec-ecapa-voxceleb" in voice["weights"]
    assert read_card(small_checkpoint) == card


def test_saved_files(small_checkpoint):
    assert sorted(p.name for p in small_checkpoint.iterdir()) == sorted([WEIGHTS_FILE, CARD_FILE, README_FILE])


def test_readme_with_synthetic_warning(small_checkpoint):
    text = (small_checkpoint / README_FILE).read_text()
    assert text.startswith("# FAA voice-face association checkpoint")
    assert SYNTHETIC_WARNING in text
    assert "none (random init, tests)" in text
    assert "## Encoders" in text and "## Model config" in text
    assert f"Format {FORMAT} v{FORMAT_VERSION}" in text


def test_save_real_card_with_evaluation_and_extra(tmp_path, original):
    evaluation = {"verification_auc": 0.81, "matching_accuracy_1_2": 0.77}
    out = save_checkpoint(
        tmp_path / "real",
        original,
        trained_on={"data": "VoxCeleb1 train split", "epochs": 3},
        evaluation=evaluation,
        extra={"notes": "unit test"},
    )
    assert out == tmp_path / "real"
    model, card = load_checkpoint(out)
    assert card["synthetic"] is False
    assert card["evaluation"] == evaluation
    assert card["notes"] == "unit test"
    readme = (out / README_FILE).read_text()
    assert SYNTHETIC_WARNING not in readme
    assert "## Evaluation" in readme and "0.81" in readme and "VoxCeleb1" in readme
    assert torch.equal(_outputs(model), _outputs(original))


def test_save_defaults_and_custom_encoders(tmp_path, original):
    out = save_checkpoint(tmp_path / "c", original, encoders={"face": {"name": "x", "weights": "y"}})
    card = _card(out)
    assert card["trained_on"] == {"data": "unknown"} and card["synthetic"] is False
    assert card["encoders"] == {"face": {"name": "x", "weights": "y"}}


def test_global_only_checkpoint(tmp_path):
    cfg = FAAConfig(**dict(SMALL_CONFIG, face_token_dim=0, voice_token_dim=0))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(3)
        model = FAAModel(cfg).eval()
    out = save_checkpoint(tmp_path / "g", model)
    loaded, card = load_checkpoint(str(out))  # a str path works too
    assert loaded.config.global_only
    assert card["encoders"]["face"]["token_layer"] is None
    assert card["encoders"]["voice"]["token_rate_per_s"] is None
    v, f, _, _ = fake_features(2)
    with torch.no_grad():
        torch.testing.assert_close(loaded.match(v, f).logits, model.match(v, f).logits, atol=0, rtol=0)


def test_cosine_residual_checkpoint_round_trip(tmp_path):
    """A model with the cosine-residual head saves its gain and loads to the same logits; a card that
    says cosine_residual with a non-boolean is refused."""
    cfg = FAAConfig(**dict(SMALL_CONFIG, cosine_residual=True))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(4)
        model = FAAModel(cfg).eval()
    with torch.no_grad():
        model.fusion.cosine_gain.fill_(7.5)
    out = save_checkpoint(tmp_path / "r", model)
    loaded, card = load_checkpoint(out)
    assert card["model_config"]["cosine_residual"] is True and float(loaded.fusion.cosine_gain.detach()) == 7.5
    v, f, vt, ft = fake_features(3)
    with torch.no_grad():
        torch.testing.assert_close(loaded.match(v, f, vt, ft).logits, model.match(v, f, vt, ft).logits, atol=0, rtol=0)
    card["model_config"]["cosine_residual"] = "yes"
    (out / "config.json").write_text(json.dumps(card))
    with pytest.raises(CheckpointError, match="cosine_residual must be true or false"):
        load_checkpoint(out)


def test_save_over_existing_checkpoint(ckpt):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(9)
        other = FAAModel(FAAConfig(**SMALL_CONFIG)).eval()
    save_checkpoint(ckpt, other, trained_on={"data": "second"})
    model, card = load_checkpoint(ckpt)
    assert card["trained_on"] == {"data": "second"} and card["synthetic"] is False
    assert torch.equal(_outputs(model), _outputs(other))
    assert sorted(p.name for p in ckpt.iterdir()) == sorted([WEIGHTS_FILE, CARD_FILE, README_FILE])  # no temp files


def test_save_trained_model_state_is_detached(tmp_path, original):
    model = make_small_model().train()
    model.logit_scale.data.fill_(3.25)
    out = save_checkpoint(tmp_path / "t", model)
    loaded, _ = load_checkpoint(out)
    assert loaded.logit_scale.item() == 3.25 and not loaded.training


def test_failed_save_leaves_existing_checkpoint_intact(ckpt, original):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(9)
        other = FAAModel(FAAConfig(**SMALL_CONFIG)).eval()
    with pytest.raises((TypeError, ValueError)):
        save_checkpoint(ckpt, other, evaluation={"speaker_ids": {1, 2, 3}})
    model, card = load_checkpoint(ckpt)
    assert card["trained_on"] == SMALL_TRAINED_ON
    assert torch.equal(_outputs(model), _outputs(original))


# --------------------------------------------------------------------------- no pickle


def test_weights_are_safetensors_not_pickle(small_checkpoint):
    data = (small_checkpoint / WEIGHTS_FILE).read_bytes()
    (header_len,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + header_len])
    assert header["__metadata__"] == {"format": FORMAT}
    assert "logit_scale" in header
    with pytest.raises(Exception):
        pickle.loads(data)


def test_loading_never_unpickles(small_checkpoint, monkeypatch, original):
    def refuse(*args, **kwargs):
        raise AssertionError("pickle was used")

    monkeypatch.setattr(torch, "load", refuse)
    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    model, _ = load_checkpoint(small_checkpoint)
    assert torch.equal(_outputs(model), _outputs(original))


# --------------------------------------------------------------------------- errors


def test_checkpoint_error_classes():
    assert issubclass(CheckpointError, FAAError) and issubclass(CheckpointError, ValueError)


def test_missing_folder(tmp_path):
    missing = tmp_path / "no" / "such" / "checkpoint"
    with pytest.raises(CheckpointError, match="not found") as info:
        load_checkpoint(missing)
    assert str(missing) in str(info.value)


def test_file_instead_of_folder(ckpt):
    with pytest.raises(CheckpointError, match="is a file") as info:
        load_checkpoint(ckpt / WEIGHTS_FILE)
    assert CARD_FILE in str(info.value)


def test_missing_config_json(ckpt):
    (ckpt / CARD_FILE).unlink()
    with pytest.raises(CheckpointError, match=f"{CARD_FILE} is missing") as info:
        load_checkpoint(ckpt)
    assert str(ckpt) in str(info.value)


def test_empty_folder(tmp_path):
    with pytest.raises(CheckpointError, match="not an FAA checkpoint"):
        load_checkpoint(tmp_path)


@pytest.mark.parametrize("text", ["{not json", "", '{"format": "faa-checkpoint",'])
def test_bad_json(ckpt, text):
    (ckpt / CARD_FILE).write_text(text)
    with pytest.raises(CheckpointError, match="not valid JSON") as info:
        load_checkpoint(ckpt)
    assert str(ckpt / CARD_FILE) in str(info.value)


def test_binary_config_json(ckpt):
    (ckpt / CARD_FILE).write_bytes(b"\xff\xfe\x00\x89 binary, not a card")
    with pytest.raises(CheckpointError):
        load_checkpoint(ckpt)


@pytest.mark.parametrize("card", [{"format": "something-else", "format_version": 1}, {"format_version": 1}, [1, 2], "text"])
def test_wrong_format(ckpt, card):
    (ckpt / CARD_FILE).write_text(json.dumps(card))
    with pytest.raises(CheckpointError, match="format must be"):
        load_checkpoint(ckpt)


@pytest.mark.parametrize("version", [FORMAT_VERSION + 1, 99, "1", None, 1.0])
def test_bad_or_future_format_version(ckpt, version):
    card = _card(ckpt)
    card["format_version"] = version
    _write_card(ckpt, card)
    with pytest.raises(CheckpointError, match="format_version") as info:
        load_checkpoint(ckpt)
    assert f"up to {FORMAT_VERSION}" in str(info.value)


def test_missing_model_config(ckpt):
    card = _card(ckpt)
    del card["model_config"]
    _write_card(ckpt, card)
    with pytest.raises(CheckpointError, match="bad model_config"):
        load_checkpoint(ckpt)


@pytest.mark.parametrize(
    "edit",
    [
        {"hidden_size": 64},  # unknown field
        {"n_heads": 3},  # 64 not divisible by 3
        {"d_model": -1},
    ],
)
def test_invalid_model_config(ckpt, edit):
    card = _card(ckpt)
    card["model_config"].update(edit)
    _write_card(ckpt, card)
    with pytest.raises(CheckpointError, match="bad model_config"):
        load_checkpoint(ckpt)


def test_missing_weights(ckpt):
    (ckpt / WEIGHTS_FILE).unlink()
    with pytest.raises(CheckpointError, match=f"no {WEIGHTS_FILE}") as info:
        load_checkpoint(ckpt)
    assert str(ckpt) in str(info.value)


@pytest.mark.parametrize("how", ["truncated", "garbage", "empty", "tiny"])
def test_corrupted_safetensors(ckpt, how):
    path = ckpt / WEIGHTS_FILE
    data = path.read_bytes()
    bad = {
        "truncated": data[: len(data) // 2],
        "garbage": os.urandom(4096),
        "empty": b"",
        "tiny": b"abc",
    }[how]
    path.write_bytes(bad)
    with pytest.raises(CheckpointError, match="cannot be read") as info:
        load_checkpoint(ckpt)
    assert str(path) in str(info.value)


def test_pickle_in_place_of_safetensors(ckpt):
    torch.save(make_small_model().state_dict(), ckpt / WEIGHTS_FILE)
    with pytest.raises(CheckpointError, match="cannot be read"):
        load_checkpoint(ckpt)


@pytest.mark.parametrize(
    "edit, match",
    [
        ({"d_model": 128}, "shape mismatches"),
        ({"embed_dim": 16}, "shape mismatches"),
        ({"n_layers": 2}, "missing"),
        ({"face_token_dim": 0, "voice_token_dim": 0}, "unexpected"),
        ({"face_grid": [4, 4]}, "face_pos"),
    ],
)
def test_config_weights_mismatch(ckpt, edit, match):
    card = _card(ckpt)
    card["model_config"].update(edit)
    _write_card(ckpt, card)
    with pytest.raises(CheckpointError, match="does not match its config") as info:
        load_checkpoint(ckpt)
    assert match in str(info.value)
    assert str(ckpt / WEIGHTS_FILE) in str(info.value)


def test_hub_like_id_offline(tmp_path, monkeypatch):
    import huggingface_hub.constants as hfc

    cache = tmp_path / "hf"
    cache.mkdir()
    monkeypatch.chdir(tmp_path)  # so the id cannot be a local folder
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(hfc, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(hfc, "HF_HUB_CACHE", str(cache))
    with pytest.raises(CheckpointError, match="someone/missing-repo") as info:
        load_checkpoint("someone/missing-repo")
    assert "Hugging Face Hub" in str(info.value)


def test_hub_like_id_prefers_local_folder(tmp_path, monkeypatch, small_checkpoint, original):
    (tmp_path / "someone").mkdir()
    shutil.copytree(small_checkpoint, tmp_path / "someone" / "local-ckpt")
    monkeypatch.chdir(tmp_path)
    model, _ = load_checkpoint("someone/local-ckpt")
    assert torch.equal(_outputs(model), _outputs(original))


# --------------------------------------------------------------------------- card values checked before anything is built


@pytest.mark.parametrize(
    "edit, match",
    [
        (lambda c: c["encoders"]["voice"].update(token_rate_per_s=-1), "token_rate_per_s must be a number in \\(0, 100\\]"),
        (lambda c: c["encoders"]["voice"].update(token_rate_per_s="abc"), "token_rate_per_s .* got 'abc'"),
        (lambda c: c["encoders"]["voice"].update(token_rate_per_s=float("nan")), "token_rate_per_s"),
        (lambda c: c.update(encoders="oops"), "encoders must be a JSON object, got str"),
        (lambda c: c["encoders"].update(voice=[1]), "encoders.voice must be a JSON object"),
        (lambda c: c.update(trained_on="x"), "trained_on must be a JSON object"),
        (lambda c: c.update(synthetic="yes"), "synthetic must be true or false"),
        (lambda c: c.update(model_config="x"), "model_config must be a JSON object"),
        (lambda c: c["model_config"].update(proj_hidden=500_000), "bad model_config: proj_hidden must be in \\[0, 65536\\]"),
        (lambda c: c["model_config"].update(d_model="abc"), "bad model_config: d_model must be an integer, got str"),
        (lambda c: c["model_config"].update(n_layers=True), "n_layers must be an integer, got bool"),
        (lambda c: c["model_config"].update(embed_dim=16.5), "embed_dim must be an integer"),
        (lambda c: c["model_config"].update(dropout="0.1"), "dropout must be a finite number"),
        (lambda c: c["model_config"].update(face_grid=[8, "8"]), "face_grid must be two integers"),
    ],
)
def test_card_values_are_validated(ckpt, edit, match):
    card = _card(ckpt)
    edit(card)
    (ckpt / CARD_FILE).write_text(json.dumps(card))  # NaN is written as the bare token json allows
    with pytest.raises(CheckpointError, match=match) as info:
        load_checkpoint(ckpt)
    assert "\n" not in str(info.value)


def test_deeply_nested_card_is_refused(ckpt):
    (ckpt / CARD_FILE).write_text('{"format": "faa-checkpoint", "x": ' + "[" * 100_000 + "]" * 100_000 + "}")
    with pytest.raises(CheckpointError, match="nests deeper than 32 levels"):
        load_checkpoint(ckpt)


def test_huge_card_width_is_refused_from_the_header_without_allocating(ckpt):
    """proj_hidden=5000 is in range but does not match the tensors: refused before any model is built."""
    import subprocess
    import sys

    card = _card(ckpt)
    card["model_config"]["proj_hidden"] = 5000
    _write_card(ckpt, card)
    code = (
        "import resource, sys\n"
        "from faa_core.checkpoint import load_checkpoint\n"
        "from faa_core.errors import CheckpointError\n"
        "base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "try:\n"
        "    load_checkpoint(sys.argv[1])\n"
        "except CheckpointError as exc:\n"
        "    print('refused', exc)\n"
        "print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) // 1024)\n"
    )
    out = subprocess.run([sys.executable, "-c", code, str(ckpt)], capture_output=True, text=True, timeout=120)
    first, *_, mib = out.stdout.strip().splitlines()
    assert first.startswith("refused") and "does not match its config" in first and "5000" in first, out.stderr
    assert int(mib) < 100


def test_model_over_the_parameter_limit_is_refused(ckpt, monkeypatch):
    import faa_core.checkpoint as C

    monkeypatch.setattr(C, "MAX_PARAMETERS", 1000)
    with pytest.raises(CheckpointError, match="parameters; at most 1,000 are loaded"):
        load_checkpoint(ckpt)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_weights_are_refused(ckpt, bad):
    from safetensors.torch import load_file, save_file

    state = load_file(str(ckpt / WEIGHTS_FILE))
    key = sorted(state)[3]
    state[key].view(-1)[0] = bad
    save_file(state, str(ckpt / WEIGHTS_FILE))
    with pytest.raises(CheckpointError, match=f"NaN or infinite values in 1 tensors \\({key}\\)"):
        load_checkpoint(ckpt)


def test_integer_tensor_in_place_of_a_float_one_is_refused(ckpt):
    from safetensors.torch import load_file, save_file

    state = load_file(str(ckpt / WEIGHTS_FILE))
    key = sorted(state)[3]
    state[key] = state[key].to(torch.int32)
    save_file(state, str(ckpt / WEIGHTS_FILE))
    with pytest.raises(CheckpointError, match="not floating point"):
        load_checkpoint(ckpt)
