"""Training configs: YAML files in ``training/configs/``, overridable from the command line.

An override is ``section.key=value`` with the value parsed as YAML
(``optim.lr=3e-4``, ``loss.fvm=false``, ``clustering.fixed=true``).

:data:`SCHEMA` is the one place defaults live and says what each key accepts;
a config file only says what differs. An unknown key (in a file or an
override) or a value of the wrong type or range is refused with one line
naming the key, the nearest valid one, and what it accepts. Three keys
default to ``null`` = "the objective's own" (``loss.fvc``, ``loss.fvm``,
``clustering.space``; see ``training/loop/objectives.py``) and are resolved
here, so a loaded config holds the values a run uses.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import math
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import yaml

from faa_core.model.config import FAAConfig
from training.loop.objectives import OBJECTIVES as OBJECTIVE_TABLE
from training.loop.objectives import LOSSES
from training.loop.negatives import NEGATIVES

CONFIG_DIR = Path(__file__).resolve().parent / "configs"
OBJECTIVES = tuple(OBJECTIVE_TABLE)


class ConfigError(ValueError):
    """A config file or override that cannot be used; the message is one line naming the key and the fix."""


# -- what a key accepts ------------------------------------------------------------------------------
Check = Callable[[Any], Any]  # returns the (normalised) value, or raises ValueError saying what is accepted


def integer(low: int | None = None, high: int | None = None) -> Check:
    """Integers in [low, high]."""
    def check(v: Any) -> int:
        if isinstance(v, bool) or not isinstance(v, int):
            raise ValueError(_wanted("an integer", low, high))
        if (low is not None and v < low) or (high is not None and v > high):
            raise ValueError(_wanted("an integer", low, high))
        return v
    return check


def number(low: float | None = None, high: float | None = None, low_open: bool = False, high_open: bool = False) -> Check:
    """Finite numbers in the given interval; ``1e-3`` (a string to YAML 1.1) is read as a number."""
    def check(v: Any) -> float:
        if isinstance(v, str):
            try:
                v = float(v)
            except ValueError:
                pass
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise ValueError(_wanted("a number", low, high, low_open, high_open))
        v = float(v)
        if low is not None and (v < low or (low_open and v == low)):
            raise ValueError(_wanted("a number", low, high, low_open, high_open))
        if high is not None and (v > high or (high_open and v == high)):
            raise ValueError(_wanted("a number", low, high, low_open, high_open))
        return v
    return check


def flag(v: Any) -> bool:
    if not isinstance(v, bool):
        raise ValueError("must be true or false")
    return v


def one_of(*choices: str, null: bool = False) -> Check:
    """One of ``choices`` (or null = the objective's own, when ``null``)."""
    def check(v: Any) -> Any:
        if v is None and null:
            return None
        if v not in choices:
            raise ValueError(f"must be one of {', '.join(map(str, choices))}" + (" (or null)" if null else ""))
        return v
    return check


def optional(inner: Check) -> Check:
    """``inner``'s values or null (= the objective's own)."""
    def check(v: Any) -> Any:
        return None if v is None else inner(v)
    return check


def steps_list(v: Any) -> list[int]:
    """A list of step counts >= 0 (learning-rate milestones)."""
    if not isinstance(v, list) or any(isinstance(x, bool) or not isinstance(x, int) or x < 0 for x in v):
        raise ValueError("must be a list of integers >= 0, e.g. [1000, 2000]")
    return sorted(v)


def _wanted(what: str, low: Any, high: Any, low_open: bool = False, high_open: bool = False) -> str:
    if low is not None and high is not None:
        return f"must be {what} in {'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
    if low is not None:
        return f"must be {what} {'>' if low_open else '>='} {low}"
    if high is not None:
        return f"must be {what} {'<' if high_open else '<='} {high}"
    return f"must be {what}"


# -- the schema: every key, its default and its check ------------------------------------------------
# model: FAAConfig's tunable fields with FAAConfig's defaults (the library owns them); the dimensions come from the data
DATA_MODEL_KEYS = ("face_dim", "voice_dim", "face_token_dim", "voice_token_dim", "face_grid")
_MODEL: dict[str, tuple[Any, Check]] = {"use_tokens": (True, flag)}  # false = global-only (per-file embeddings)
for _f in dataclasses.fields(FAAConfig):
    if _f.name not in DATA_MODEL_KEYS:
        kind = integer(1) if _f.type in (int, "int") else flag if _f.type in (bool, "bool") else number()
        _MODEL[_f.name] = (_f.default, kind)

SCHEMA: dict[str, Any] = {
    "objective": ("faa", one_of(*OBJECTIVES)),
    "seed": (0, integer(0)),
    "model": _MODEL,
    "optim": {
        "name": ("adam", one_of("adam", "sgd")),
        "lr": (1e-3, number(0, low_open=True)),
        "weight_decay": (0.0, number(0)),
        "momentum": (0.9, number(0, 1, high_open=True)),  # sgd only
        "batch_size": (256, integer(2)),  # the global batch; a contrastive batch needs two pairs at least
    },
    "schedule": {
        "steps_per_round": (250, integer(1)),
        "max_rounds": (40, integer(0)),  # 0: the untrained model is the result
        "patience": (10, integer(1)),  # stop after this many validations without improvement
    },
    "clustering": {  # unsupervised objectives: k-means pseudo-labels each round
        "start_fraction": (0.5, number(0, 1, low_open=True)),  # clusters at round 0, as a fraction of training videos
        "factor": (0.8, number(0, 1, low_open=True)),  # multiply the count by this when validation stalls ...
        "patience": (2, integer(1)),  # ... for this many rounds
        "min_fraction": (0.02, number(0, 1, low_open=True)),
        "fixed": (False, flag),  # ablation: keep the starting count
        "niter": (20, integer(1)),
        "space": (None, one_of("input", "learned", "both", null=True)),  # null: the objective's
    },
    "loss": {
        "fvc": (None, one_of(*LOSSES, null=True)),  # the batch loss; null: the objective's
        "ms_alpha": (2.0, number(0, low_open=True)),
        "ms_beta": (50.0, number(0, low_open=True)),
        "ms_base": (1.0, number()),
        "fvm": (None, optional(flag)),  # train the match head; null: the objective's (false = the no-FVM ablation)
        "fvm_weight": (1.0, number(0)),
        "wen_scale": (10.0, number(0, low_open=True)),
        "wen_local_weight": (1.0, number(0)),
        "reweight_start_round": (2, integer(0)),
        "reweight_drop_fraction": (0.05, number(0, 1, high_open=True)),
    },
    "pairs": {
        "diverse_positives": (True, flag),
        "hard_negatives": (True, flag),  # the ablation switch: false = uniform negatives (when negatives is null)
        # FVM negatives (training/loop/negatives.py): uniform | hard | group | group_hard; null: hard_negatives decides
        "negatives": (None, one_of(*NEGATIVES, null=True)),
        "groups": (2, integer(2)),  # coarse groups of the group modes
        "group_share": (0.5, number(0, 1, low_open=True)),  # share of anchors whose negative is drawn in-group
    },
    "wen": {  # wen2021: the constants of Wen et al.'s code (training/loop/wen2021.py)
        "reweight_steps": (2400, integer(0)),  # the reweighting stage; the main stage follows
        "warmup_steps": (500, integer(0)),  # every identity weighs 1 until the first curriculum update
        "update_every": (100, integer(1)),
        "initial_loss": (14.0, number()),  # the moving averages' start
        "momentum": (0.9, number(0, 1, high_open=True)),
        "start_fraction": (0.5, number(0, 1, low_open=True)),  # the first update keeps the easiest half
        "add_fraction": (0.024, number(0, 1, low_open=True)),  # each later update adds the next-easiest 2.4%
        "stop_fraction": (0.9, number(0, 1, low_open=True)),  # ... until 90% are in
        "decay": (0.99, number(0, 1, low_open=True)),  # weights already in decay by this per update
        "lr_decay": (0.1, number(0, 1, low_open=True)),
        "lr_decay_steps_reweight": ([1000, 2000], steps_list),  # from the start of the run
        "lr_decay_steps_main": ([2000, 3000], steps_list),  # from the start of the main stage
    },
    "cca": {  # cca, cca_supervised: regularised CCA (faa_core/linear.py)
        "pca_dims": (64, integer(1)),
        "components": (8, integer(1)),
        "reg": (1.0, number(0, low_open=True)),  # ridge, as a fraction of each covariance's mean eigenvalue
    },
    "validation": {"trials": (2000, integer(2)), "scoring": ("fusion", one_of("fusion", "cosine", "combined"))},
    # how a face and a voice are known to belong together: the same video (default), or, for the
    # supervised objectives on faces without videos (VGGFace1 photos), the same identity
    "data": {"link": ("video", one_of("video", "identity"))},
}


def _defaults(schema: Mapping[str, Any]) -> dict[str, Any]:
    return {k: _defaults(v) if isinstance(v, dict) else v[0] for k, v in schema.items()}


DEFAULTS: dict[str, Any] = _defaults(SCHEMA)


# -- checking ------------------------------------------------------------------------------------------
def _unknown(where: str, path: str, key: str, valid: Iterable[str]) -> ConfigError:
    """One line: the unknown key and the nearest valid one (or the valid ones when none is near)."""
    if path == "model." and key in DATA_MODEL_KEYS:
        return ConfigError(f"{where}model.{key} comes from the data's features; remove it")
    close = difflib.get_close_matches(key, list(valid), n=1, cutoff=0.5)
    hint = f"did you mean '{path}{close[0]}'?" if close else "valid: " + ", ".join(f"{path}{v}" for v in valid)
    return ConfigError(f"{where}unknown key '{path}{key}' ({hint})")


def check_keys(data: Mapping[str, Any], where: str = "", schema: Mapping[str, Any] = SCHEMA, path: str = "") -> None:
    """Refuse keys the schema does not know (``where`` prefixes the message, e.g. the file)."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where}{path.rstrip('.') or 'a config'} must be a mapping of keys, got {data!r}")
    for key, value in data.items():
        if key not in schema:
            raise _unknown(where, path, str(key), schema)
        if isinstance(schema[key], dict):
            check_keys(value, where, schema[key], f"{path}{key}.")


def _check_values(cfg: dict[str, Any], schema: Mapping[str, Any], path: str = "") -> None:
    for key, spec in schema.items():
        if isinstance(spec, dict):
            _check_values(cfg[key], spec, f"{path}{key}.")
            continue
        try:
            cfg[key] = spec[1](cfg[key])
        except ValueError as exc:
            raise ConfigError(f"{path}{key}={_show(cfg[key])}: {exc}") from None


def _show(value: Any) -> str:
    return "null" if value is None else (str(value).lower() if isinstance(value, bool) else str(value))


def resolve_config(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """A complete, checked config: ``cfg`` over the schema's defaults, values checked, the objective's defaults filled in.

    Idempotent, so the trainer can take a config from :func:`load_config` or
    one written by hand.
    """
    check_keys(cfg)
    out = _merge(DEFAULTS, cfg)
    _check_values(out, SCHEMA)
    obj = OBJECTIVE_TABLE[out["objective"]]
    loss = out["loss"]
    if loss["fvc"] is None:
        loss["fvc"] = obj.loss
    elif loss["fvc"] not in obj.losses:
        raise ConfigError(f"loss.fvc={loss['fvc']}: objective {obj.name} trains with {' or '.join(obj.losses)}")
    if loss["fvm"] is None:
        loss["fvm"] = obj.trains_fvm
    elif loss["fvm"] and not obj.trains_fvm:
        raise ConfigError(f"loss.fvm=true: objective {obj.name} does not train the match head (FVM); "
                          "remove the override or use faa / faa_supervised")
    if out["pairs"]["negatives"] is None:
        out["pairs"]["negatives"] = "hard" if out["pairs"]["hard_negatives"] else "uniform"
    if out["clustering"]["space"] is None and not obj.supervised:
        out["clustering"]["space"] = obj.clustering_space
    if out["data"]["link"] == "identity" and not obj.supervised:
        raise ConfigError(f"data.link=identity uses identity labels; objective {obj.name} is unsupervised "
                          "(use faa_supervised or wen2021, or face-track frames that share videos)")
    try:
        FAAConfig(**{k: v for k, v in out["model"].items() if k != "use_tokens"})
    except ValueError as exc:  # FAAConfig's own range checks (d_model divisible by n_heads, dropout < 1, ...)
        msg = str(exc).replace("FAAConfig.", "model.")
        raise ConfigError(msg if msg.startswith("model.") else f"model: {msg}") from None
    return out


def config_differences(old: Mapping[str, Any], new: Mapping[str, Any], path: str = "") -> list[str]:
    """``key: old -> new`` for every key whose value differs (keys only one side has count too)."""
    out = []
    for key in sorted(set(old) | set(new), key=str):
        a, b = old.get(key, "<absent>"), new.get(key, "<absent>")
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            out += config_differences(a, b, f"{path}{key}.")
        elif a != b:
            out.append(f"{path}{key}: {_show(a)} -> {_show(b)}")
    return out


# -- reading -------------------------------------------------------------------------------------------
def _merge(base: Mapping[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(dict(base))
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def parse_override(text: str) -> tuple[list[str], Any]:
    """``section.key=value`` -> (["section", "key"], value parsed as YAML)."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} must look like section.key=value")
    key, raw = text.split("=", 1)
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError:
        raise ConfigError(f"override {text!r}: the value is not valid YAML (quote it, e.g. key='a: b')") from None
    return key.strip().split("."), value


def read_config_file(path_or_name: str | Path) -> dict[str, Any]:
    """One YAML config as a mapping: a path, or a name under training/configs/."""
    path = Path(path_or_name)
    if not path.exists() and (CONFIG_DIR / f"{path_or_name}.yaml").exists():
        path = CONFIG_DIR / f"{path_or_name}.yaml"
    if not path.is_file():
        names = sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))
        raise FileNotFoundError(f"config not found: {path_or_name} (a YAML path, or one of {', '.join(names)})")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{path}: not valid YAML{at}; fix the file") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a config must be a mapping of sections")
    check_keys(data, where=f"{path}: ")
    return data


def load_config(path_or_name: str | Path | Sequence[str | Path], overrides: Iterable[str] = ()) -> dict[str, Any]:
    """Read a config and apply overrides.

    Several configs merge left to right, so a partial one can resize another:
    ``load_config(["faa", "small"])`` is FAA sized for the ``small`` world.
    """
    names = [path_or_name] if isinstance(path_or_name, (str, Path)) else list(path_or_name)
    if not names:
        raise ConfigError("no config given")
    cfg: dict[str, Any] = {}
    for name in names:
        cfg = _merge(cfg, read_config_file(name))
    for item in overrides:
        keys, value = parse_override(item)
        node, schema, path = cfg, SCHEMA, ""
        for k in keys[:-1]:
            if k not in schema:
                raise _unknown(f"override {item}: ", path, k, schema)
            if not isinstance(schema[k], dict):
                raise ConfigError(f"override {item}: {path}{k} is a value, not a config section")
            node, schema, path = node.setdefault(k, {}), schema[k], f"{path}{k}."
        if keys[-1] not in schema:
            raise _unknown(f"override {item}: ", path, keys[-1], schema)
        if isinstance(schema[keys[-1]], dict):
            check_keys(value, f"override {item}: ", schema[keys[-1]], f"{path}{keys[-1]}.")
            node[keys[-1]] = _merge(node.get(keys[-1], {}), value)
        else:
            node[keys[-1]] = value
    return resolve_config(cfg)
