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
