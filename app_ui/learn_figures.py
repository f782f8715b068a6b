"""Pictures of the "Learn how FAA works" tab, rendered to RGB arrays from numbers training/learn measured.

Drawing only: the curves, the 2-D projection, the attention maps and the
overlay of two runs. They are drawn once per training round, not per
request, so matplotlib's cost is fine here. Only its object API is used (no
pyplot, whose global state is not thread-safe); a lock serialises drawing
because the text and font caches are shared between figures.
"""

from __future__ import annotations

import threading
from typing import Any, Mapping, Optional, Sequence

import numpy as np
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

_DRAW_LOCK = threading.Lock()


def _render(fig: Figure) -> np.ndarray:
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


ORACLE_COLOUR = "#2b8a3e"
UNTRAINED_COLOUR = "#868e96"
RUN_COLOURS = ("#d9480f", "#1c7ed6", "#7048e8", "#0c8599")
TRUTH_COLOUR = "#2f9e44"
GENDER_COLOURS = {0: "#1c7ed6", 1: "#e64980", -1: "#adb5bd"}


def _series(rows: Sequence[Mapping[str, Any]], key: str) -> tuple[list[int], list[float]]:
    pts = [(int(r["round"]) + 1, float(r[key])) for r in rows if key in r and r[key] is not None]
    return [p[0] for p in pts], [p[1] for p in pts]


def _placeholder(ax: Any, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", fontsize=9, color="#868e96", transform=ax.transAxes, wrap=True)
    ax.set_xticks([])
    ax.set_yticks([])


def training_curves(
    rows: Sequence[Mapping[str, Any]], max_rounds: int, oracle_val_auc: Optional[float] = None,
    untrained_val_auc: Optional[float] = None, probe: Optional[float] = None, title: str = "",
) -> np.ndarray:
    """Losses, validation AUC (with the oracle, the untrained model and a probe ceiling), clusters and purity."""
    with _DRAW_LOCK:
        fig = Figure(figsize=(10.0, 5.6), dpi=100)
        axes = fig.subplots(2, 2)
        xmax = max(max_rounds, len(rows), 1) + 0.5
        loss_ax, auc_ax, k_ax, pur_ax = axes.ravel()
        drawn = False
        for key, style in (("loss", "-"), ("fvc", "--"), ("fvm", ":"), ("wen", "-.")):
            x, y = _series(rows, key)
            if x:
                loss_ax.plot(x, y, style, marker="o", ms=3, label=key)
                drawn = True
        loss_ax.set_title("losses (lower = fits the training pairs better)", fontsize=9)
        if drawn:
            loss_ax.legend(fontsize=8, frameon=False)
        for key, colour, label in (("val_auc_fusion", RUN_COLOURS[0], "fusion (match head)"),
                                   ("val_auc_cosine", RUN_COLOURS[1], "cosine (aligned space)"),
                                   ("val_auc_combined", RUN_COLOURS[2], "combined")):
            x, y = _series(rows, key)
            if x:
                auc_ax.plot(x, y, marker="o", ms=3, color=colour, label=label)
        if oracle_val_auc is not None:
            auc_ax.axhline(oracle_val_auc, color=ORACLE_COLOUR, ls="--", lw=1.2, label=f"oracle {oracle_val_auc:.3f}")
        if untrained_val_auc is not None:
            auc_ax.axhline(untrained_val_auc, color=UNTRAINED_COLOUR, ls=":", lw=1.2, label=f"untrained {untrained_val_auc:.3f}")
        if probe is not None:
            auc_ax.axhline(probe, color="#f08c00", ls="-.", lw=1.0, label=f"probe {probe:.3f}")
        auc_ax.set_ylim(0.3, 1.0)
        auc_ax.set_title("validation AUC on unseen people", fontsize=9)
        if auc_ax.get_legend_handles_labels()[0]:
            auc_ax.legend(fontsize=7, frameon=False, loc="lower right", ncols=2)
        x, y = _series(rows, "clusters")
        if x:
            k_ax.step(x, y, where="mid", color="#495057")
            k_ax.plot(x, y, "o", ms=3, color="#495057")
        k_ax.set_title("number of clusters (pseudo-identities)", fontsize=9)
        x, y = _series(rows, "purity")
        if x:
            pur_ax.plot(x, y, marker="o", ms=3, color=RUN_COLOURS[3], label="purity")
            xn, yn = _series(rows, "nmi")
            if xn:
                pur_ax.plot(xn, yn, marker="s", ms=3, color="#adb5bd", label="NMI")
            pur_ax.set_ylim(0, 1)
            pur_ax.legend(fontsize=8, frameon=False)
        else:
            _placeholder(pur_ax, "no pseudo-labels: this method trains\non the true identities")
        pur_ax.set_title("pseudo-labels vs the true identities", fontsize=9)
        for ax in axes.ravel():
            ax.set_xlim(0.5, xmax)
            ax.set_xlabel("round", fontsize=8)
            ax.tick_params(labelsize=8)
            ax.spines[["top", "right"]].set_visible(False)
        if not rows:
            fig.suptitle((title + " — " if title else "") + "waiting for the first round…", fontsize=10)
        elif title:
            fig.suptitle(title, fontsize=10)
        fig.tight_layout()
        return _render(fig)


def _scatter(ax: Any, proj: Mapping[str, Any], colour_by: str) -> None:
    xy = np.asarray(proj["xy"], dtype=float)
    modality = np.asarray(proj["modality"])
    values = np.asarray(proj[colour_by])
    if colour_by == "gender":
        colours = np.array([GENDER_COLOURS.get(int(v), "#adb5bd") for v in values])
    else:
        cmap = colormaps["tab20"]
        colours = np.array([cmap(int(v) % 20) for v in values])
    for m, marker in (("voice", "o"), ("face", "^")):
        sel = modality == m
        ax.scatter(xy[sel, 0], xy[sel, 1], c=list(colours[sel]), marker=marker, s=16, alpha=0.8, linewidths=0)
    ax.set_xticks([])
    ax.set_yticks([])


def embedding_projection(before: Optional[Mapping[str, Any]], after: Optional[Mapping[str, Any]]) -> np.ndarray:
    """2x2 scatter: rows before / after alignment, columns coloured by true identity / gender-like trait."""
    with _DRAW_LOCK:
        fig = Figure(figsize=(9.0, 7.0), dpi=100)
        axes = fig.subplots(2, 2)
        for r, (name, proj) in enumerate((("before training", before), ("after training", after))):
            for c, (key, what) in enumerate((("identity", "true identity"), ("gender", "gender-like trait"))):
                ax = axes[r, c]
                if proj is None:
                    _placeholder(ax, "drawn when the run ends")
                else:
                    _scatter(ax, proj, key)
                ax.set_title(f"{name}: colour = {what}", fontsize=9)
        handles = [
            axes[0, 0].scatter([], [], marker="o", c="#495057", s=16, label="voice"),
            axes[0, 0].scatter([], [], marker="^", c="#495057", s=16, label="face"),
            axes[0, 0].scatter([], [], marker="s", c=GENDER_COLOURS[0], s=16, label='gender-like "m"'),
            axes[0, 0].scatter([], [], marker="s", c=GENDER_COLOURS[1], s=16, label='gender-like "f"'),
        ]
        fig.legend(handles=handles, loc="lower center", ncols=4, fontsize=8, frameon=False)
        fig.tight_layout(rect=(0, 0.04, 1, 1))
        return _render(fig)


def _outline(ax: Any, region: np.ndarray) -> None:
    """Draw the border of the True cells of a grid mask (any shape, several pieces)."""
    h, w = region.shape
    inside = lambda r, c: 0 <= r < h and 0 <= c < w and bool(region[r, c])  # noqa: E731
    for r, c in zip(*np.nonzero(region)):
        for dr, dc, xs, ys in ((-1, 0, (c - 0.5, c + 0.5), (r - 0.5, r - 0.5)), (1, 0, (c - 0.5, c + 0.5), (r + 0.5, r + 0.5)),
                               (0, -1, (c - 0.5, c - 0.5), (r - 0.5, r + 0.5)), (0, 1, (c + 0.5, c + 0.5), (r - 0.5, r + 0.5))):
            if not inside(r + dr, c + dc):
                ax.plot(xs, ys, color=TRUTH_COLOUR, lw=2.5, solid_capstyle="projecting", clip_on=False)


def attention_maps(examples: Sequence[Mapping[str, Any]], grid: Sequence[int]) -> np.ndarray:
    """Per test pair: face attention over the token grid (informative region outlined) and voice attention (voiced marked)."""
    n = max(len(examples), 1)
    with _DRAW_LOCK:
        fig = Figure(figsize=(9.0, 2.3 * n), dpi=100)
        axes = np.atleast_2d(fig.subplots(n, 2, gridspec_kw={"width_ratios": [1, 2.2]}))
        if not examples:
            for ax in axes.ravel():
                _placeholder(ax, "no match head in this run (or not finished yet)")
        for k, ex in enumerate(examples):
            face_ax, voice_ax = axes[k]
            title = f"pair {k + 1}: same person, P(match) = {ex.get('probability', float('nan')):.2f}"
            if "face_attention" in ex:
                att = np.asarray(ex["face_attention"], dtype=float).reshape(tuple(grid))
                face_ax.imshow(att, cmap="inferno", vmin=0, vmax=max(float(att.max()), 1e-6))
                region = np.asarray(ex["face_region"], dtype=bool)
                if region.any():
                    _outline(face_ax, region)
                    share = float(att[region].sum() / max(att.sum(), 1e-12))
                    face_ax.set_xlabel(f"{share:.0%} of the attention in the region ({region.mean():.0%} of the grid)",
                                       fontsize=7)
                face_ax.set_xticks([])
                face_ax.set_yticks([])
            else:
                _placeholder(face_ax, "no face tokens")
            face_ax.set_title(title, fontsize=8)
            if "voice_attention" in ex:
                att = np.asarray(ex["voice_attention"], dtype=float)
                voiced = np.asarray(ex["voiced"], dtype=bool)[: len(att)]
                colours = [TRUTH_COLOUR if v else "#ced4da" for v in voiced]
                voice_ax.bar(np.arange(len(att)), att, color=colours, edgecolor="#343a40", linewidth=0.5)
                voice_ax.set_xticks(np.arange(len(att)))
                share = float(att[voiced].sum() / max(att.sum(), 1e-12))
                voice_ax.set_title(f"voice tokens in time: {share:.0%} of the attention on voiced tokens "
                                   f"(green, {voiced.mean():.0%} of them)", fontsize=8)
                voice_ax.set_xlabel("voice token (time →)", fontsize=7)
                voice_ax.tick_params(labelsize=7)
                voice_ax.spines[["top", "right"]].set_visible(False)
            else:
                _placeholder(voice_ax, "no voice tokens")
        fig.tight_layout()
        return _render(fig)


def run_overlay(runs: Sequence[Mapping[str, Any]]) -> np.ndarray:
    """Validation AUC and purity per round of several runs on one pair of axes each (newest last)."""
    with _DRAW_LOCK:
        fig = Figure(figsize=(10.0, 3.4), dpi=100)
        auc_ax, pur_ax = fig.subplots(1, 2)
        oracle = None
        for i, run in enumerate(runs):
            colour = RUN_COLOURS[i % len(RUN_COLOURS)]
            rows = run.get("metrics") or []
            x, y = _series(rows, "val_auc")
            best = run.get("val_auc")
            label = run.get("label", f"run {i + 1}") + (f": best {best:.3f}" if best is not None else "")
            if x:
                auc_ax.plot(x, y, marker="o", ms=3, color=colour, label=label, lw=2 if i == len(runs) - 1 else 1.2)
            xp, yp = _series(rows, "purity")
            if xp:
                pur_ax.plot(xp, yp, marker="o", ms=3, color=colour, lw=2 if i == len(runs) - 1 else 1.2)
            oracle = run.get("oracle_val_auc", oracle)
        if oracle is not None:
            auc_ax.axhline(oracle, color=ORACLE_COLOUR, ls="--", lw=1.2, label=f"oracle {oracle:.3f}")
        if not runs:
            _placeholder(auc_ax, "train a run to start the comparison")
        elif len(runs) == 1:
            auc_ax.text(0.5, 0.04, "train again (e.g. with a switch off) to compare", ha="center", fontsize=8,
                        color="#868e96", transform=auc_ax.transAxes)
        auc_ax.set_ylim(0.3, 1.0)
        auc_ax.set_title("validation AUC per round", fontsize=9)
        if auc_ax.get_legend_handles_labels()[0]:
            auc_ax.legend(fontsize=7, frameon=False, loc="lower right")
        pur_ax.set_ylim(0, 1)
        pur_ax.set_title("cluster purity per round (unsupervised runs)", fontsize=9)
        for ax in (auc_ax, pur_ax):
            ax.set_xlabel("round", fontsize=8)
            ax.tick_params(labelsize=8)
            ax.spines[["top", "right"]].set_visible(False)
        fig.tight_layout()
        return _render(fig)
