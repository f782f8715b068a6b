"""Presentation helpers for the Gradio demo (``app.py``).

Nothing here computes a score: every number shown comes from
``faa_core.pipeline.MatchPipeline``. These modules turn its results into
images (bar chart, heatmap overlays, the voice-attention figure) and text.
"""

from .figures import probability_bars, voice_attention_figure
from .overlays import candidate_tile, heatmap_overlay
from .text import (
    HOW_TO_READ,
    candidate_label,
    messages_markdown,
    model_info_markdown,
    ranking_markdown,
    warning_banner_html,
)

__all__ = [
    "HOW_TO_READ",
    "candidate_label",
    "candidate_tile",
    "heatmap_overlay",
    "messages_markdown",
    "model_info_markdown",
    "probability_bars",
    "ranking_markdown",
    "voice_attention_figure",
    "warning_banner_html",
]
