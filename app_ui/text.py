"""Text shown in the page: model description, warning banner, messages, ranking, teaching notes."""

from __future__ import annotations

import html
import json
from typing import Any, Mapping, Sequence

HOW_TO_READ = """\
**How to read this**

- **Match probability** is the answer of FAA's *fusion* step: a small transformer lets the voice
  attend to each face and says how likely it is that the face belongs to the speaker. Above 0.5
  means "more likely the speaker than not". The candidates are ranked by it.
- **Cosine** is the answer of FAA's *align* step alone: the similarity of the voice and face
  embeddings in their shared space (from -1 to 1). The two usually agree; where they disagree, the
  fusion has used something the cosine cannot express.
- **Face heatmap** (right half of each tile): where in the aligned face the voice's attention went
  (bright = more). It shows what the model looked at, not what is "true" about the person.
- **Voice attention** (bars over the waveform): which moments of the recording the best candidate's
  match relied on; the thin lines are the other candidates'. Silence usually gets little weight.
- The model only knows what it learned from its training data: with a **synthetic** checkpoint or
  **random** encoders (see the banner at the top) the numbers say nothing about real people. Even a
  well-trained model only guesses from traits voices and faces share (such as gender and age); it
  cannot identify anyone.
"""


def candidate_label(image_name: str, face_index: int, faces_in_image: int) -> str:
    """A short name for one face: the image, plus the face's number when the image has several."""
    return f"{image_name} #{face_index + 1}" if faces_in_image > 1 else image_name


def model_info_markdown(
    checkpoint: str,
    weights_description: str,
    trained_on: Mapping[str, Any] | None,
    device: str,
) -> str:
    """Which checkpoint and which encoder weights are in use (always shown at the top)."""
    data = ""
    if trained_on:
        what = trained_on.get("data") or trained_on.get("dataset") or json.dumps(dict(trained_on))
        data = f" (trained on: {what})"
    return (
        f"**Checkpoint:** `{checkpoint}`{data}  \n"
        f"**Encoder weights:** {weights_description}  \n"
        f"**Device:** {device}"
    )


def warning_banner_html(warnings: Sequence[str]) -> str:
    """A red banner listing every model warning; an empty string when there are none."""
    if not warnings:
        return ""
    items = "".join(f"<li>{html.escape(w)}</li>" for w in warnings)
    return (
        '<div class="faa-warning" role="alert" style="border:2px solid #c92a2a;background:#fff5f5;'
        'color:#862e2e;padding:10px 14px;border-radius:8px;">'
        f"<strong>Warning</strong><ul style='margin:4px 0 0 18px;'>{items}</ul></div>"
    )


def messages_markdown(errors: Sequence[str], warnings: Sequence[str], scored: int) -> str:
    """What happened to this request: problems first, then how many faces were scored."""
    lines = []
    for e in errors:
        lines.append(f"- ❌ {e}")
    for w in warnings:
        lines.append(f"- ⚠️ {w}")
    head = f"**{scored} face{'s' if scored != 1 else ''} scored.**" if scored else "**Nothing was scored.**"
    return head + ("\n\n" + "\n".join(lines) if lines else "")


def ranking_markdown(rows: Sequence[Mapping[str, Any]]) -> str:
    """The ranked candidates as a table (rank, face, probability, cosine)."""
    if not rows:
        return ""
    out = ["| rank | face | match probability | cosine |", "|---:|---|---:|---:|"]
    for r in rows:
        label = str(r["label"]).replace("|", "\\|")
        out.append(f"| {r['rank']} | {label} | {r['probability']:.3f} | {r['cosine']:.3f} |")
    return "\n".join(out)
