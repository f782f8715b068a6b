"""The synthetic voice-face world: features with known ground truth (docs/synthetic_world.md).

``python -m training.synth --preset tiny --seed 0 --out DIR`` writes a world;
``load_world(DIR)`` opens it (``world["face"]``, ``world["voice"]`` are
FeatureSources), ``oracle_scores(world, voice_ids, face_ids)`` is the ceiling.
The generative model is documented in :mod:`training.synth.world`.
"""

from .layout import Manifest, make_layout
from .oracle import oracle_report, oracle_scores
from .presets import WorldSpec, get_preset, preset_names
from .protocol import bind_layout, write_world_lists
from .world import LatentModel, SyntheticModality, face_region_mask
from .worlddir import SyntheticWorld, Truth, build_world, load_world

__all__ = [
    "Manifest",
    "make_layout",
    "oracle_report",
    "oracle_scores",
    "WorldSpec",
    "get_preset",
    "preset_names",
    "bind_layout",
    "write_world_lists",
    "LatentModel",
    "SyntheticModality",
    "face_region_mask",
    "SyntheticWorld",
    "Truth",
    "build_world",
    "load_world",
]
