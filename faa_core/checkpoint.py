"""Checkpoints: a folder with ``model.safetensors`` and ``config.json`` (the model card).

No pickle is ever read: tensors come from safetensors, everything else from
JSON. The card records the model config, which encoders (and which weights)
produced the features, their dimensions, what the model was trained on and
its evaluation numbers, so that a checkpoint explains itself.
"""

from __future__ import annotations

import json
import math
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


#: A card is a few kB; anything this large is not one.
MAX_CARD_BYTES = 4 * 2**20
#: Cards nest a few levels (evaluation -> test -> lists -> list); deeper JSON is refused before parsing.
MAX_CARD_DEPTH = 32
#: Largest feature / hidden width and layer count a card may ask for, and the largest model.
MAX_WIDTH = 65_536
MAX_LAYERS = 64
MAX_PARAMETERS = 200_000_000
_INT_FIELDS = ("face_dim", "voice_dim", "face_token_dim", "voice_token_dim", "proj_hidden", "embed_dim",
               "d_model", "n_heads", "n_layers")
_FLOAT_FIELDS = ("proj_dropout", "init_temperature", "mlp_ratio", "dropout")


def _json_depth(text: str) -> int:
    """Deepest bracket nesting of a JSON text (strings skipped), without parsing it."""
    depth = deepest = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth -= 1
    return deepest


def read_card(folder: Path) -> dict[str, Any]:
    """Read and validate ``config.json``: JSON of bounded size and depth, the FAA format, sane sections."""
    card_path = folder / CARD_FILE
    if not card_path.is_file():
        raise CheckpointError(f"{folder} is not an FAA checkpoint: {CARD_FILE} is missing")
    try:
        size = card_path.stat().st_size
        if size > MAX_CARD_BYTES:
            raise CheckpointError(f"{card_path} is {size / 2**20:.1f} MiB; a model card is at most "
                                  f"{MAX_CARD_BYTES // 2**20} MiB")
        text = card_path.read_text()
        if _json_depth(text) > MAX_CARD_DEPTH:
            raise CheckpointError(f"{card_path} nests deeper than {MAX_CARD_DEPTH} levels; it is not a model card")
        card = json.loads(text)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise CheckpointError(f"{card_path} is not valid JSON: {exc}") from exc
    if not isinstance(card, dict) or card.get("format") != FORMAT:
        raise CheckpointError(f"{card_path} is not an FAA checkpoint card (format must be {FORMAT!r})")
    version = card.get("format_version")
    if not isinstance(version, int) or not 1 <= version <= FORMAT_VERSION:
        raise CheckpointError(
            f"{card_path} has format_version {version!r}; this faa_core reads up to {FORMAT_VERSION} "
            "(upgrade faa_core)"
        )
    _check_sections(card, card_path)
    return card


def _check_sections(card: dict[str, Any], card_path: Path) -> None:
    """The card's parts that code reads must have the types and ranges that code expects."""
    for key in ("model_config", "encoders", "trained_on", "evaluation"):
        if key in card and not isinstance(card[key], dict):
            raise CheckpointError(f"{card_path}: {key} must be a JSON object, got {_kind(card[key])}")
    if "synthetic" in card and not isinstance(card["synthetic"], bool):
        raise CheckpointError(f"{card_path}: synthetic must be true or false, got {_kind(card['synthetic'])}")
    for side, enc in (card.get("encoders") or {}).items():
        if not isinstance(enc, dict):
            raise CheckpointError(f"{card_path}: encoders.{side} must be a JSON object, got {_kind(enc)}")
    voice = (card.get("encoders") or {}).get("voice") or {}
    rate = voice.get("token_rate_per_s")
    if rate is not None and not (_is_number(rate) and 0 < rate <= 100):
        raise CheckpointError(
            f"{card_path}: encoders.voice.token_rate_per_s must be a number in (0, 100] tokens per second "
            f"(or null), got {rate!r}"
        )


def _kind(value: Any) -> str:
    text = json.dumps(value)
    return f"{type(value).__name__} {text[:40]}{'...' if len(text) > 40 else ''}"


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _check_model_config(raw: Any) -> None:
    """Types and ranges of ``model_config`` before anything is built from it."""
    if not isinstance(raw, dict):
        raise ValueError(f"must be a JSON object, got {_kind(raw)}")
    for name in _INT_FIELDS:
        if name in raw:
            v = raw[name]
            if isinstance(v, bool) or not isinstance(v, int):
                raise ValueError(f"{name} must be an integer, got {_kind(v)}")
            top = MAX_LAYERS if name == "n_layers" else MAX_WIDTH
            if not 0 <= v <= top:
                raise ValueError(f"{name} must be in [0, {top}], got {v}")
    for name in _FLOAT_FIELDS:
        if name in raw and not _is_number(raw[name]):
            raise ValueError(f"{name} must be a finite number, got {_kind(raw[name])}")
    if "cosine_residual" in raw and not isinstance(raw["cosine_residual"], bool):
        raise ValueError(f"cosine_residual must be true or false, got {_kind(raw['cosine_residual'])}")
    if "mlp_ratio" in raw and not 0 < raw["mlp_ratio"] <= 64:
        raise ValueError(f"mlp_ratio must be in (0, 64], got {raw['mlp_ratio']}")
    grid = raw.get("face_grid", [8, 8])
    if (not isinstance(grid, list) or len(grid) != 2
            or not all(isinstance(g, int) and not isinstance(g, bool) and 0 < g <= 64 for g in grid)):
        raise ValueError(f"face_grid must be two integers in [1, 64], got {_kind(grid)}")


def _header_shapes(weights_path: Path) -> dict[str, tuple[tuple[int, ...], str]]:
    """Tensor names, shapes and dtypes from the safetensors header (no tensor data is read)."""
    from safetensors import safe_open

    out = {}
    with safe_open(str(weights_path), framework="pt", device="cpu") as f:
        for key in f.keys():
            sl = f.get_slice(key)
            out[key] = (tuple(int(d) for d in sl.get_shape()), str(sl.get_dtype()))
    return out


def load_checkpoint(source: str | os.PathLike, device: torch.device | str = "cpu") -> tuple[FAAModel, dict[str, Any]]:
    """Build the model from the card and load its tensors, checking every key and shape."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    folder = resolve_checkpoint_dir(source)
    card = read_card(folder)
    try:
        _check_model_config(card["model_config"])
        config = FAAConfig.from_dict(card["model_config"])
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{folder / CARD_FILE}: bad model_config: {exc}") from exc
    weights_path = folder / WEIGHTS_FILE
    if not weights_path.is_file():
        raise CheckpointError(f"{folder} has no {WEIGHTS_FILE}")
    try:
        header = _header_shapes(weights_path)
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"{weights_path} cannot be read: {exc}") from exc
    # Shapes the config implies, from a model on the meta device (no memory): checked before building.
    with torch.device("meta"):
        meta_state = FAAModel(config).state_dict()
    expected = {k: tuple(v.shape) for k, v in meta_state.items()}
    n_params = sum(math.prod(s) for s in expected.values())
    if n_params > MAX_PARAMETERS:
        raise CheckpointError(
            f"{folder / CARD_FILE}: its model_config describes {n_params:,} parameters; at most "
            f"{MAX_PARAMETERS:,} are loaded"
        )
    missing = sorted(set(expected) - set(header))
    unexpected = sorted(set(header) - set(expected))
    wrong = [
        f"{k}: checkpoint {header[k][0]} vs config {expected[k]}"
        for k in sorted(set(expected) & set(header))
        if header[k][0] != expected[k]
    ]
    if missing or unexpected or wrong:
        raise CheckpointError(
            f"{weights_path} does not match its config: missing {missing[:5]}, unexpected "
            f"{unexpected[:5]}, shape mismatches {wrong[:5]}"
        )
    not_float = sorted(k for k, (_, dtype) in header.items()
                       if meta_state[k].is_floating_point() and dtype not in ("F16", "BF16", "F32", "F64"))
    if not_float:
        raise CheckpointError(f"{weights_path}: tensors {not_float[:5]} are not floating point")
    try:
        state = load_file(str(weights_path), device="cpu")
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"{weights_path} cannot be read: {exc}") from exc
    bad = sorted(k for k, v in state.items() if not bool(torch.isfinite(v).all()))
    if bad:
        raise CheckpointError(
            f"{weights_path} holds NaN or infinite values in {len(bad)} tensors ({', '.join(bad[:3])}); "
            "the checkpoint is corrupt or its training diverged"
        )
    model = FAAModel(config)
    model.load_state_dict(state)
    return model.to(device).eval(), card
