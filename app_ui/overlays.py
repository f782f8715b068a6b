"""Attention heatmaps laid over aligned face crops, as plain RGB arrays."""

from __future__ import annotations

from typing import Optional

import numpy as np
from matplotlib import colormaps

_GAP = 6  # pixels between the crop and its overlay in a tile
_GAP_COLOUR = 255
#: The inferno colour map as a 256-entry RGB table, built once (a lookup per pixel instead of
#: evaluating the colour map on every request).
_INFERNO = (colormaps["inferno"](np.linspace(0.0, 1.0, 256))[:, :3] * 255.0).astype(np.float32)


def heatmap_overlay(crop: np.ndarray, heatmap: np.ndarray, strength: float = 0.6) -> np.ndarray:
    """Blend a [0, 1] heatmap (same size as the crop) over the crop.

    The colour weight grows with the heat, so low-attention regions keep the
    face visible and high-attention regions stand out.
    """
    crop = np.asarray(crop, dtype=np.float32)
    heat = np.clip(np.asarray(heatmap, dtype=np.float32), 0.0, 1.0)
    if heat.shape != crop.shape[:2]:
        raise ValueError(f"heatmap {heat.shape} does not match crop {crop.shape[:2]}")
    colour = _INFERNO[np.rint(heat * 255.0).astype(np.intp)]
    alpha = (0.25 + 0.75 * heat)[..., None] * strength
    return np.clip(crop * (1.0 - alpha) + colour * alpha, 0, 255).astype(np.uint8)


def candidate_tile(crop: np.ndarray, heatmap: Optional[np.ndarray]) -> np.ndarray:
    """The aligned crop and, beside it, the same crop under its attention heatmap.

    Without a heatmap (a checkpoint without face tokens) the crop is shown alone.
    """
    crop = np.asarray(crop, dtype=np.uint8)
    if heatmap is None:
        return crop.copy()
    h = crop.shape[0]
    gap = np.full((h, _GAP, 3), _GAP_COLOUR, dtype=np.uint8)
    return np.concatenate([crop, gap, heatmap_overlay(crop, heatmap)], axis=1)
