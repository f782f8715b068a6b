"""faa_core.device.pick_device and the process-group setup, on CPU with CUDA mocked."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from faa_core.device import DeviceError, local_rank_from_env, pick_device, pick_precision
from training.loop import distributed as du

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def gpus(monkeypatch):
    """Pretend the machine has ``n`` GPUs (0: no CUDA)."""

    def set_count(n: int) -> None:
        monkeypatch.setattr(torch.cuda, "is_available", lambda: n > 0)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: n)

    return set_count


@pytest.mark.parametrize("choice, rank, n, expected", [
    ("auto", 0, 0, "cpu"),
    ("auto", 3, 0, "cpu"),
    ("cpu", 2, 4, "cpu"),
    ("auto", 0, 4, "cuda:0"),
    ("auto", 3, 4, "cuda:3"),
    ("cuda", 0, 4, "cuda:0"),
    ("cuda", 1, 4, "cuda:1"),  # was "cuda": every torchrun rank on GPU 0
    ("cuda", 3, 4, "cuda:3"),
    ("cuda", 5, 4, "cuda:1"),  # more ranks than GPUs: shared round-robin
    ("CUDA", 2, 4, "cuda:2"),
    ("cuda:2", 0, 4, "cuda:2"),  # an explicit index is kept whatever the rank
    ("cuda:0", 3, 4, "cuda:0"),
])
def test_rank_to_device(gpus, choice, rank, n, expected):
    gpus(n)
    assert pick_device(choice, rank) == torch.device(expected)


def test_local_rank_comes_from_the_environment(gpus, monkeypatch):
    gpus(2)
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert pick_device("cuda") == torch.device("cuda:1")
    assert pick_device("auto", local_rank=0) == torch.device("cuda:0")  # an explicit rank wins
    monkeypatch.delenv("LOCAL_RANK")
    assert pick_device("cuda") == torch.device("cuda:0")
    assert local_rank_from_env({"LOCAL_RANK": "7"}) == 7
    with pytest.raises(DeviceError, match="LOCAL_RANK must be a whole number, got 'x'"):
        local_rank_from_env({"LOCAL_RANK": "x"})


@pytest.mark.parametrize("choice, n, message", [
    ("quantum", 0, "--device must be auto, cpu, cuda or cuda:N, got 'quantum'"),
    ("cuda:x", 2, "--device must be auto, cpu, cuda or cuda:N, got 'cuda:x'"),
    ("cuda", 0, "--device cuda: CUDA is not available on this machine (use --device cpu or auto)"),
    ("cuda:1", 0, "--device cuda:1: CUDA is not available on this machine (use --device cpu or auto)"),
    ("cuda:4", 4, "--device cuda:4: this machine has 4 GPU(s) (cuda:0 to cuda:3)"),
])
def test_refusals(gpus, choice, n, message):
    gpus(n)
    with pytest.raises(DeviceError) as err:
        pick_device(choice, 0)
    assert str(err.value) == message


@pytest.mark.parametrize("device, backend, set_to", [
    ("cpu", "gloo", None),
    ("cuda:1", "nccl", torch.device("cuda:1")),
    ("cuda:0", "nccl", torch.device("cuda:0")),
])
def test_process_group_backend_and_set_device(monkeypatch, device, backend, set_to):
    calls: dict = {}
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setattr(du.dist, "is_initialized", lambda: False)
    monkeypatch.setattr(du.dist, "init_process_group", lambda **kw: calls.setdefault("init", kw))
    monkeypatch.setattr(torch.cuda, "set_device", lambda d: calls.setdefault("set_device", d))
    monkeypatch.setattr(du.dist, "get_world_size", lambda: 2)
    du.init_from_env(torch.device(device))
    assert calls["init"]["backend"] == backend
    assert calls.get("set_device") == set_to


def test_train_passes_its_device_to_the_process_group(monkeypatch, gpus, tmp_path):
    """training.train chose gloo and skipped set_device on GPU runs: init_from_env was called without the device."""
    import training.loop.train as train_cli
    import training.loop.trainer as trainer_mod

    gpus(4)
    monkeypatch.setenv("LOCAL_RANK", "2")
    seen: dict = {}

    def fake_init(device="cpu", timeout_s=0.0):
        seen["backend"] = du.backend_for(device)
        seen["init_device"] = torch.device(device)
        return False

    class Stop(Exception):
        pass

    def fake_trainer(cfg, data, out, progress=True, device="cpu", **_):
        seen["trainer_device"] = torch.device(device)
        raise Stop

    monkeypatch.setattr(du, "init_from_env", fake_init)
    monkeypatch.setattr(trainer_mod, "Trainer", fake_trainer)
    with pytest.raises(Stop):
        train_cli.main(["--config", "faa", "--data", str(tmp_path), "--out", str(tmp_path / "run"), "--device", "cuda"])
    assert seen == {"backend": "nccl", "init_device": torch.device("cuda:2"), "trainer_device": torch.device("cuda:2")}


CLIS = [
    [sys.executable, "-m", "training.train", "--config", "faa", "--data", "x", "--out", "y"],
    [sys.executable, "-m", "training.extract", "--manifest", ".", "--out", "/nonexistent/out"],
    [sys.executable, "-m", "faa_core", "match", "--checkpoint", "x", "--voice", "a.wav", "--faces", "b.jpg"],
    [sys.executable, "app.py"],
]


@pytest.mark.parametrize("cmd", CLIS, ids=["train", "extract", "match", "app"])
@pytest.mark.parametrize("device, message", [
    ("quantum", "--device must be auto, cpu, cuda or cuda:N, got 'quantum'"),
    ("cuda", "--device cuda: CUDA is not available on this machine (use --device cpu or auto)"),
])
def test_command_lines_refuse_in_one_line(cmd, device, message):
    if device == "cuda" and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    env = {"HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False", "PATH": "/usr/bin:/bin", "CUDA_VISIBLE_DEVICES": ""}
    r = subprocess.run([*cmd, "--device", device], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 2
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, r.stderr
    assert lines[0].endswith("error: " + message)
    assert "Traceback" not in r.stderr


@pytest.mark.parametrize("native", [True, False])
def test_precision_auto_takes_bf16_only_where_native(monkeypatch, native):
    import faa_core.device as dev

    monkeypatch.setattr(dev, "native_bf16", lambda device: native)
    assert pick_precision("auto", "cpu") == (torch.bfloat16 if native else torch.float32)
    assert pick_precision("FP32", "cpu") == torch.float32
    if native:
        assert pick_precision("bf16", "cpu") == torch.bfloat16
    else:
        with pytest.raises(DeviceError, match="no native bf16.*--precision fp32 or auto"):
            pick_precision("bf16", "cpu")
    with pytest.raises(DeviceError, match="--precision must be auto, fp32 or bf16, got 'half'"):
        pick_precision("half", "cpu")


@pytest.mark.parametrize("cmd", CLIS[2:], ids=["match", "app"])
def test_unknown_precision_is_refused_in_one_line(cmd):
    env = {"HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False", "PATH": "/usr/bin:/bin", "CUDA_VISIBLE_DEVICES": ""}
    r = subprocess.run([*cmd, "--device", "cpu", "--precision", "half"], cwd=ROOT, env=env, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 2
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, r.stderr
    assert lines[0].endswith("error: --precision must be auto, fp32 or bf16, got 'half'")
