"""The bar chart of probabilities and the voice-attention figure, rendered to RGB arrays.

Only matplotlib's object API is used (no pyplot, whose global state is not
thread-safe); a lock still serialises drawing because the text and font
caches are shared between figures, and requests run in several threads.
"""

from __future__ import annotations

import threading
from typing import Optional, Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

_DRAW_LOCK = threading.Lock()
TOP_COLOUR = "#d9480f"
OTHER_COLOUR = "#868e96"
ATTENTION_COLOUR = "#f08c00"


def _render(fig: Figure) -> np.ndarray:
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


def probability_bars(labels: Sequence[str], probabilities: Sequence[float]) -> np.ndarray:
    """Horizontal bars, best candidate on top and highlighted, with the 0.5 line marked."""
    n = len(labels)
    if n != len(probabilities):
        raise ValueError(f"{n} labels but {len(probabilities)} probabilities")
    with _DRAW_LOCK:
        fig = Figure(figsize=(6.4, 0.9 + 0.42 * max(n, 1)), dpi=100)
        ax = fig.add_subplot()
        y = np.arange(n)[::-1]
        colours = [TOP_COLOUR if i == 0 else OTHER_COLOUR for i in range(n)]
        ax.barh(y, probabilities, color=colours, height=0.7)
        for yi, p in zip(y, probabilities):
            ax.text(min(p + 0.01, 0.9), yi, f"{p:.3f}", va="center", fontsize=9)
        ax.axvline(0.5, color="#495057", linestyle="--", linewidth=1)
        ax.set_yticks(y, labels, fontsize=9)
        ax.set_xlim(0, 1)
        ax.set_xlabel("match probability (the speaker?)")
        ax.set_title("Match probability per face", fontsize=10)
        ax.spines[["top", "right"]].set_visible(False)
        fig.tight_layout()
        return _render(fig)


def _envelope(samples: np.ndarray, bins: int) -> tuple[np.ndarray, np.ndarray]:
    """Min and max of the waveform in ``bins`` equal chunks (a drawable outline of long audio)."""
    x = np.asarray(samples, dtype=np.float32)
    bins = max(1, min(bins, len(x)))
    usable = len(x) // bins * bins
    chunks = x[:usable].reshape(bins, -1)
    return chunks.min(axis=1), chunks.max(axis=1)


def voice_attention_figure(
    samples: np.ndarray,
    sample_rate: int,
    spans: np.ndarray,
    attention: Optional[np.ndarray],
    label: str,
    others: Sequence[np.ndarray] = (),
) -> np.ndarray:
    """The waveform with the voice-token attention drawn over time.

    ``attention`` (one weight per token, spans in seconds) is the best
    candidate's and is drawn as bars; ``others`` (the other candidates') as
    thin step lines, to show how much the attention depends on the face.
    """
    duration = len(samples) / float(sample_rate)
    lo, hi = _envelope(samples, 1200)
    t = np.linspace(0.0, duration, len(lo))
    has_attention = attention is not None and len(spans) > 0
    with _DRAW_LOCK:
        fig = Figure(figsize=(8.0, 3.4 if has_attention else 2.2), dpi=100)
        if has_attention:
            wave_ax, att_ax = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [1.4, 1.0]})
        else:
            wave_ax, att_ax = fig.add_subplot(), None
        wave_ax.fill_between(t, lo, hi, color="#868e96", linewidth=0)
        wave_ax.set_xlim(0, duration)
        peak = float(max(np.abs(lo).max(), np.abs(hi).max(), 1e-6))
        wave_ax.set_ylim(-1.05 * peak, 1.05 * peak)
        wave_ax.set_yticks([])
        wave_ax.spines[["top", "right", "left"]].set_visible(False)
        if att_ax is None:
            wave_ax.set_title("Waveform (this checkpoint gives no voice attention)", fontsize=10)
            wave_ax.set_xlabel("time (s)")
        else:
            wave_ax.set_title("Which moments of the voice the match looked at", fontsize=10)
            spans = np.asarray(spans, dtype=float)
            att = np.asarray(attention, dtype=float)
            edges = np.append(spans[:, 0], spans[-1, 1])
            att_ax.bar(spans[:, 0], att, width=spans[:, 1] - spans[:, 0], align="edge",
                       color=ATTENTION_COLOUR, alpha=0.8, edgecolor="white", linewidth=0.5,
                       label=f"best candidate ({label})")
            for i, other in enumerate(others):
                att_ax.stairs(np.asarray(other, dtype=float), edges, color="#343a40", linewidth=0.8,
                              alpha=0.6, label="other candidates" if i == 0 else None)
            top = max([float(att.max())] + [float(np.max(o)) for o in others] + [1e-6])
            att_ax.set_ylim(0, 1.25 * top)
            att_ax.set_ylabel("attention", fontsize=9)
            att_ax.set_xlabel("time (s)")
            att_ax.spines[["top", "right"]].set_visible(False)
            att_ax.legend(loc="upper right", fontsize=8, frameon=False, ncols=2)
        fig.tight_layout()
        return _render(fig)
