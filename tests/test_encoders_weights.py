"""Tests for faa_core.encoders.weights: where encoder weights come from, offline, without downloads.

The real loading code runs on weights of the published architectures saved to a
temporary folder (seeded random values, with the extra ``logits.*`` classifier
the VGGFace2 release file holds), found through every route: a weights
directory, the torch and Hugging Face caches in "pretrained" mode, and the
FAA_*_WEIGHTS environment variables.
"""

from __future__ import annotations

import logging
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from faa_core.encoders import FaceEncoder, VoiceEncoder, resample_to_16k
from faa_core.encoders import weights as W
from faa_core.encoders.face import build_face_network
from faa_core.encoders.voice import build_voice_network
from faa_core.encoders.weights import (
    FACE_ENV,
    FACE_WEIGHTS_FILE,
    RANDOM_WARNING,
    VOICE_ENV,
    VOICE_HUB_REPO,
    VOICE_WEIGHTS_FILE,
    WeightFile,
    load_into,
    load_state_dict,
    resolve_weights,
)
from faa_core.errors import FAAError, WeightsUnavailableError
from faa_core.media import load_audio

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def _perturb_batchnorm(net: nn.Module, gen: torch.Generator) -> None:
    """Non-default running statistics, so that loading buffers is checked too."""
    for m in net.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.running_mean is not None:
            m.running_mean.copy_(0.1 * torch.randn(m.running_mean.shape, generator=gen))
            m.running_var.copy_(1.0 + 0.5 * torch.rand(m.running_var.shape, generator=gen))


@pytest.fixture(scope="module")
def source_nets():
    """Seeded networks of the published architectures (different from the seed-0 'random' ones)."""
    from facenet_pytorch import InceptionResnetV1

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(123)
        face = InceptionResnetV1(pretrained=None, classify=True, num_classes=8631)
        voice = build_voice_network(WeightFile(None, "random"))  # seed 0 inside; re-randomise below
        gen = torch.Generator().manual_seed(7)
        with torch.no_grad():
            for p in voice.parameters():
                p.add_(0.05 * torch.randn(p.shape, generator=gen))
            _perturb_batchnorm(face, gen)
            _perturb_batchnorm(voice, gen)
    return face.eval(), voice.eval()


@pytest.fixture(scope="module")
def weights_dir(tmp_path_factory, source_nets) -> Path:
    """A folder with both files under their published names."""
    face, voice = source_nets
    folder = tmp_path_factory.mktemp("encoder_weights")
    state = face.state_dict()
    assert any(k.startswith("logits.") for k in state)  # like the release file
    torch.save(state, folder / FACE_WEIGHTS_FILE)
    torch.save(voice.state_dict(), folder / VOICE_WEIGHTS_FILE)
    return folder


@pytest.fixture(scope="module")
def local_encoders(weights_dir):
    weights = resolve_weights(weights_dir)
    return FaceEncoder(weights.face), VoiceEncoder(weights.voice)


@pytest.fixture
def offline_empty_caches(tmp_path, monkeypatch):
    """TORCH_HOME and the HF cache point at empty folders; offline; no FAA_* overrides."""
    import huggingface_hub.constants as hfc

    torch_home = tmp_path / "torch_home"
    hf_home = tmp_path / "hf_home"
    hub_cache = hf_home / "hub"
    hub_cache.mkdir(parents=True)
    torch_home.mkdir()
    monkeypatch.setenv("TORCH_HOME", str(torch_home))
    monkeypatch.setenv("HF_HOME", str(hf_home))
    monkeypatch.setenv("HF_HUB_CACHE", str(hub_cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv(FACE_ENV, raising=False)
    monkeypatch.delenv(VOICE_ENV, raising=False)
    # huggingface_hub reads these at import time
    monkeypatch.setattr(hfc, "HF_HOME", str(hf_home))
    monkeypatch.setattr(hfc, "HF_HUB_CACHE", str(hub_cache))
    monkeypatch.setattr(hfc, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(torch.hub, "_hub_dir", None)

    def no_download(*args, **kwargs):
        raise AssertionError(f"a download was attempted: {args}")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_download)
    return torch_home, hub_cache


def _face_input(n: int = 2, seed: int = 0) -> tuple[np.ndarray, torch.Tensor]:
    crops = np.random.default_rng(seed).integers(0, 256, (n, 160, 160, 3), dtype=np.uint8)
    x = (torch.from_numpy(crops).permute(0, 3, 1, 2).float() - 127.5) / 128.0
    return crops, x


# --------------------------------------------------------------------------- random and directory modes


def test_random_weights_are_marked(caplog):
    with caplog.at_level(logging.WARNING, logger="faa_core"):
        w = resolve_weights("random")
    assert w.mode == "random" and w.is_random
    assert w.face.is_random and w.voice.is_random
    assert w.face.path is None and w.voice.path is None
    assert "RANDOM" in w.describe()
    assert RANDOM_WARNING in caplog.text


def test_random_networks_are_deterministic(random_weights):
    a = build_face_network(random_weights.face)
    b = build_face_network(random_weights.face)
    for (k, va), vb in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(va, vb), k
    assert not a.training and not any(p.requires_grad for p in a.parameters())


def test_random_network_build_keeps_global_rng(random_weights):
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    build_face_network(random_weights.face)
    assert torch.equal(torch.rand(3), expected)


def test_directory_mode(weights_dir):
    w = resolve_weights(weights_dir)
    assert w.mode == "local" and not w.is_random
    assert w.face.path == weights_dir / FACE_WEIGHTS_FILE
    assert w.voice.path == weights_dir / VOICE_WEIGHTS_FILE
    assert str(weights_dir) in w.describe()
    assert resolve_weights(str(weights_dir)) == w


@pytest.mark.parametrize("missing", [FACE_WEIGHTS_FILE, VOICE_WEIGHTS_FILE])
def test_directory_mode_missing_file(tmp_path, missing):
    for name in (FACE_WEIGHTS_FILE, VOICE_WEIGHTS_FILE):
        if name != missing:
            (tmp_path / name).write_bytes(b"x")
    with pytest.raises(WeightsUnavailableError) as info:
        resolve_weights(tmp_path)
    msg = str(info.value)
    assert missing in msg and str(tmp_path) in msg


def test_directory_mode_not_a_directory(tmp_path):
    with pytest.raises(WeightsUnavailableError, match="not a directory"):
        resolve_weights(tmp_path / "nowhere")
    f = tmp_path / "file.pt"
    f.write_bytes(b"x")
    with pytest.raises(WeightsUnavailableError, match="'pretrained', 'random' or a directory"):
        resolve_weights(f)


def test_weights_error_is_faa_and_runtime_error():
    assert issubclass(WeightsUnavailableError, FAAError) and issubclass(WeightsUnavailableError, RuntimeError)


def test_per_encoder_file_overrides(tmp_path, weights_dir):
    face_file = weights_dir / FACE_WEIGHTS_FILE
    voice_file = weights_dir / VOICE_WEIGHTS_FILE
    # the directory lacks the face file, the override supplies it
    (tmp_path / VOICE_WEIGHTS_FILE).symlink_to(voice_file)
    w = resolve_weights(tmp_path, face_file=face_file)
    assert w.face.path == face_file and w.voice.path == tmp_path / VOICE_WEIGHTS_FILE and w.mode == "local"
    # random plus one real file stays marked random
    w = resolve_weights("random", voice_file=voice_file)
    assert w.voice.path == voice_file and w.face.is_random and w.is_random and w.mode == "random"
    with pytest.raises(WeightsUnavailableError, match="face_file"):
        resolve_weights("random", face_file=tmp_path / "missing.pt")


# --------------------------------------------------------------------------- (a) the real loading code


def test_local_face_encoder_matches_source_network(local_encoders, source_nets):
    face_enc, _ = local_encoders
    src = source_nets[0]
    crops, x = _face_input(3)
    out = face_enc.encode(crops)
    src.classify = False  # facenet's embedding output: normalised last_bn features
    try:
        with torch.no_grad():
            ref = src(x)
    finally:
        src.classify = True
    torch.testing.assert_close(out.embeddings, ref, atol=1e-5, rtol=1e-4)
    # loaded, not the seed-0 random weights
    random_out = FaceEncoder(WeightFile(None, "random")).encode(crops)
    assert not torch.allclose(random_out.embeddings, out.embeddings, atol=1e-3)


def test_local_face_network_ignores_logits_and_loads_everything_else(local_encoders, source_nets):
    net = local_encoders[0].network
    src_state = source_nets[0].state_dict()
    own = net.state_dict()
    assert not any(k.startswith("logits.") for k in own)
    for k, v in own.items():
        assert torch.equal(v, src_state[k]), k


def test_local_voice_encoder_matches_source_network(local_encoders, source_nets, speech_wav):
    _, voice_enc = local_encoders
    src = source_nets[1]
    audio = load_audio(speech_wav)
    wav = resample_to_16k(audio.samples, audio.sample_rate)
    out = voice_enc.encode(wav)
    feats = voice_enc.features(wav[None])
    with torch.no_grad():
        ref = F.normalize(src(feats).reshape(1, -1), dim=1)[0]
    torch.testing.assert_close(out.embedding, ref, atol=1e-5, rtol=1e-4)
    for k, v in voice_enc.network.state_dict().items():
        assert torch.equal(v, src.state_dict()[k]), k


# --------------------------------------------------------------------------- (b) pretrained mode, offline caches


def test_pretrained_offline_without_cache_names_face_file(offline_empty_caches):
    torch_home, _ = offline_empty_caches
    with pytest.raises(WeightsUnavailableError) as info:
        resolve_weights("pretrained")
    msg = str(info.value)
    assert FACE_WEIGHTS_FILE in msg
    assert FACE_ENV in msg
    assert "offline" in msg
    assert str(torch_home / "checkpoints") in msg
    assert not (torch_home / "checkpoints" / FACE_WEIGHTS_FILE).exists()


def test_pretrained_offline_without_cache_names_voice_file(offline_empty_caches, weights_dir, monkeypatch):
    monkeypatch.setenv(FACE_ENV, str(weights_dir / FACE_WEIGHTS_FILE))
    with pytest.raises(WeightsUnavailableError) as info:
        resolve_weights("pretrained")
    msg = str(info.value)
    assert VOICE_WEIGHTS_FILE in msg
    assert VOICE_HUB_REPO in msg
    assert VOICE_ENV in msg


def test_pretrained_face_via_faa_offline_variable(offline_empty_caches, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setenv("FAA_OFFLINE", "true")
    with pytest.raises(WeightsUnavailableError, match="offline mode is on"):
        resolve_weights("pretrained")


def _make_hf_cache(hub_cache: Path, target: Path) -> Path:
    repo = hub_cache / ("models--" + VOICE_HUB_REPO.replace("/", "--"))
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(COMMIT)
    snap = repo / "snapshots" / COMMIT
    snap.mkdir(parents=True)
    (snap / VOICE_WEIGHTS_FILE).symlink_to(target)
    return snap / VOICE_WEIGHTS_FILE


def test_pretrained_finds_torch_and_hf_caches(offline_empty_caches, weights_dir, source_nets):
    torch_home, hub_cache = offline_empty_caches
    assert W.torch_checkpoint_dir() == torch_home / "checkpoints"
    (torch_home / "checkpoints").mkdir()
    (torch_home / "checkpoints" / FACE_WEIGHTS_FILE).symlink_to(weights_dir / FACE_WEIGHTS_FILE)
    cached_voice = _make_hf_cache(hub_cache, weights_dir / VOICE_WEIGHTS_FILE)

    w = resolve_weights("pretrained")
    assert w.mode == "pretrained" and not w.is_random
    assert w.face.path == torch_home / "checkpoints" / FACE_WEIGHTS_FILE
    assert Path(w.voice.path).resolve() == cached_voice.resolve()
    assert "cached" in w.face.source and "hub cache" in w.voice.source
    # the files found are the ones saved: load them through the real code
    voice_net = build_voice_network(w.voice)
    for k, v in voice_net.state_dict().items():
        assert torch.equal(v, source_nets[1].state_dict()[k]), k
    face_state = load_state_dict(w.face.path, "face")
    assert torch.equal(face_state["last_linear.weight"], source_nets[0].state_dict()["last_linear.weight"])


# --------------------------------------------------------------------------- (c) environment variables


def test_env_variables_point_at_files(offline_empty_caches, weights_dir, monkeypatch):
    monkeypatch.setenv(FACE_ENV, str(weights_dir / FACE_WEIGHTS_FILE))
    monkeypatch.setenv(VOICE_ENV, str(weights_dir / VOICE_WEIGHTS_FILE))
    w = resolve_weights("pretrained")
    assert w.mode == "pretrained" and not w.is_random
    assert w.face.path == weights_dir / FACE_WEIGHTS_FILE
    assert w.voice.path == weights_dir / VOICE_WEIGHTS_FILE
    assert str(weights_dir) in w.describe()


@pytest.mark.parametrize("env", [FACE_ENV, VOICE_ENV])
def test_env_variable_to_missing_file(offline_empty_caches, weights_dir, monkeypatch, env):
    monkeypatch.setenv(FACE_ENV, str(weights_dir / FACE_WEIGHTS_FILE))
    monkeypatch.setenv(VOICE_ENV, str(weights_dir / VOICE_WEIGHTS_FILE))
    missing = weights_dir / "not-there.pt"
    monkeypatch.setenv(env, str(missing))
    with pytest.raises(WeightsUnavailableError) as info:
        resolve_weights("pretrained")
    assert env in str(info.value) and str(missing) in str(info.value)


# --------------------------------------------------------------------------- (d) wrong architecture


def test_face_file_of_wrong_architecture(tmp_path):
    path = tmp_path / FACE_WEIGHTS_FILE
    torch.save(nn.Linear(3, 4).state_dict(), path)
    with pytest.raises(WeightsUnavailableError, match="does not fit the architecture") as info:
        build_face_network(WeightFile(path, "test"))
    assert str(path) in str(info.value) and "missing keys" in str(info.value)


def test_voice_file_of_wrong_architecture(tmp_path, weights_dir):
    path = tmp_path / VOICE_WEIGHTS_FILE
    path.symlink_to(weights_dir / FACE_WEIGHTS_FILE)  # a face network is not an ECAPA-TDNN
    with pytest.raises(WeightsUnavailableError, match="does not fit the architecture") as info:
        build_voice_network(WeightFile(path, "test"))
    assert "voice" in str(info.value)


def test_load_into_reports_shape_mismatch(tmp_path):
    path = tmp_path / "w.pt"
    torch.save(nn.Linear(3, 5).state_dict(), path)
    module = nn.Linear(3, 4)
    before = module.weight.detach().clone()
    with pytest.raises(WeightsUnavailableError, match="2 shape mismatches"):
        load_into(module, path, "face")
    assert torch.equal(module.weight, before)  # nothing half-loaded


def test_load_into_reports_unexpected_keys_and_ignores_prefixes(tmp_path):
    state = nn.Linear(3, 4).state_dict()
    state["extra.weight"] = torch.zeros(2)
    path = tmp_path / "w.pt"
    torch.save(state, path)
    with pytest.raises(WeightsUnavailableError, match="1 unexpected keys"):
        load_into(nn.Linear(3, 4), path, "voice")
    module = nn.Linear(3, 4)
    load_into(module, path, "voice", ignore_prefixes=("extra.",))
    assert torch.equal(module.weight, state["weight"])


# --------------------------------------------------------------------------- (e) safe reading


class Payload:
    """An arbitrary object: unpickling it must be refused."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (_touch, (self.marker,))


def _touch(path: str) -> str:
    Path(path).write_text("unpickled!")
    return path


def test_pickle_with_objects_is_refused(tmp_path):
    marker = tmp_path / "marker.txt"
    path = tmp_path / FACE_WEIGHTS_FILE
    torch.save({"conv.weight": torch.zeros(1), "evil": Payload(str(marker))}, path)
    with pytest.raises(WeightsUnavailableError, match="cannot be read") as info:
        load_state_dict(path, "face")
    assert str(path) in str(info.value)
    assert not marker.exists()
    with pytest.raises(WeightsUnavailableError):
        build_face_network(WeightFile(path, "test"))
    assert not marker.exists()


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_plain_pickle_file_is_refused(tmp_path):
    marker = tmp_path / "marker.txt"
    path = tmp_path / VOICE_WEIGHTS_FILE
    path.write_bytes(pickle.dumps(Payload(str(marker))))
    with pytest.raises(WeightsUnavailableError):
        load_state_dict(path, "voice")
    assert not marker.exists()


def test_non_tensor_values_are_refused(tmp_path):
    path = tmp_path / "w.pt"
    torch.save({"weight": [1.0, 2.0]}, path)
    with pytest.raises(WeightsUnavailableError, match="does not hold a state dict"):
        load_state_dict(path, "face")
    torch.save(torch.zeros(3), path)
    with pytest.raises(WeightsUnavailableError, match="does not hold a state dict"):
        load_state_dict(path, "face")


def test_garbage_file_is_refused(tmp_path):
    path = tmp_path / "w.pt"
    path.write_bytes(os.urandom(256))
    with pytest.raises(WeightsUnavailableError, match="cannot be read"):
        load_state_dict(path, "face")


def test_state_dict_wrapper_and_safetensors(tmp_path):
    from safetensors.torch import save_file

    state = nn.Linear(3, 4).state_dict()
    wrapped = tmp_path / "wrapped.ckpt"
    torch.save({"state_dict": state, "epoch": torch.tensor(3)}, wrapped)
    got = load_state_dict(wrapped, "voice")
    assert set(got) == set(state) and all(torch.equal(got[k], state[k]) for k in state)
    st = tmp_path / "w.safetensors"
    save_file({k: v.contiguous() for k, v in state.items()}, str(st))
    got = load_state_dict(st, "voice")
    assert all(torch.equal(got[k], state[k]) for k in state)
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"abc")
    with pytest.raises(WeightsUnavailableError, match="cannot be read"):
        load_state_dict(bad, "voice")


# --------------------------------------------------------------------------- (c) equal to the libraries' own inference


@pytest.fixture(scope="module")
def genuine_files(tmp_path_factory, source_nets) -> Path:
    """Random weights in the published files' layouts: facenet's VGGFace2 key set (8631-class logits,
    no ``num_batches_tracked``, as in the release file) and SpeechBrain's ``embedding_model.ckpt``."""
    face, voice = source_nets
    folder = tmp_path_factory.mktemp("genuine")
    face_state = {k: v for k, v in face.state_dict().items() if not k.endswith("num_batches_tracked")}
    assert face_state["logits.weight"].shape == (8631, 512)
    torch.save(face_state, folder / FACE_WEIGHTS_FILE)
    torch.save(voice.state_dict(), folder / VOICE_WEIGHTS_FILE)
    return folder


def test_face_file_without_batch_counters_is_accepted(genuine_files):
    """The release file has no num_batches_tracked; torch's strict load accepts it, so must we."""
    from facenet_pytorch import InceptionResnetV1

    state = torch.load(genuine_files / FACE_WEIGHTS_FILE, weights_only=True)
    assert not any(k.endswith("num_batches_tracked") for k in state)
    InceptionResnetV1(pretrained=None, classify=True, num_classes=8631).load_state_dict(state)  # strict
    net = build_face_network(WeightFile(genuine_files / FACE_WEIGHTS_FILE, "genuine"))
    assert torch.equal(net.last_bn.running_mean, state["last_bn.running_mean"])


def test_face_encoder_equals_facenet_inference(genuine_files, monkeypatch):
    """MTCNN-style crop, standardisation and InceptionResnetV1 as facenet-pytorch runs them (its own
    weight loading from TORCH_HOME) give the same embedding and repeat_2 map as the project."""
    from facenet_pytorch import InceptionResnetV1, fixed_image_standardization
    from facenet_pytorch.models.utils.detect_face import extract_face
    from PIL import Image

    from faa_core.encoders.face import crop_face

    torch_home = genuine_files / "torch_home"
    (torch_home / "checkpoints").mkdir(parents=True, exist_ok=True)
    target = torch_home / "checkpoints" / FACE_WEIGHTS_FILE
    if not target.exists():
        target.symlink_to(genuine_files / FACE_WEIGHTS_FILE)
    monkeypatch.setenv("TORCH_HOME", str(torch_home))
    monkeypatch.setattr(torch.hub, "download_url_to_file", lambda *a, **k: pytest.fail("download attempted"))
    ref_net = InceptionResnetV1(pretrained="vggface2", classify=False).eval()
    maps = []
    ref_net.repeat_2.register_forward_hook(lambda m, i, o: maps.append(o))

    ours = FaceEncoder(resolve_weights(genuine_files).face)
    img = Image.fromarray(np.random.default_rng(5).integers(0, 256, (300, 400, 3), dtype=np.uint8))
    boxes = [np.array([50.3, 40.8, 210.6, 230.2], np.float32), np.array([180.9, 20.1, 390.4, 280.7], np.float32)]
    ref_x = torch.stack([fixed_image_standardization(extract_face(img, b)) for b in boxes])
    with torch.no_grad():
        ref_emb = ref_net(ref_x)
    out = ours.encode([crop_face(img, b) for b in boxes])
    torch.testing.assert_close(out.embeddings, ref_emb, atol=2e-5, rtol=1e-4)
    torch.testing.assert_close(out.tokens, maps[0].flatten(2).transpose(1, 2), atol=2e-5, rtol=1e-4)


def test_voice_encoder_equals_speechbrain_inference(genuine_files, speech_wav):
    """Fbank(80) + sentence mean normalisation + ECAPA-TDNN as SpeechBrain's EncoderClassifier runs them
    (weights through SpeechBrain's own parameter transfer) give the project's embedding and frames."""
    from speechbrain.lobes.features import Fbank
    from speechbrain.lobes.models.ECAPA_TDNN import ECAPA_TDNN
    from speechbrain.processing.features import InputNormalization
    from speechbrain.utils.checkpoints import torch_parameter_transfer

    ref = ECAPA_TDNN(80, channels=[1024, 1024, 1024, 1024, 3072], kernel_sizes=[5, 3, 3, 3, 1],
                     dilations=[1, 2, 3, 4, 1], attention_channels=128, lin_neurons=192)
    torch_parameter_transfer(ref, str(genuine_files / VOICE_WEIGHTS_FILE))
    ref.eval()
    frames = []
    ref.blocks[-1].register_forward_hook(lambda m, i, o: frames.append(o))
    audio = load_audio(speech_wav)
    wav = resample_to_16k(audio.samples, audio.sample_rate)[None]
    lens = torch.ones(1)
    with torch.no_grad():
        feats = InputNormalization(norm_type="sentence", std_norm=False)(Fbank(n_mels=80)(wav), lens)
        ref_emb = F.normalize(ref(feats, lens).reshape(1, -1), dim=1)[0]

    ours = VoiceEncoder(resolve_weights(genuine_files).voice)
    out = ours.encode(wav[0])
    torch.testing.assert_close(out.embedding, ref_emb, atol=2e-5, rtol=1e-4)
    ref_frames = frames[0][0].T  # (T, 1024)
    own_frames, _ = ours.forward_features(ours.features(wav))
    # With one torch thread the 1x1 convolutions run as matrix products (PointwiseConv1d), which add in
    # another order: the frames then differ by float32 rounding, ~1e-4 on values of mean size ~28 here.
    torch.testing.assert_close(own_frames[0], ref_frames, atol=2e-4, rtol=1e-4)
    assert float(ref_frames.abs().mean()) > 1.0  # the tolerance is small against the frames' scale
    ref_tokens, _ = ours.pool_tokens(ref_frames)
    torch.testing.assert_close(out.tokens, ref_tokens, atol=2e-5, rtol=1e-4)
