"""Words of the "Learn how FAA works" tab: what each picture shows, the live status, the result table."""

from __future__ import annotations

from typing import Any, Mapping, Optional, Sequence

LEARN_INTRO = """\
## Watch FAA learn, then break it

This tab trains a small FAA model **live, on this server**, on a *synthetic world*: made-up people
whose voices and faces are feature vectors we generated ourselves, so we know the truth that a real
dataset never tells you: who is who, which traits a voice and a face really share (a gender-like
and an age-like trait, plus a few weaker ones), where in the face and when in the speech those traits
are, and the best score any model could reach (the **oracle**).

Pick a world, a method and a seed and press **Train**. Then turn one of FAA's switches off (say
*diverse positives*) and train again: the last picture overlays the two runs. One training runs at
a time on this server; if someone else is training, you wait in the queue (your place is shown).
"""

CURVES_TEXT = """\
**Training curves, one point per round.** A round = group the training videos into clusters, take some
training steps, then test on people the model never saw (validation).
- **Pseudo-labels.** FAA is *unsupervised*: nobody tells it who is who. Each round it pools every
  video's voice and face into one vector and groups similar videos with k-means; the group number is
  the video's **pseudo-label**, its best guess of "same person". **Purity** says how often a cluster
  holds one true person (1.0 = perfect); the number of clusters shrinks when validation stops improving
  (*progressive clustering*).
- **Validation AUC** (0.5 = coin toss, 1.0 = perfect) on voice-face pairs of unseen people: the dashed
  line is the **oracle**, the ceiling set by how much voices and faces really share in this world; the
  dotted line is the model before training.
"""

PROJECTION_TEXT = """\
**The shared space before and after alignment** (2-D PCA of the test people's voice ● and face ▲
embeddings). Before training the two modalities sit apart and the colours hardly group. After *align*
(the contrastive loss FVC pulls a voice towards faces with the same pseudo-label), voices and faces
mix, and points of the same **gender-like trait** (right) separate: it is the strongest trait both
modalities carry. Individual people (left) stay mixed: their private traits (the face-only and
voice-only ones) are exactly what cross-modal learning cannot use.
"""

ATTENTION_TEXT = """\
**What the match head looks at** (FAA's *fuse* step: a small transformer in which the voice attends to
the face and says "same person or not"). Left: attention over the face's grid of tokens, with the
world's **informative region** (the only positions that carry the shared traits) outlined in green.
Right: attention over the voice tokens in time; green bars are the **voiced** tokens (the rest is
silence and noise). A head that learned something puts more weight inside the green than its share;
a short training may not get there yet. SL and Wen 2021 have no match head, so nothing is drawn.
"""

OVERLAY_TEXT = """\
**Two runs side by side**: this run and your previous one (train twice to fill it). Try FAA, then
FAA with **diverse positives** off. With diverse positives, a positive pair takes the face from
*another* video of the same pseudo-person. Without them, the face comes from the *same* video, and a
face and a voice of one video share the background, the clothes and the microphone. The model then
learns that **shortcut** ("same recording", not "same person"), which is useless on new people:
its validation AUC ends lower.
"""

TABLE_TEXT = """\
**Test numbers** on the world's own test lists (people used neither for training nor for validation),
next to the oracle: verification AUC (is this voice this face's?), 1:2 matching accuracy (which of two
faces is the speaker's?), retrieval mAP (rank every face for every voice). "G" lists pair people of
the same gender-like trait, which removes the easiest clue.
"""

REAL_DATA_TEXT = """\
**What a real run needs**: VoxCeleb1 face-track frames and recordings, features from pretrained
encoders (`python -m training.extract`), and hours of training (see the README's real-data recipe).
The synthetic world only shows *how* the method learns; its numbers say nothing about real people.
"""

PHASES = {
    "waiting": "⏳ Waiting for another training to finish",
    "world": "🌍 Building the synthetic world",
    "setup": "⚙️ Setting up (measuring the untrained model and the oracle)",
    "training": "🏃 Training",
    "evaluating": "🧪 Evaluating on the test lists",
    "done": "✅ Done",
    "stopped": "⏹️ Stopped",
    "failed": "❌ Failed",
}


def _f(x: Any, nd: int = 3) -> str:
    return "–" if x is None else f"{float(x):.{nd}f}"


def learn_status_markdown(
    label: str, phase: str, elapsed: float, rounds: Sequence[Mapping[str, Any]], max_rounds: int,
    start: Optional[Mapping[str, Any]] = None, message: str = "", notes: Sequence[str] = (),
) -> str:
    """The live status: phase, round k of N, the last round's losses, clusters, purity and AUC vs the oracle."""
    lines = [f"**{PHASES.get(phase, phase)}** — {label} — {elapsed:.0f} s"]
    if message:
        lines.append(f"- {message}")
    for n in notes:
        lines.append(f"- ⚠️ {n}")
    start = start or {}
    if start:
        probe = start.get("probe")
        probe_txt = f", probe ceiling {_f(probe)}" if isinstance(probe, (int, float)) else ""
        lines.append(
            f"- validation AUC before training **{_f(start.get('untrained_val_auc'))}**; "
            f"oracle **{_f(start.get('oracle_val_auc'))}**{probe_txt}"
        )
    if rounds:
        r = rounds[-1]
        losses = ", ".join(f"{k} {_f(r[k])}" for k in ("loss", "fvc", "fvm", "wen") if k in r)
        purity = f", purity {_f(r['purity'], 2)}" if "purity" in r else ""
        best = max(x["val_auc"] for x in rounds)
        lines.append(
            f"- round **{int(r['round']) + 1} / {max_rounds}**: {losses}; {int(r['clusters'])} clusters{purity}; "
            f"validation AUC **{_f(r['val_auc'])}** (best so far {_f(best)})"
        )
    return "\n".join(lines)


def learn_error_markdown(message: str) -> str:
    """A bad choice: one line saying what is wrong and what to choose."""
    return f"**❌ Nothing was trained.** {message}"


def test_table_markdown(test: Mapping[str, float], oracle: Mapping[str, float], val: Optional[float] = None,
                        oracle_val: Optional[float] = None, untrained_val: Optional[float] = None) -> str:
    """The run's test numbers beside the oracle's, one row per list (validation first)."""
    out = ["| list | this run | oracle |", "|---|---:|---:|"]
    if val is not None:
        extra = f" (untrained {_f(untrained_val)})" if untrained_val is not None else ""
        out.append(f"| validation AUC (best round){extra} | {_f(val)} | {_f(oracle_val)} |")
    for name in sorted(test):
        out.append(f"| {name} | {_f(test[name])} | {_f(oracle.get(name))} |")
    return "\n".join(out)
