"""Scoring voice-face pairs with a trained model: cosine, fusion or both combined.

Used by validation during training and by the evaluation reports. Each
distinct item is embedded once, and the multimodal encoder's one-sided work
is done once per item; only the pair-dependent rest runs per pair.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from faa_core.model import FAAModel
from faa_core.model.pair_scoring import VoiceSide, encode_faces, encode_voices, match_logits

SCORINGS = ("fusion", "cosine", "combined")


@torch.inference_mode()
def embed_items(model: FAAModel, source: Any, items: np.ndarray, modality: str, batch: int = 4096) -> torch.Tensor:
    """Aligned embeddings of ``items`` of one modality (float32, L2-normalised)."""
    embed = model.embed_voice if modality == "voice" else model.embed_face
    device = next(model.parameters()).device
    out = [
        embed(torch.from_numpy(np.asarray(source.globals(items[i : i + batch]), dtype=np.float32)).to(device))
        for i in range(0, len(items), batch)
    ]
    return torch.cat(out) if out else torch.zeros(0, model.config.embed_dim)


def item_tokens(source: Any, items: np.ndarray, use: bool, device) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """Padded tokens and mask of ``items`` on ``device``, or ``(None, None)`` when the model does not use them.

    The one way tokens become tensors, for training steps and for scoring alike.
    """
    if not use:
        return None, None
    tok, mask = source.tokens(items)
    return torch.from_numpy(np.asarray(tok, dtype=np.float32)).to(device), torch.from_numpy(np.asarray(mask)).to(device)


def _voice_sides(model: FAAModel, source: Any, items: np.ndarray, chunk: int) -> VoiceSide:
    """Voice-only encoder work for every distinct voice, padded to one length."""
    cfg, enc = model.config, model.fusion
    device = next(model.parameters()).device
    parts = []
    for s in range(0, len(items), chunk):
        it = items[s : s + chunk]
        vt, vm = item_tokens(source, it, cfg.voice_token_dim > 0, device)
        parts.append(encode_voices(enc, embed_items(model, source, it, "voice"), vt, vm))
    t = max(p.x.shape[1] for p in parts)
    x = torch.cat([torch.nn.functional.pad(p.x, (0, 0, 0, t - p.x.shape[1])) for p in parts])
    emb = torch.cat([p.emb for p in parts])
    if parts[0].mask is None:
        return VoiceSide(x, None, emb)
    return VoiceSide(x, torch.cat([torch.nn.functional.pad(p.mask, (0, t - p.mask.shape[1])) for p in parts]), emb)


@torch.inference_mode()
def fusion_probabilities(
    model: FAAModel,
    voice_src: Any,
    face_src: Any,
    voice_items: np.ndarray,
    face_items: np.ndarray,
    batch: int = 1024,
    chunk: int = 1024,
) -> np.ndarray:
    """P(same person) of pairs (voice_items[k], face_items[k]).

    The one-sided work (token projections, the first layer's voice
    self-attention, the face keys and values) runs once per distinct item
    (``faa_core.model.pair_scoring``); faces are taken ``chunk`` distinct
    faces at a time so memory stays bounded on lists of any size.
    """
    model.eval()
    cfg, enc = model.config, model.fusion
    device = next(model.parameters()).device
    voice_items, face_items = np.asarray(voice_items), np.asarray(face_items)
    out = np.empty(len(voice_items), dtype=np.float32)
    if len(voice_items) == 0:
        return out
    uv, vi = np.unique(voice_items, return_inverse=True)
    uf, fi = np.unique(face_items, return_inverse=True)
    voices = _voice_sides(model, voice_src, uv, chunk)
    order = np.argsort(fi, kind="stable")
    sorted_fi = fi[order]
    for c in range(0, len(uf), chunk):
        it = uf[c : c + chunk]
        ft, _ = item_tokens(face_src, it, cfg.face_token_dim > 0, device)
        faces = encode_faces(enc, embed_items(model, face_src, it, "face"), ft)
        lo, hi = np.searchsorted(sorted_fi, [c, c + len(it)])
        rows = order[lo:hi]
        for s in range(0, len(rows), batch):
            r = rows[s : s + batch]
            logits = match_logits(
                enc, voices.take(torch.from_numpy(vi[r]).to(device)), faces.take(torch.from_numpy(fi[r] - c).to(device))
            )
            out[r] = FAAModel.match_probability(logits).cpu().numpy()
    return out


@torch.inference_mode()
def score_pairs(
    model: FAAModel,
    voice_src: Any,
    face_src: Any,
    voice_items: np.ndarray,
    face_items: np.ndarray,
    scoring: str = "fusion",
) -> np.ndarray:
    """One score per pair; higher = more likely the same person.

    ``cosine`` is mapped to [0, 1]; ``combined`` is the mean of that and the
    fusion probability.
    """
    if scoring not in SCORINGS:
        raise ValueError(f"scoring must be one of {SCORINGS}, got {scoring!r}")
    model.eval()
    voice_items, face_items = np.asarray(voice_items), np.asarray(face_items)
    uv, v_inv = np.unique(voice_items, return_inverse=True)
    uf, f_inv = np.unique(face_items, return_inverse=True)
    v_emb = embed_items(model, voice_src, uv, "voice")
    f_emb = embed_items(model, face_src, uf, "face")
    v_inv_t, f_inv_t = torch.from_numpy(v_inv), torch.from_numpy(f_inv)
    cos01 = ((v_emb[v_inv_t] * f_emb[f_inv_t]).sum(-1).float().cpu().numpy() + 1.0) / 2.0
    if scoring == "cosine":
        return cos01
    prob = fusion_probabilities(model, voice_src, face_src, voice_items, face_items)
    return prob if scoring == "fusion" else (prob + cos01) / 2.0


def verification_trials(voice: Any, face: Any, split: str, n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Balanced random (voice, face, label) trials among items of one split with known identities.

    A positive pairs a voice with a face of the same person from *another*
    video, as in the evaluation lists: a face from the voice's own video
    shares its background and microphone, which would let a model that
    learnt the per-video nuisance score well. Negatives pair a face of a
    uniformly drawn other identity. Only voices whose person has a face in
    another video take part, so every trial can be either kind.
    """
    rng = np.random.default_rng(seed)
    v_items = np.flatnonzero((np.asarray(voice.splits) == split) & (np.asarray(voice.identities) != ""))
    f_items = np.flatnonzero((np.asarray(face.splits) == split) & (np.asarray(face.identities) != ""))
    if len(v_items) == 0 or len(f_items) == 0:
        raise ValueError(f"no {split} items with known identities to validate on")
    f_ident = np.asarray(face.identities)[f_items].astype(str)
    f_video = np.asarray(face.videos)[f_items].astype(str)
    order = np.lexsort((f_video, f_ident))  # by identity, then video: a video's faces are one block of its person's
    uniq, starts, counts = np.unique(f_ident[order], return_index=True, return_counts=True)
    if len(uniq) < 2:
        raise ValueError(f"the {split} split needs at least two identities")
    key_ident, key_video = f_ident[order], f_video[order]
    pairs = np.char.add(np.char.add(key_ident, "\x00"), key_video)  # sorted like order
    v_ident_all = np.asarray(voice.identities)[v_items].astype(str)
    v_key = np.char.add(np.char.add(v_ident_all, "\x00"), np.asarray(voice.videos)[v_items].astype(str))
    pos_all = np.searchsorted(uniq, v_ident_all)
    has_face = (pos_all < len(uniq)) & (uniq[np.minimum(pos_all, len(uniq) - 1)] == v_ident_all)
    # the block of faces from the voice's own video, to step over
    own_lo = np.searchsorted(pairs, v_key, side="left")
    own_n = np.searchsorted(pairs, v_key, side="right") - own_lo
    others = np.where(has_face, counts[np.minimum(pos_all, len(uniq) - 1)] - own_n, 0)
    ok = others > 0
    if not ok.any():
        raise ValueError(f"no {split} voice has a face of the same person from another video to validate on "
                         "(validation positives must not share the voice's video)")
    v_items, own_lo, own_n, others, pos_all = v_items[ok], own_lo[ok], own_n[ok], others[ok], pos_all[ok]
    pick = rng.integers(0, len(v_items), size=n)
    vs = v_items[pick]
    pos, own_lo, own_n, others = pos_all[pick], own_lo[pick], own_n[pick], others[pick]
    labels = (np.arange(len(vs)) % 2 == 0).astype(np.int8)
    other_id = (pos + 1 + (rng.random(len(vs)) * (len(uniq) - 1)).astype(np.int64)) % len(uniq)
    # positives: uniform among the person's faces outside the voice's video (offset steps over that block)
    offset = (rng.random(len(vs)) * others).astype(np.int64)
    offset += np.where(starts[pos] + offset >= own_lo, own_n, 0)
    neg_offset = (rng.random(len(vs)) * counts[other_id]).astype(np.int64)
    row = np.where(labels == 1, starts[pos] + offset, starts[other_id] + neg_offset)
    fs = f_items[order[row]]
    return vs, fs, labels
