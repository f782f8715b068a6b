"""The linear baselines ``cca_supervised`` and ``cca``: fitted once, no optimiser steps.

Both fit regularised CCA (``faa_core.linear``) on per-label mean *frozen* global features of
the training videos: the true identities for ``cca_supervised``, the pseudo-identities of the
same clustering FAA's first round uses for ``cca`` (k-means on pooled frozen features,
``clustering.start_fraction`` of the videos). The fit is loaded into the projection heads, so
the result is an ordinary checkpoint scored by cosine (the match head stays untrained and is
never used: these objectives do not train FVM).
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from faa_core.linear import fit_cca, label_means, load_cca_into_heads


def fit_linear_baseline(model: Any, voice: Any, face: Any, index: Any, video_labels: np.ndarray,
                        cfg: Mapping[str, Any]) -> dict[str, Any]:
    """Fit CCA on the label means of ``index``'s training items and load it into ``model.heads``.

    Returns the statistics for the training log: how many labels were used and the canonical
    correlations found.
    """
    c = cfg["cca"]
    labels = np.asarray(video_labels, dtype=np.int64)
    v_lab = labels[index.voice_video]
    f_lab = labels[index.face_video]
    v_keep, f_keep = v_lab >= 0, f_lab >= 0
    v = np.asarray(voice.globals(index.voice_video_items[v_keep]), dtype=np.float32)
    f = np.asarray(face.globals(index.face_video_items[f_keep]), dtype=np.float32)
    keys, v_means, f_means = label_means(v, v_lab[v_keep], f, f_lab[f_keep])
    maps = fit_cca(f_means, v_means, pca_dims=int(c["pca_dims"]), n_components=int(c["components"]), reg=float(c["reg"]))
    load_cca_into_heads(model.heads, maps)
    return {"cca_labels": int(len(keys)), "cca_correlations": [round(float(x), 4) for x in maps.correlations]}
