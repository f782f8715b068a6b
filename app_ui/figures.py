"""The bar chart of probabilities and the voice-attention figure, as inline SVG for the page.

Why SVG: the page redraws both figures on every request and on every
live-microphone update. A matplotlib figure cost 0.1-0.3 s each on the 2-core
machine; the same figures drawn with Pillow took ~8 ms, and encoding them as
PNG for the page another ~15 ms (measured with Gradio's profiler). As SVG
markup they cost well under a millisecond to write, nothing to encode, no
file for the browser to fetch, and stay sharp at any zoom. Labels (file
names come from users) are escaped, so the markup is safe to place in the page.
"""

from __future__ import annotations

from html import escape
from typing import Optional, Sequence

import numpy as np

TOP_COLOUR = "#d9480f"
OTHER_COLOUR = "#868e96"
ATTENTION_COLOUR = "#f08c00"
WAVE_COLOUR = "#868e96"
TEXT_COLOUR = "#212529"
AXIS_COLOUR = "#495057"
OTHERS_COLOUR = "#343a40"
BACKGROUND = "white"
#: Rough advance of one character of the 13 px sans-serif labels, to size the label column.
CHAR_WIDTH = 7.2


def _svg(width: int, height: int, title: str, body: Sequence[str]) -> str:
    """One self-contained, responsive SVG element (scales down to the column's width)."""
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="100%" '
        f'style="max-width:{width}px;height:auto;display:block;font-family:sans-serif" role="img" '
        f'aria-label="{escape(title)}"><title>{escape(title)}</title>'
        f'<rect width="{width}" height="{height}" fill="{BACKGROUND}"/>' + "".join(body) + "</svg>"
    )


def _text(x: float, y: float, s: str, size: int = 13, anchor: str = "middle", baseline: str = "auto") -> str:
    return (f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" fill="{TEXT_COLOUR}" text-anchor="{anchor}" '
            f'dominant-baseline="{baseline}">{escape(s)}</text>')


def _line(x0: float, y0: float, x1: float, y1: float, colour: str = AXIS_COLOUR, dash: str = "") -> str:
    extra = f' stroke-dasharray="{dash}"' if dash else ""
    return f'<line x1="{x0:.1f}" y1="{y0:.1f}" x2="{x1:.1f}" y2="{y1:.1f}" stroke="{colour}"{extra}/>'


def _fit(label: str, max_chars: int) -> str:
    """The label, shortened in the middle to ``max_chars`` (the full one is in the bar's tooltip)."""
    if len(label) <= max_chars:
        return label
    keep = max(max_chars - 1, 2)
    return label[: keep - keep // 2] + "…" + label[len(label) - keep // 2:]


def probability_bars(labels: Sequence[str], probabilities: Sequence[float]) -> str:
    """Horizontal bars, best candidate on top and highlighted, with the 0.5 line marked."""
    n = len(labels)
    if n != len(probabilities):
        raise ValueError(f"{n} labels but {len(probabilities)} probabilities")
    width, row, top, bottom = 640, 34, 34, 44
    height = top + bottom + row * max(n, 1)
    max_chars = int((width // 2 - 20) / CHAR_WIDTH)
    shown = [_fit(str(s), max_chars) for s in labels]
    left = min(12 + max([len(s) * CHAR_WIDTH for s in shown] + [40]) + 8, width // 2)
    right = width - 24
    span = right - left
    body = [_text(width / 2, 20, "Match probability per face")]
    for i, (label, short, p) in enumerate(zip(labels, shown, probabilities)):
        p = float(np.clip(p, 0.0, 1.0)) if np.isfinite(p) else 0.0
        y0 = top + i * row + 5
        y1 = y0 + row - 10
        colour = TOP_COLOUR if i == 0 else OTHER_COLOUR
        body.append(f'<g><title>{escape(str(label))}: {p:.3f}</title>')
        if p > 0:
            body.append(f'<rect x="{left}" y="{y0}" width="{p * span:.1f}" height="{y1 - y0}" fill="{colour}"/>')
        body.append(_text(left - 8, (y0 + y1) / 2, short, anchor="end", baseline="central"))
        tx = min(left + p * span + 4, left + 0.9 * span)
        body.append(_text(tx, (y0 + y1) / 2, f"{p:.3f}", size=11, anchor="start", baseline="central"))
        body.append("</g>")
    axis_y = top + row * max(n, 1)
    body += [_line(left, top, left, axis_y), _line(left, axis_y, right, axis_y)]
    for v in (0.0, 0.25, 0.5, 0.75, 1.0):
        x = left + v * span
        body += [_line(x, axis_y, x, axis_y + 4), _text(x, axis_y + 16, f"{v:g}", size=11)]
    body.append(_line(left + 0.5 * span, top, left + 0.5 * span, axis_y, dash="5 5"))
    body.append(_text(left + span / 2, height - 6, "match probability (the speaker?)", size=11))
    return _svg(width, height, "Match probability per face", body)


def _envelope(samples: np.ndarray, bins: int) -> tuple[np.ndarray, np.ndarray]:
    """Min and max of the waveform in ``bins`` equal chunks (a drawable outline of long audio)."""
    x = np.asarray(samples, dtype=np.float32).reshape(-1)
    if x.size == 0:
        return np.zeros(1, np.float32), np.zeros(1, np.float32)
    bins = max(1, min(bins, len(x)))
    usable = len(x) // bins * bins
    chunks = x[:usable].reshape(bins, -1)
    return chunks.min(axis=1), chunks.max(axis=1)


def _time_axis(left: int, right: int, y: float, duration: float) -> list[str]:
    """Ticks in seconds under a panel, at a step that gives 4-10 labels."""
    out = [_line(left, y, right, y)]
    step = next((s for s in (0.1, 0.2, 0.5, 1, 2, 5, 10, 20) if duration / s <= 10), 30)
    t = 0.0
    while t <= duration + 1e-9:
        x = left + (right - left) * t / max(duration, 1e-9)
        out += [_line(x, y, x, y + 4), _text(x, y + 16, f"{round(t, 6):g}", size=11)]
        t += step
    out.append(_text((left + right) / 2, y + 32, "time (s)", size=11))
    return out


def voice_attention_figure(
    samples: np.ndarray,
    sample_rate: int,
    spans: np.ndarray,
    attention: Optional[np.ndarray],
    label: str,
    others: Sequence[np.ndarray] = (),
) -> str:
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
    title = ("Which moments of the voice the match looked at" if has_attention
             else "Waveform (this checkpoint gives no voice attention)")
    body = [_text(width / 2, 20, title)]

    # waveform: one vertical stroke per column from the min to the max of its samples
    lo, hi = _envelope(samples, right - left)
    peak = float(max(np.abs(lo).max(initial=0.0), np.abs(hi).max(initial=0.0), 1e-6)) * 1.05
    mid = 34 + wave_h / 2
    xs = left + np.arange(len(lo)) * (right - left) / max(len(lo), 1) + 0.5
    y_hi = mid - hi / peak * wave_h / 2
    y_lo = np.maximum(mid - lo / peak * wave_h / 2, y_hi + 0.5)  # at least a dot where the audio is silent
    strokes = "".join(f"M{x:.1f} {a:.1f}V{b:.1f}" for x, a, b in zip(xs.tolist(), y_hi.tolist(), y_lo.tolist()))
    body.append(f'<path d="{strokes}" stroke="{WAVE_COLOUR}" stroke-width="1" fill="none"/>')
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
                w = max(px(e) - px(s) - 1, 0.5)
                body.append(f'<rect x="{px(s):.1f}" y="{py(a):.1f}" width="{w:.1f}" height="{y1 - py(a):.1f}" '
                            f'fill="{ATTENTION_COLOUR}"/>')
        for other in others:
            pts = []
            for (s, e), v in zip(spans, np.asarray(other, dtype=float)):
                if np.isfinite(v):
                    pts += [f"{px(s):.1f},{py(v):.1f}", f"{px(e):.1f},{py(v):.1f}"]
            if len(pts) > 1:
                body.append(f'<polyline points="{" ".join(pts)}" stroke="{OTHERS_COLOUR}" fill="none"/>')
        body += [_line(left, y0, left, y1), _text(left - 6, (y0 + y1) / 2, "att.", size=11, anchor="end",
                                                  baseline="central")]
        legend = f"bars: best candidate ({label})" + ("; lines: other candidates" if len(others) else "")
        body.append(_text(right, y0 - 4, legend, size=11, anchor="end"))
        y = y1
    body += _time_axis(left, right, y, duration)
    return _svg(width, height, title, body)
