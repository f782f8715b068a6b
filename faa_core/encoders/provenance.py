"""Which encoder weights made a set of features, and whether a checkpoint fits the loaded encoders.

A feature store (``store.json`` ``source.encoders``) and a checkpoint card
(``encoders``) name, per modality, the encoder and a ``weights_id``:

* ``sha256:<hex>`` -- the weight file's content (``WeightFile.weights_id``);
* ``random (seed N)`` -- this package's seeded random initialisation;
* ``unknown: <why>`` -- features made elsewhere whose weight file is not known
  (Self-Lifting's released embeddings): no loaded encoder can be shown to be it.

A checkpoint trained on one encoder's features scores another encoder's
features without any error, and the numbers mean nothing: the pipeline refuses
such a pairing unless asked not to. Cards without a ``weights_id`` (older cards,
checkpoints trained on synthetic worlds) are not checked.
"""

from __future__ import annotations

from typing import Any, Mapping, Optional

from .weights import EncoderWeights, WeightFile

SIDES = ("voice", "face")
UNKNOWN_PREFIX = "unknown"
OVERRIDE_HINT = "pass --allow-encoder-mismatch (allow_encoder_mismatch=True in Python) to serve it anyway"


def weights_provenance(weights: Optional[WeightFile]) -> dict[str, Any]:
    """The provenance fields a store or a card records for one encoder's weights."""
    if weights is None:
        return {"weights_id": f"{UNKNOWN_PREFIX}: the caller's encoder names no weight file"}
    return {"weights_id": weights.weights_id(), "weights_source": weights.source}


def card_weight_ids(card: Mapping[str, Any]) -> dict[str, str]:
    """Side -> ``weights_id`` for the sides whose card entry records one."""
    encoders = card.get("encoders")
    out: dict[str, str] = {}
    if isinstance(encoders, Mapping):
        for side in SIDES:
            entry = encoders.get(side)
            if isinstance(entry, Mapping) and isinstance(entry.get("weights_id"), str) and entry["weights_id"]:
                out[side] = entry["weights_id"]
    return out


def _short(weights_id: str) -> str:
    return weights_id[:19] + "..." if weights_id.startswith("sha256:") else weights_id


def _card_label(entry: Mapping[str, Any], weights_id: str) -> str:
    label = str(entry.get("weights") or entry.get("name") or "an unnamed encoder")
    return label if weights_id.startswith(UNKNOWN_PREFIX) else f"{label} ({_short(weights_id)})"


def encoder_mismatch(card: Mapping[str, Any], weights: EncoderWeights) -> Optional[str]:
    """One line saying which encoders the checkpoint was trained on and which are loaded, or None when they agree.

    Only sides whose card names a ``weights_id`` are compared (a missing one
    is unknown and never refused); the loaded file is hashed only then.
    """
    wanted = card_weight_ids(card)
    trained, loaded = [], []
    for side in SIDES:
        if side not in wanted:
            continue
        have = getattr(weights, side)
        have_id = have.weights_id()
        if have_id == wanted[side]:
            continue
        trained.append(f"{side} features of {_card_label(card['encoders'][side], wanted[side])}")
        loaded.append(f"the loaded {side} encoder is {have.source} ({_short(have_id)})")
    if not trained:
        return None
    return (f"checkpoint was trained on {' and '.join(trained)}; {' and '.join(loaded)} - {OVERRIDE_HINT}")
