"""Does the match head look where the signal is? Attention mass on a synthetic world's truth.

A synthetic world puts the shared (cross-modal) traits into a fixed region of
the face token grid and into the "voiced" voice tokens only (``truth/``). If
the multimodal encoder learned to use the signal, its [CLS] attention puts
more mass there than the region's share of positions; uniform attention
gives exactly the share.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from faa_core.model import FAAModel

from training.eval.scoring import embed_items, item_tokens


def _voiced_masks(truth: Path, voice_ids: np.ndarray, manifest_ids: np.ndarray) -> dict[str, np.ndarray]:
    items = np.load(truth / "voice_items.npz")
    offsets, voiced = items["token_offsets"], items["voiced"]
    row = {str(i): k for k, i in enumerate(manifest_ids)}
    return {str(i): voiced[offsets[row[str(i)]]:offsets[row[str(i)] + 1]] for i in voice_ids}


@torch.inference_mode()
def attention_mass(
    model: FAAModel, data_dir: str | Path, voice: Any, face: Any, voice_items: np.ndarray, face_items: np.ndarray,
    batch: int = 256,
) -> dict[str, float]:
    """Mean [CLS] attention mass on the informative face region and on voiced tokens, with their shares.

    Returns ``face_mass``/``face_share`` (share = the region's fraction of the
    grid) and ``voice_mass``/``voice_share`` (share = the mean voiced fraction
    of the scored utterances), each only where the model has those tokens.
    """
    truth = Path(data_dir) / "truth"
    cfg = model.config
    model.eval()
    out: dict[str, float] = {"pairs": int(len(voice_items))}
    face_mask = np.load(truth / "face_mask.npy") if cfg.face_token_dim > 0 else None
    voiced = None
    if cfg.voice_token_dim > 0:
        import csv

        with open(Path(data_dir) / "manifest" / "voice.csv") as fh:
            manifest_ids = np.array([r["id"] for r in csv.DictReader(fh)])
        voiced = _voiced_masks(truth, np.asarray(voice.ids)[np.unique(voice_items)], manifest_ids)
    face_sum = voice_sum = voice_share = 0.0
    for s in range(0, len(voice_items), batch):
        v, f = voice_items[s:s + batch], face_items[s:s + batch]
        ve, fe = embed_items(model, voice, v, "voice"), embed_items(model, face, f, "face")
        vt, vm = item_tokens(voice, v, cfg.voice_token_dim > 0, "cpu")
        ft, _ = item_tokens(face, f, cfg.face_token_dim > 0, "cpu")
        res = model.match(None, None, vt, ft, vm, voice_emb=ve, face_emb=fe, need_weights=True)
        if face_mask is not None:
            face_sum += float(res.face_attention[:, torch.from_numpy(face_mask)].sum())
        if voiced is not None:
            w = res.voice_attention.numpy()
            for k, item in enumerate(v):
                m = voiced[str(voice.ids[item])]
                if len(m) != int(vm[k].sum()):
                    raise ValueError(f"voice item {voice.ids[item]}: {int(vm[k].sum())} tokens but {len(m)} truth flags")
                voice_sum += float(w[k, : len(m)][m].sum())
                voice_share += float(m.mean())
    n = max(len(voice_items), 1)
    if face_mask is not None:
        out.update(face_mass=face_sum / n, face_share=float(face_mask.mean()))
    if voiced is not None:
        out.update(voice_mass=voice_sum / n, voice_share=voice_share / n)
    return out
