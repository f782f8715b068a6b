"""The ``python -m faa_core match`` command line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_cli(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=str(ROOT))
    return subprocess.run(
        [sys.executable, "-m", "faa_core", *args], capture_output=True, text=True, env=env, cwd=ROOT, timeout=300
    )


def test_match_json(small_checkpoint, speech_wav, face_image_path, group_image_path, blank_image_path):
    proc = run_cli(
        "match", "--checkpoint", str(small_checkpoint), "--voice", str(speech_wav),
        "--faces", str(face_image_path), str(group_image_path), str(blank_image_path),
        "--weights", "random", "--json",
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert len(out["faces"]) >= 3
    assert [f["rank"] for f in out["faces"]] == list(range(1, len(out["faces"]) + 1))
    assert all(0 <= f["probability"] <= 1 for f in out["faces"])
    assert out["images"][2]["error_type"] == "NoFaceError"
    assert any("RANDOM" in w for w in out["model_warnings"])
    assert len(out["faces"][0]["face_attention"]) == 8


def test_match_table_and_errors(small_checkpoint, speech_wav, face_image_path, tmp_path):
    ok = run_cli(
        "match", "--checkpoint", str(small_checkpoint), "--voice", str(speech_wav),
        "--faces", str(face_image_path), "--weights", "random",
    )
    assert ok.returncode == 0 and "probability" in ok.stdout
    missing = run_cli(
        "match", "--checkpoint", str(small_checkpoint), "--voice", str(tmp_path / "none.wav"),
        "--faces", str(face_image_path), "--weights", "random",
    )
    assert missing.returncode == 2 and "none.wav" in missing.stderr
    bad_ckpt = run_cli(
        "match", "--checkpoint", str(tmp_path), "--voice", str(speech_wav),
        "--faces", str(face_image_path), "--weights", "random",
    )
    assert bad_ckpt.returncode == 2 and "config.json" in bad_ckpt.stderr


def test_bad_inputs_end_in_one_line_never_a_traceback(small_checkpoint, speech_wav, face_image_path, tmp_path):
    """NaN weights, a bad card value and a too-thin photo: one line each, no traceback."""
    import shutil

    from PIL import Image
    from safetensors.torch import load_file, save_file

    nan_ckpt = Path(shutil.copytree(small_checkpoint, tmp_path / "nan"))
    state = load_file(str(nan_ckpt / "model.safetensors"))
    state["logit_scale"] = torch_nan_like(state["logit_scale"])
    save_file(state, str(nan_ckpt / "model.safetensors"))
    bad_card = Path(shutil.copytree(small_checkpoint, tmp_path / "card"))
    card = json.loads((bad_card / "config.json").read_text())
    card["encoders"]["voice"]["token_rate_per_s"] = "abc"
    (bad_card / "config.json").write_text(json.dumps(card))
    for ckpt, words in ((nan_ckpt, "NaN or infinite values"), (bad_card, "token_rate_per_s")):
        proc = run_cli("match", "--checkpoint", str(ckpt), "--voice", str(speech_wav),
                       "--faces", str(face_image_path), "--weights", "random", "--json")
        assert proc.returncode == 2 and words in proc.stderr and "Traceback" not in proc.stderr
        assert proc.stderr.count("\n") == 1 and proc.stdout == ""
    thin = tmp_path / "strip.png"
    Image.new("RGB", (100_000, 16), (90, 120, 160)).save(thin)
    proc = run_cli("match", "--checkpoint", str(small_checkpoint), "--voice", str(speech_wav),
                   "--faces", str(thin), str(face_image_path), "--weights", "random")
    assert proc.returncode == 0 and "Traceback" not in proc.stderr
    assert "skipped strip.png: image strip.png: the image (100000x16 pixels) is too thin" in proc.stdout


def torch_nan_like(t):
    import torch

    return torch.full_like(t, float("nan"))


def test_unexpected_error_is_one_line(small_checkpoint, speech_wav, face_image_path, monkeypatch, capsys):
    """A bug inside the pipeline still ends in one line on stderr and exit status 1."""
    from faa_core import cli
    from faa_core.pipeline import MatchPipeline

    def boom(*a, **k):
        raise RuntimeError("internal detail")

    monkeypatch.setattr(MatchPipeline, "from_checkpoint", classmethod(lambda cls, *a, **k: boom()))
    code = cli.main(["match", "--checkpoint", str(small_checkpoint), "--voice", str(speech_wav),
                     "--faces", str(face_image_path), "--weights", "random"])
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1
    assert err.startswith("error: unexpected RuntimeError while matching (internal detail)")
