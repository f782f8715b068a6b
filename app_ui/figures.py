"""The bar chart of probabilities and the voice-attention figure, drawn straight into RGB arrays.

Why Pillow and not matplotlib: the page redraws both figures on every
request and on every live-microphone update. A matplotlib figure (layout,
text engine, Agg canvas) cost 0.1-0.3 s per figure on the 2-core machine,
as much as the voice encoder itself; these few rectangles, lines and labels
drawn with PIL take a few milliseconds. Each call draws on its own image, so
no lock is needed between request threads.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Optional, Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

TOP_COLOUR = "#d9480f"
OTHER_COLOUR = "#868e96"
ATTENTION_COLOUR = "#f08c00"
WAVE_COLOUR = "#868e96"
TEXT_COLOUR = "#212529"
AXIS_COLOUR = "#495057"
OTHERS_COLOUR = "#343a40"
BACKGROUND = "white"


@lru_cache(maxsize=8)
def _font(size: int) -> ImageFont.ImageFont:
    """Pillow's bundled scalable font (no system fonts needed), cached per size."""
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: fixed-size bitmap font
        return ImageFont.load_default()


def _text_width(draw: ImageDraw.ImageDraw, text: str, font: ImageFont.ImageFont) -> int:
    box = draw.textbbox((0, 0), text, font=font)
    return int(box[2] - box[0])


def _dashed_vline(draw: ImageDraw.ImageDraw, x: float, y0: float, y1: float, colour: str, dash: int = 5) -> None:
    y = y0
    while y < y1:
        draw.line([(x, y), (x, min(y + dash, y1))], fill=colour, width=1)
        y += 2 * dash


def probability_bars(labels: Sequence[str], probabilities: Sequence[float]) -> np.ndarray:
    """Horizontal bars, best candidate on top and highlighted, with the 0.5 line marked."""
    n = len(labels)
    if n != len(probabilities):
        raise ValueError(f"{n} labels but {len(probabilities)} probabilities")
    font, small = _font(13), _font(11)
    width, row, top, bottom = 640, 34, 34, 44
    height = top + bottom + row * max(n, 1)
    img = Image.new("RGB", (width, height), BACKGROUND)
    d = ImageDraw.Draw(img)
    label_w = max([_text_width(d, s, font) for s in labels] + [40])
    left = min(12 + label_w + 8, width // 2)
    right = width - 24
    span = right - left
    d.text((width / 2, 8), "Match probability per face", fill=TEXT_COLOUR, font=font, anchor="mt")
    for i, (label, p) in enumerate(zip(labels, probabilities)):
        p = float(np.clip(p, 0.0, 1.0)) if np.isfinite(p) else 0.0
        y0 = top + i * row + 5
        y1 = y0 + row - 10
        colour = TOP_COLOUR if i == 0 else OTHER_COLOUR
        if p > 0:
            d.rectangle([left, y0, left + p * span, y1], fill=colour)
        d.text((left - 8, (y0 + y1) / 2), label, fill=TEXT_COLOUR, font=font, anchor="rm")
        tx = min(left + p * span + 4, left + 0.9 * span)
        d.text((tx, (y0 + y1) / 2), f"{p:.3f}", fill=TEXT_COLOUR, font=small, anchor="lm")
    axis_y = top + row * max(n, 1)
    d.line([(left, top), (left, axis_y)], fill=AXIS_COLOUR, width=1)
    d.line([(left, axis_y), (right, axis_y)], fill=AXIS_COLOUR, width=1)
    for v in (0.0, 0.25, 0.5, 0.75, 1.0):
        x = left + v * span
        d.line([(x, axis_y), (x, axis_y + 4)], fill=AXIS_COLOUR, width=1)
        d.text((x, axis_y + 6), f"{v:g}", fill=TEXT_COLOUR, font=small, anchor="mt")
    _dashed_vline(d, left + 0.5 * span, top, axis_y, AXIS_COLOUR)
    d.text((left + span / 2, height - 4), "match probability (the speaker?)", fill=TEXT_COLOUR, font=small, anchor="mb")
    return np.asarray(img)


def _envelope(samples: np.ndarray, bins: int) -> tuple[np.ndarray, np.ndarray]:
    """Min and max of the waveform in ``bins`` equal chunks (a drawable outline of long audio)."""
    x = np.asarray(samples, dtype=np.float32)
    bins = max(1, min(bins, len(x)))
    usable = len(x) // bins * bins
    chunks = x[:usable].reshape(bins, -1)
    return chunks.min(axis=1), chunks.max(axis=1)


def _time_axis(d: ImageDraw.ImageDraw, left: int, right: int, y: int, duration: float) -> None:
    """Ticks in seconds under a panel, at a step that gives 4-10 labels."""
    font = _font(11)
    d.line([(left, y), (right, y)], fill=AXIS_COLOUR, width=1)
    step = next((s for s in (0.1, 0.2, 0.5, 1, 2, 5, 10, 20) if duration / s <= 10), 30)
    t = 0.0
    while t <= duration + 1e-9:
        x = left + (right - left) * t / max(duration, 1e-9)
        d.line([(x, y), (x, y + 4)], fill=AXIS_COLOUR, width=1)
        d.text((x, y + 6), f"{t:g}", fill=TEXT_COLOUR, font=font, anchor="mt")
        t += step
    d.text(((left + right) / 2, y + 22), "time (s)", fill=TEXT_COLOUR, font=font, anchor="mt")


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
    duration = max(len(samples) / float(sample_rate), 1e-6)
    has_attention = attention is not None and len(spans) > 0
    width, left, right = 800, 40, 780
    wave_h, att_h = 110, 120
    height = 34 + wave_h + (att_h + 16 if has_attention else 0) + 44
    img = Image.new("RGB", (width, height), BACKGROUND)
    d = ImageDraw.Draw(img)
    font, small = _font(13), _font(11)
    title = ("Which moments of the voice the match looked at" if has_attention
             else "Waveform (this checkpoint gives no voice attention)")
    d.text((width / 2, 8), title, fill=TEXT_COLOUR, font=font, anchor="mt")

    # waveform: one vertical line per pixel column from the min to the max of its samples
    lo, hi = _envelope(samples, right - left)
    peak = float(max(np.abs(lo).max(initial=0.0), np.abs(hi).max(initial=0.0), 1e-6)) * 1.05
    mid = 34 + wave_h / 2
    xs = left + np.arange(len(lo)) * (right - left) / max(len(lo), 1)
    for x, a, b in zip(xs, lo, hi):
        d.line([(x, mid - b / peak * wave_h / 2), (x, mid - a / peak * wave_h / 2)], fill=WAVE_COLOUR, width=1)
    y = 34 + wave_h
    if has_attention:
        spans = np.asarray(spans, dtype=float)
        att = np.asarray(attention, dtype=float)
        y0, y1 = y + 16, y + 16 + att_h
        top = max([float(np.nanmax(att))] + [float(np.nanmax(o)) for o in others] + [1e-6]) * 1.25

        def px(t: float) -> float:
            return left + (right - left) * float(t) / duration

        def py(v: float) -> float:
            return y1 - (y1 - y0) * float(v) / top

        for (s, e), a in zip(spans, att):
            if np.isfinite(a) and a > 0:
                d.rectangle([px(s), py(a), max(px(e) - 1, px(s)), y1], fill=ATTENTION_COLOUR, outline=BACKGROUND)
        for other in others:
            o = np.asarray(other, dtype=float)
            pts = []
            for (s, e), v in zip(spans, o):
                pts += [(px(s), py(v)), (px(e), py(v))]
            if len(pts) > 1:
                d.line(pts, fill=OTHERS_COLOUR, width=1)
        d.line([(left, y0), (left, y1)], fill=AXIS_COLOUR, width=1)
        d.text((left - 6, (y0 + y1) / 2), "att.", fill=TEXT_COLOUR, font=small, anchor="rm")
        legend = f"bars: best candidate ({label})" + ("; lines: other candidates" if len(others) else "")
        d.text((right, y0 - 2), legend, fill=TEXT_COLOUR, font=small, anchor="rb")
        y = y1
    _time_axis(d, left, right, y, duration)
    return np.asarray(img)
