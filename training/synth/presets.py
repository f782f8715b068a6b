"""World presets and variants: the YAML in ``presets.yaml`` turned into a checked, typed spec.

Presets are data so that a teacher can copy one, change a strength and see
what it does; this module only merges a preset over ``defaults``, rejects
unknown or impossible values, and freezes the result into :class:`WorldSpec`.
The fully resolved spec is stored in each world's ``world.json`` (the recipe),
so a world never depends on the preset file it was made from.

A world name is a preset optionally followed by ``+variant`` parts, e.g.
``small+nonlinear+bursty``: each variant (``variants:`` in the YAML) is a set
of overrides merged in the order named, after the preset and before explicit
``overrides``. The generative switches the variants set (``maps``,
``face.regions``, ``voice.burst``, ``traits.gender_correlation``) are
documented in :mod:`training.synth.world`. ``suite`` in the YAML lists the
world names of the evaluation suite (:func:`suite_names`).
"""

from __future__ import annotations

import copy
import math
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Mapping, Sequence

import yaml

PRESET_FILE = Path(__file__).with_name("presets.yaml")
SPLITS = ("train", "val", "test")
STORAGES = ("stored", "procedural")
MAP_KINDS = ("linear", "mlp")
# keys added after the first worlds were written: a world.json without them means these values
_LEGACY = {
    "face": {"regions": 1},
    "voice": {"burst": 0.0},
    "traits": {"gender_correlation": 0.0},
    "maps": {"kind": "linear", "hidden": 0, "gain": 1.0},
}


@dataclass(frozen=True)
class FaceSpec:
    global_dim: int
    token_dim: int
    grid: tuple[int, int]
    region_fraction: float
    regions: int


@dataclass(frozen=True)
class VoiceSpec:
    global_dim: int
    token_dim: int
    token_rate: float
    duration: tuple[float, float]
    voiced_fraction: float
    burst: float


@dataclass(frozen=True)
class TraitSpec:
    gender_p: float
    age_levels: int
    continuous: int
    private_face: int
    private_voice: int
    nuisance: int
    gender_correlation: float

    @property
    def shared_dim(self) -> int:
        """gender + age + continuous traits: the shared latent vector's length."""
        return 2 + self.continuous


@dataclass(frozen=True)
class SharedSpec:
    gender: float
    age: float
    continuous: float


@dataclass(frozen=True)
class NoiseSpec:
    item: float
    global_: float
    token: float
    private_item: float
    nuisance_item: float


@dataclass(frozen=True)
class GlobalMix:
    shared: float
    private: float
    nuisance: float
    noise: float
    offset: float


@dataclass(frozen=True)
class TokenMix:
    shared: float
    private: float
    nuisance: float
    noise: float
    position: float
    silence: float


@dataclass(frozen=True)
class MapSpec:
    """How latent factors become features: one linear map, or a random 2-layer MLP per modality."""

    kind: str
    hidden: int
    gain: float


@dataclass(frozen=True)
class ListSpec:
    verify_negatives: int
    val_negatives: int


@dataclass(frozen=True)
class WorldSpec:
    """Everything that decides a world, besides the seed and an optional protocol binding."""

    name: str
    description: str
    storage: str
    shard_size: int
    identities: dict[str, int]
    videos_per_identity: dict[str, int]
    frames_per_video: int
    utterances_per_video: int
    face: FaceSpec
    voice: VoiceSpec
    traits: TraitSpec
    shared: SharedSpec
    noise: NoiseSpec
    global_mix: GlobalMix
    token_mix: TokenMix
    lists: ListSpec
    maps: MapSpec

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (the recipe stored in world.json)."""
        d = asdict(self)
        d["noise"]["global"] = d["noise"].pop("global_")
        d["face"]["grid"] = list(self.face.grid)
        d["voice"]["duration"] = list(self.voice.duration)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "WorldSpec":
        """Build and validate a spec from a resolved dict (preset or world.json)."""
        d = _merge(_LEGACY, d)
        _known(d, cls, "spec")

        def sub(key: str, klass: type, rename: Mapping[str, str] | None = None) -> Any:
            raw = dict(d[key])
            for src, dst in (rename or {}).items():
                if src in raw:
                    raw[dst] = raw.pop(src)
            _known(raw, klass, key)
            missing = [f.name for f in fields(klass) if f.name not in raw]
            if missing:
                raise ValueError(f"preset {key}: missing {missing}")
            return klass(**raw)

        face = sub("face", FaceSpec)
        face = FaceSpec(
            int(face.global_dim), int(face.token_dim), (int(face.grid[0]), int(face.grid[1])),
            float(face.region_fraction), int(face.regions),
        )
        voice = sub("voice", VoiceSpec)
        voice = VoiceSpec(
            int(voice.global_dim), int(voice.token_dim), float(voice.token_rate),
            (float(voice.duration[0]), float(voice.duration[1])), float(voice.voiced_fraction), float(voice.burst),
        )
        maps = sub("maps", MapSpec)
        maps = MapSpec(str(maps.kind), int(maps.hidden), float(maps.gain))
        spec = cls(
            name=str(d["name"]),
            description=str(d.get("description", "")),
            storage=str(d["storage"]),
            shard_size=int(d["shard_size"]),
            identities={s: int(d["identities"][s]) for s in SPLITS},
            videos_per_identity={s: int(d["videos_per_identity"][s]) for s in SPLITS},
            frames_per_video=int(d["frames_per_video"]),
            utterances_per_video=int(d["utterances_per_video"]),
            face=face,
            voice=voice,
            traits=sub("traits", TraitSpec),
            shared=sub("shared", SharedSpec),
            noise=sub("noise", NoiseSpec, {"global": "global_"}),
            global_mix=sub("global_mix", GlobalMix),
            token_mix=sub("token_mix", TokenMix),
            lists=sub("lists", ListSpec),
            maps=maps,
        )
        spec.validate()
        return spec

    def validate(self) -> None:
        """ValueError naming the first impossible setting."""
        if self.storage not in STORAGES:
            raise ValueError(f"storage must be one of {STORAGES}, got {self.storage!r}")
        if self.shard_size < 1:
            raise ValueError("shard_size must be >= 1")
        for s in SPLITS:
            if self.identities[s] < 0:
                raise ValueError(f"identities.{s} must be >= 0")
            if self.videos_per_identity[s] < 1:
                raise ValueError(f"videos_per_identity.{s} must be >= 1")
        if self.identities["train"] < 2:
            raise ValueError("a world needs at least 2 training identities")
        if self.frames_per_video < 1 or self.utterances_per_video < 1:
            raise ValueError("frames_per_video and utterances_per_video must be >= 1")
        f, v, t = self.face, self.voice, self.traits
        if f.global_dim < 2 or v.global_dim < 2 or f.token_dim < 0 or v.token_dim < 0:
            raise ValueError("global dims must be >= 2 and token dims >= 0")
        if min(f.grid) < 1:
            raise ValueError(f"face grid must be positive, got {f.grid}")
        if not 0 < f.region_fraction <= 1:
            raise ValueError("face.region_fraction must be in (0, 1]")
        if not 0 < v.voiced_fraction <= 1:
            raise ValueError("voice.voiced_fraction must be in (0, 1]")
        if f.regions < 1 or f.regions > f.grid[0] * f.grid[1]:
            raise ValueError(f"face.regions must be between 1 and the grid's {f.grid[0] * f.grid[1]} cells, got {f.regions}")
        if f.regions > 1 and f.regions > t.shared_dim:
            raise ValueError(f"face.regions ({f.regions}) cannot exceed the {t.shared_dim} shared traits they split")
        if not (math.isfinite(v.burst) and (v.burst == 0 or v.burst >= 1)):
            raise ValueError(f"voice.burst is a mean voiced run length in tokens: 0 (independent tokens) or >= 1, got {v.burst}")
        if v.burst > 0 and v.voiced_fraction < 1 and v.voiced_fraction / ((1 - v.voiced_fraction) * v.burst) > 1:
            raise ValueError("voice.burst too short for voice.voiced_fraction (silent runs would be under one token); raise burst")
        if not 0 <= t.gender_correlation < 1:
            raise ValueError(f"traits.gender_correlation must be in [0, 1), got {t.gender_correlation}")
        if self.maps.kind not in MAP_KINDS:
            raise ValueError(f"maps.kind must be one of {MAP_KINDS}, got {self.maps.kind!r}")
        if self.maps.hidden < 0 or not (math.isfinite(self.maps.gain) and self.maps.gain > 0):
            raise ValueError("maps.hidden must be >= 0 (0 = the feature dim) and maps.gain > 0")
        if v.token_rate <= 0 or not 0 < v.duration[0] <= v.duration[1]:
            raise ValueError("voice.token_rate must be > 0 and 0 < duration[0] <= duration[1]")
        if not 0 < t.gender_p < 1:
            raise ValueError("traits.gender_p must be in (0, 1)")
        if t.age_levels < 2 or t.continuous < 0 or t.private_face < 1 or t.private_voice < 1 or t.nuisance < 1:
            raise ValueError("traits: age_levels >= 2, continuous >= 0, private_* and nuisance >= 1")
        for group in (self.shared, self.noise, self.global_mix, self.token_mix):
            for fld in fields(group):
                value = getattr(group, fld.name)
                if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                    raise ValueError(f"{type(group).__name__}.{fld.name} must be a finite number >= 0, got {value!r}")
        if self.noise.item <= 0:
            raise ValueError("noise.item must be > 0 (it is the oracle's noise model)")
        if self.lists.verify_negatives < 1 or self.lists.val_negatives < 1:
            raise ValueError("lists: *_negatives must be >= 1")


def _known(d: Mapping[str, Any], klass: type, where: str) -> None:
    names = {f.name for f in fields(klass)} | ({"global"} if klass is NoiseSpec else set())
    unknown = sorted(set(d) - names)
    if unknown:
        raise ValueError(f"preset {where}: unknown key(s) {unknown}")


def _merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for k, v in over.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), Mapping):
            out[k] = _merge(dict(out[k]), v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def _load_file(path: Path = PRESET_FILE) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict) or "defaults" not in data or "presets" not in data:
        raise ValueError(f"{path}: expected top-level 'defaults' and 'presets'")
    return data


def preset_names() -> list[str]:
    """Base presets (sizes): tiny, small, real-dims, ..."""
    return list(_load_file()["presets"])


def variant_names() -> list[str]:
    """Generative variants that can be added to a preset (``small+nonlinear``)."""
    return list(_load_file().get("variants") or {})


def suite_names() -> list[str]:
    """World names of the evaluation suite (``suite:`` in presets.yaml), each ``preset+variant+...``."""
    return [str(n) for n in _load_file().get("suite") or []]


def split_world_name(name: str) -> tuple[str, list[str]]:
    """``"small+nonlinear+bursty"`` -> ``("small", ["nonlinear", "bursty"])`` (names not checked here)."""
    parts = [p.strip() for p in str(name).split("+")]
    if any(not p for p in parts):
        raise ValueError(f"world name {name!r} has an empty part; write preset+variant+variant")
    return parts[0], parts[1:]


def get_preset(
    name: str, overrides: Mapping[str, Any] | None = None, variants: Sequence[str] = ()
) -> WorldSpec:
    """The named world: preset merged over the defaults, then each variant, then ``overrides``.

    Why: a suite of worlds is a preset (size) times generative variants, all
    data; ``name`` may carry variants itself (``small+nonlinear``) and
    ``variants`` adds more after them. The spec's name is the combined name.
    """
    data = _load_file()
    base, named = split_world_name(name)
    if base not in data["presets"]:
        raise ValueError(f"unknown preset {base!r}; choose one of {list(data['presets'])}")
    table = data.get("variants") or {}
    chosen = list(named) + [str(v) for v in variants]
    for v in chosen:
        if v not in table:
            raise ValueError(f"unknown variant {v!r}; choose from {list(table)} (or drop it)")
    if len(set(chosen)) != len(chosen):
        raise ValueError(f"variant named twice in {chosen}")
    d = _merge(data["defaults"], data["presets"][base] or {})
    for v in chosen:
        over = dict(table[v] or {})
        over.pop("description", None)
        d = _merge(d, over)
    d = _merge(d, overrides or {})
    d["name"] = "+".join([base, *chosen])
    d.setdefault("description", "")
    return WorldSpec.from_dict(d)
