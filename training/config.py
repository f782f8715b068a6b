"""Training configs: YAML files in ``training/configs/``, overridable from the command line.

An override is ``section.key=value`` with the value parsed as YAML
(``optim.lr=3e-4``, ``loss.fvm=false``, ``clustering.fixed=true``).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Iterable, Sequence

import yaml

CONFIG_DIR = Path(__file__).resolve().parent / "configs"
OBJECTIVES = ("faa", "sl", "wen2021", "faa_supervised")

# Values every config falls back to, so that a config file only says what differs.
DEFAULTS: dict[str, Any] = {
    "objective": "faa",
    "seed": 0,
    "model": {"use_tokens": True},
    "optim": {"name": "adam", "lr": 1e-3, "weight_decay": 0.0, "momentum": 0.9, "batch_size": 256},
    "schedule": {"steps_per_round": 250, "max_rounds": 40, "patience": 10},
    "clustering": {
        "start_fraction": 0.5, "factor": 0.8, "patience": 2, "min_fraction": 0.02, "fixed": False, "niter": 20,
        "space": "learned",
    },
    "loss": {
        "fvc": "infonce", "ms_alpha": 2.0, "ms_beta": 50.0, "ms_base": 1.0, "fvm": True, "fvm_weight": 1.0,
        "wen_scale": 10.0, "wen_local_weight": 1.0, "reweight_start_round": 2, "reweight_drop_fraction": 0.05,
    },
    "pairs": {"diverse_positives": True, "hard_negatives": True},
    "validation": {"trials": 2000, "scoring": "fusion"},
    # how a face and a voice are known to belong together: the same video (default), or, for the
    # supervised objectives on faces without videos (VGGFace1 photos), the same identity
    "data": {"link": "video"},
}


def _merge(base: dict, extra: dict, where: str = "") -> dict:
    out = copy.deepcopy(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value, f"{where}{key}.")
        else:
            out[key] = value
    return out


def parse_override(text: str) -> tuple[list[str], Any]:
    if "=" not in text:
        raise ValueError(f"override {text!r} must look like section.key=value")
    key, raw = text.split("=", 1)
    return key.strip().split("."), yaml.safe_load(raw)


def read_config_file(path_or_name: str | Path) -> dict[str, Any]:
    """One YAML config as a mapping: a path, or a name under training/configs/."""
    path = Path(path_or_name)
    if not path.exists() and (CONFIG_DIR / f"{path_or_name}.yaml").exists():
        path = CONFIG_DIR / f"{path_or_name}.yaml"
    if not path.is_file():
        raise FileNotFoundError(f"config not found: {path_or_name} (looked in {CONFIG_DIR} too)")
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a config must be a mapping")
    return data


def load_config(path_or_name: str | Path | Sequence[str | Path], overrides: Iterable[str] = ()) -> dict[str, Any]:
    """Read a config and apply overrides.

    Several configs merge left to right, so a partial one can resize another:
    ``load_config(["faa", "small"])`` is FAA sized for the ``small`` world.
    """
    names = [path_or_name] if isinstance(path_or_name, (str, Path)) else list(path_or_name)
    if not names:
        raise ValueError("no config given")
    cfg = copy.deepcopy(DEFAULTS)
    for name in names:
        cfg = _merge(cfg, read_config_file(name))
    for item in overrides:
        keys, value = parse_override(item)
        node = cfg
        for k in keys[:-1]:
            if not isinstance(node.get(k), dict):
                raise ValueError(f"override {item!r}: {k!r} is not a config section")
            node = node[k]
        if keys[-1] not in node and keys[0] not in ("model",):
            raise ValueError(f"override {item!r}: unknown key {'.'.join(keys)}")
        node[keys[-1]] = value
    if cfg["objective"] not in OBJECTIVES:
        raise ValueError(f"objective must be one of {OBJECTIVES}, got {cfg['objective']!r}")
    if cfg["validation"]["scoring"] not in ("fusion", "cosine", "combined"):
        raise ValueError(f"validation.scoring must be fusion, cosine or combined")
    if cfg["loss"]["fvc"] not in ("infonce", "multi_similarity"):
        raise ValueError("loss.fvc must be infonce or multi_similarity")
    return cfg
