"""What a Learn run may be: worlds, methods, switches, seed, checked into a :class:`LearnJob`.

The menu is data (``training/configs/learn.yaml``); the worlds are the
synthetic-world presets that exist when the server runs and that are small
enough to train in about a minute. Every bad choice becomes a
:class:`ChoiceError` whose message names the problem and the fix.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from typing import Any, Iterable, Optional

import yaml

from training.config import CONFIG_DIR, load_config

LEARN_CONFIG = CONFIG_DIR / "learn.yaml"


class ChoiceError(ValueError):
    """A visitor's choice that cannot be run; the message says what to pick instead."""


@lru_cache(maxsize=1)
def settings() -> dict[str, Any]:
    """The tab's menu, sizes and limits (``training/configs/learn.yaml``)."""
    data = yaml.safe_load(LEARN_CONFIG.read_text(encoding="utf-8"))
    for key in ("methods", "switches", "worlds", "limits"):
        if key not in data:
            raise ValueError(f"{LEARN_CONFIG}: missing section {key!r}")
    return data


def method_names() -> list[str]:
    return list(settings()["methods"])


def switch_names() -> list[str]:
    return list(settings()["switches"])


def world_overrides() -> dict[str, Any]:
    """The preset overrides every offered world is built with (the teaching size)."""
    return dict(settings()["worlds"].get("overrides") or {})


def _train_videos(preset: str) -> int:
    from training.synth import get_preset

    spec = get_preset(preset, world_overrides())
    return int(spec.identities["train"]) * int(spec.videos_per_identity["train"])


def _candidates() -> list[str]:
    """The default world, then every suite world's variants on the default world's preset, then the suite as is."""
    import training.synth as synth

    default = str(settings()["worlds"]["default"])
    base = default.split("+")[0]
    names = [default]
    suite = list(getattr(synth, "suite_names", lambda: [])())
    for world in suite:
        names.append("+".join([base] + world.split("+")[1:]))
    names += suite + list(synth.preset_names())
    return list(dict.fromkeys(names))


def world_names() -> list[str]:
    """Worlds that exist now and train in time (at most ``worlds.max_train_videos``), default first.

    The default world, the evaluation suite's generative variants at the
    default world's size (``tiny+nonlinear+private_heavy``), and any suite
    world or preset that is small enough. Read at every call: the suite may
    change while the server runs; a name that fails to load is left out.
    """
    limit = int(settings()["worlds"]["max_train_videos"])
    names = []
    for name in _candidates():
        try:
            if _train_videos(name) <= limit:
                names.append(name)
        except (ValueError, KeyError, TypeError):
            continue
    return names


@dataclass(frozen=True)
class LearnJob:
    """One checked choice, ready to train: the objective config names and the overrides."""

    world: str
    method: str
    switches_off: tuple[str, ...]
    seed: int
    configs: tuple[str, ...]
    overrides: tuple[str, ...]
    world_seed: int = 0
    notes: tuple[str, ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for k in ("switches_off", "configs", "overrides", "notes"):
            d[k] = list(d[k])
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "LearnJob":
        return cls(**{**d, **{k: tuple(d.get(k, ())) for k in ("switches_off", "configs", "overrides", "notes")}})

    def config(self) -> dict[str, Any]:
        """The merged training config (objective, then the size for this world, then overrides)."""
        return load_config(list(self.configs), list(self.overrides))

    @property
    def label(self) -> str:
        off = f" without {', '.join(self.switches_off)}" if self.switches_off else ""
        return f"{self.method}{off} (seed {self.seed}, world {self.world})"


def parse_seed(seed: Any) -> int:
    """An integer seed from a number or text ("3", 3, 3.0); anything else is a ChoiceError."""
    if isinstance(seed, bool) or seed is None or (isinstance(seed, str) and not seed.strip()):
        raise ChoiceError(f"seed must be a whole number such as 0 or 1, got {seed!r}")
    if isinstance(seed, str):
        try:
            value = float(seed.strip())
        except ValueError:
            raise ChoiceError(f"seed must be a whole number such as 0 or 1, got {seed!r}") from None
    elif isinstance(seed, (int, float)):
        value = float(seed)
    else:
        raise ChoiceError(f"seed must be a whole number such as 0 or 1, got {seed!r}")
    if not math.isfinite(value) or value != int(value):
        raise ChoiceError(f"seed must be a whole number such as 0 or 1, got {seed!r}")
    if not 0 <= value < 2**31:
        raise ChoiceError(f"seed must be between 0 and {2**31 - 1}, got {int(value)}")
    return int(value)


def make_job(world: Any, method: Any, switches_off: Optional[Iterable[Any]], seed: Any) -> LearnJob:
    """Check a visitor's choice and turn it into a LearnJob (ChoiceError naming the bad part)."""
    s = settings()
    worlds = world_names()
    if not isinstance(world, str) or world not in worlds:
        raise ChoiceError(f"unknown world {world!r}: choose one of {worlds}")
    methods = s["methods"]
    if not isinstance(method, str) or method not in methods:
        raise ChoiceError(f"unknown method {method!r}: choose one of {list(methods)}")
    if switches_off is None:
        switches_off = []
    if isinstance(switches_off, str) or not isinstance(switches_off, (list, tuple)):
        raise ChoiceError(f"switches must be a list of switch names to turn off (e.g. [] or ['FVM']), got {switches_off!r}")
    off: list[str] = []
    for name in switches_off:
        if not isinstance(name, str) or name not in s["switches"]:
            raise ChoiceError(f"unknown switch {name!r}: the switches are {list(s['switches'])}")
        if name not in off:
            off.append(name)
    seed_value = parse_seed(seed)
    notes: list[str] = []
    if off and method not in s.get("switch_methods", []):
        notes.append(f"{method} has none of FAA's switches; {', '.join(off)} ignored")
        off = []
    off = [n for n in s["switches"] if n in off]  # a stable order
    w = s["worlds"]
    size = (w.get("sizes") or {}).get(world, w["size"])
    job = LearnJob(
        world=world, method=method, switches_off=tuple(off), seed=seed_value,
        configs=(methods[method], size),
        overrides=tuple(list((s.get("method_overrides") or {}).get(method, []))
                        + [s["switches"][n] for n in off] + [f"seed={seed_value}"]),
        world_seed=int(w.get("world_seed", 0)), notes=tuple(notes),
    )
    job.config()  # a config that does not load is the server's fault: fail here, not in the worker
    return job
