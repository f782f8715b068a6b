"""Checkpoints: a folder with ``model.safetensors`` and ``config.json`` (the model card).

No pickle is ever read: tensors come from safetensors, everything else from
JSON. The card records the model config, which encoders (and which weights)
produced the features, their dimensions, what the model was trained on and
its evaluation numbers, so that a checkpoint explains itself.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any, Optional

import torch

from . import __version__
from .errors import CheckpointError
from .fileio import atomic_write_bytes, atomic_write_text
from .model import FAAConfig, FAAModel

FORMAT = "faa-checkpoint"
FORMAT_VERSION = 1
WEIGHTS_FILE = "model.safetensors"
CARD_FILE = "config.json"
README_FILE = "README.md"
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def default_encoders(config: FAAConfig, voice_token_rate: float = 4.0) -> dict[str, Any]:
    """The card's description of the frozen encoders this package uses."""
    return {
        "face": {
            "name": "facenet-pytorch InceptionResnetV1 (MTCNN detection, 160x160 crops)",
            "weights": "VGGFace2 (20180402-114759-vggface2.pt)",
            "global_dim": config.face_dim,
            "token_layer": "repeat_2" if config.face_token_dim else None,
            "token_dim": config.face_token_dim,
            "token_grid": list(config.face_grid),
        },
        "voice": {
            "name": "SpeechBrain ECAPA-TDNN (Fbank 80, sentence mean normalisation, 16 kHz)",
            "weights": "speechbrain/spkrec-ecapa-voxceleb (embedding_model.ckpt)",
            "global_dim": config.voice_dim,
            "token_layer": "blocks[3] (last SE-Res2 block)" if config.voice_token_dim else None,
            "token_dim": config.voice_token_dim,
            "token_rate_per_s": voice_token_rate if config.voice_token_dim else None,
        },
    }


def save_checkpoint(
    path: str | os.PathLike,
    model: FAAModel,
    trained_on: Optional[dict[str, Any]] = None,
    evaluation: Optional[dict[str, Any]] = None,
    encoders: Optional[dict[str, Any]] = None,
    extra: Optional[dict[str, Any]] = None,
) -> Path:
    """Write ``path/model.safetensors``, ``path/config.json`` and a README model card atomically."""
    from safetensors.torch import save

    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    trained_on = dict(trained_on or {"data": "unknown"})
    card = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "faa_core_version": __version__,
        "model_config": model.config.to_dict(),
        "encoders": encoders or default_encoders(model.config),
        "trained_on": trained_on,
        "synthetic": bool(trained_on.get("synthetic", False)),
        "evaluation": evaluation or {},
        **(extra or {}),
    }
    # Everything that can fail on the caller's data is built before any file is replaced.
    card_text = json.dumps(card, indent=2) + "\n"
    readme_text = model_card_markdown(card)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    # safetensors creates its file 0600 whatever the umask: serialise to bytes and write those instead
    atomic_write_bytes(out / WEIGHTS_FILE, save(state, metadata={"format": FORMAT}))
    atomic_write_text(out / CARD_FILE, card_text)
    atomic_write_text(out / README_FILE, readme_text)
    return out


def model_card_markdown(card: dict[str, Any]) -> str:
    """A human-readable model card generated from the JSON card."""
    lines = ["# FAA voice-face association checkpoint", ""]
    if card.get("synthetic"):
        lines += [
            "> **Trained on synthetic features, not on real people.** Its scores on real voices and "
            "faces mean nothing; it exists to exercise the pipeline. Train a real one with the "
            "training package (see the project README).",
            "",
        ]
    lines += ["## Trained on", "", "```json", json.dumps(card.get("trained_on", {}), indent=2), "```", ""]
    lines += ["## Encoders", ""]
    for side, enc in card.get("encoders", {}).items():
        lines.append(f"- **{side}**: {enc.get('name')}, weights {enc.get('weights')}")
    lines += ["", "## Model config", "", "```json", json.dumps(card.get("model_config", {}), indent=2), "```", ""]
    evaluation = dict(card.get("evaluation") or {})
    test = evaluation.pop("test", None)
    if isinstance(test, dict) and isinstance(test.get("lists"), dict):
        oracle = test.get("oracle", {})
        lines += [f"## Evaluation: {test.get('protocol')} ({test.get('scoring')} scoring)", "",
                  "| list | metric | value |" + (" oracle |" if oracle else ""),
                  "|---|---|---|" + ("---|" if oracle else "")]
        for name, e in test["lists"].items():
            o = f" {oracle[name]:.4f} |" if name in oracle else (" |" if oracle else "")
            lines.append(f"| {name} | {e.get('metric')} | {float(e.get('value', float('nan'))):.4f} |{o}")
        lines.append("")
    if evaluation:
        lines += ["## Evaluation details", "", "```json", json.dumps(evaluation, indent=2), "```", ""]
    if card.get("notes"):  # free text from whoever published the checkpoint (markdown)
        lines += [str(card["notes"]).rstrip(), ""]
    lines.append(f"Format {card.get('format')} v{card.get('format_version')}, faa_core {card.get('faa_core_version')}.")
    return "\n".join(lines) + "\n"


def resolve_checkpoint_dir(source: str | os.PathLike) -> Path:
    """A local checkpoint folder, or a Hugging Face Hub repo id downloaded into the HF cache."""
    path = Path(source)
    if path.exists():
        if not path.is_dir():
            raise CheckpointError(f"checkpoint {path} is a file; give the folder holding {CARD_FILE} and {WEIGHTS_FILE}")
        return path
    text = str(source)
    if not _HUB_ID.match(text) or text.startswith((".", "/")):
        raise CheckpointError(f"checkpoint folder not found: {path}")
    from huggingface_hub import snapshot_download

    try:
        local = snapshot_download(text, allow_patterns=[CARD_FILE, WEIGHTS_FILE, README_FILE])
    except Exception as exc:
        raise CheckpointError(
            f"checkpoint {text!r} is not a local folder and could not be fetched from the "
            f"Hugging Face Hub ({type(exc).__name__}: {exc})"
        ) from exc
    return Path(local)


def read_card(folder: Path) -> dict[str, Any]:
    card_path = folder / CARD_FILE
    if not card_path.is_file():
        raise CheckpointError(f"{folder} is not an FAA checkpoint: {CARD_FILE} is missing")
    try:
        card = json.loads(card_path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{card_path} is not valid JSON: {exc}") from exc
    if not isinstance(card, dict) or card.get("format") != FORMAT:
        raise CheckpointError(f"{card_path} is not an FAA checkpoint card (format must be {FORMAT!r})")
    version = card.get("format_version")
    if not isinstance(version, int) or not 1 <= version <= FORMAT_VERSION:
        raise CheckpointError(
            f"{card_path} has format_version {version!r}; this faa_core reads up to {FORMAT_VERSION} "
            "(upgrade faa_core)"
        )
    return card


def load_checkpoint(source: str | os.PathLike, device: torch.device | str = "cpu") -> tuple[FAAModel, dict[str, Any]]:
    """Build the model from the card and load its tensors, checking every key and shape."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    folder = resolve_checkpoint_dir(source)
    card = read_card(folder)
    try:
        config = FAAConfig.from_dict(card["model_config"])
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{folder / CARD_FILE}: bad model_config: {exc}") from exc
    weights_path = folder / WEIGHTS_FILE
    if not weights_path.is_file():
        raise CheckpointError(f"{folder} has no {WEIGHTS_FILE}")
    try:
        state = load_file(str(weights_path), device="cpu")
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{weights_path} cannot be read: {exc}") from exc
    model = FAAModel(config)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = [
        f"{k}: checkpoint {tuple(state[k].shape)} vs config {tuple(expected[k].shape)}"
        for k in sorted(set(expected) & set(state))
        if state[k].shape != expected[k].shape
    ]
    if missing or unexpected or wrong:
        raise CheckpointError(
            f"{weights_path} does not match its config: missing {missing[:5]}, unexpected "
            f"{unexpected[:5]}, shape mismatches {wrong[:5]}"
        )
    model.load_state_dict(state)
    return model.to(device).eval(), card
