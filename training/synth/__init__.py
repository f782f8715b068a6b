"""The synthetic voice-face world: features with known ground truth (docs/synthetic_world.md).

``python -m training.synth --preset tiny --seed 0 --out DIR`` writes a world;
``load_world(DIR)`` opens it (``world["face"]``, ``world["voice"]`` are
FeatureSources), ``oracle_scores(world, voice_ids, face_ids)`` is the ceiling and
``probe_scores(world, voice_ids, face_ids, source="global"|"tokens")`` the
reachable one. A world name may add generative variants to a preset
(``small+nonlinear+bursty``; see :mod:`training.synth.presets`).
The generative model is documented in :mod:`training.synth.world`.
"""

from .layout import WorldLayout, make_layout
from .oracle import oracle_report, oracle_scores
from .presets import WorldSpec, get_preset, preset_names, suite_names, variant_names
from .probe import TraitProbe, probe_scores
from .protocol import bind_layout, write_world_lists
from .world import LatentModel, SyntheticModality, face_region_mask, face_regions
from .worlddir import SyntheticWorld, Truth, build_world, load_world

__all__ = [
    "WorldLayout",
    "make_layout",
    "oracle_report",
    "oracle_scores",
    "WorldSpec",
    "get_preset",
    "preset_names",
    "variant_names",
    "suite_names",
    "TraitProbe",
    "probe_scores",
    "bind_layout",
    "write_world_lists",
    "LatentModel",
    "SyntheticModality",
    "face_region_mask",
    "face_regions",
    "SyntheticWorld",
    "Truth",
    "build_world",
    "load_world",
]
