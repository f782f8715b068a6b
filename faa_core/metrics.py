"""Evaluation metrics for voice-face association (numpy only).

Conventions shared by every function here:

* Higher score = more likely the same person.
* Inputs may be numpy arrays, anything ``np.asarray`` accepts, or torch
  tensors (converted with ``.detach().cpu()``; torch is never imported here).
* Invalid input raises ``ValueError`` with a specific message: empty input,
  shape mismatch, NaN/inf scores, non-binary labels, single-class labels.
* Ties are never broken arbitrarily: every metric gives tied candidates the
  expected credit of a uniformly random tie break (matching accuracies) or
  follows scikit-learn's threshold grouping (AUC, AP), so results are
  deterministic and reproducible against scikit-learn.
"""

from __future__ import annotations

from typing import Any, Iterable

import numpy as np
from scipy.stats import rankdata

__all__ = [
    "verification_auc",
    "matching_accuracy",
    "one_to_n_accuracy",
    "matching_trials",
    "matching_curve",
    "average_precision",
    "retrieval_map",
    "cosine_to_unit",
]


# ---------------------------------------------------------------------------
# input helpers
# ---------------------------------------------------------------------------


def _as_array(x: Any) -> np.ndarray:
    """numpy view of ``x``; torch tensors are detached and moved to CPU."""
    if hasattr(x, "detach") and hasattr(x, "cpu"):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def _as_scores(x: Any, name: str) -> np.ndarray:
    """Real-valued score array (any shape), float dtype preserved."""
    arr = _as_array(x)
    if arr.dtype == object or not (
        np.issubdtype(arr.dtype, np.floating)
        or np.issubdtype(arr.dtype, np.integer)
        or arr.dtype == np.bool_
    ):
        try:
            arr = arr.astype(np.float64)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{name} must be numeric, got dtype {arr.dtype}") from exc
    if not np.issubdtype(arr.dtype, np.floating):
        arr = arr.astype(np.float64)
    if arr.size == 0:
        raise ValueError(f"{name} is empty")
    return arr


def _check_finite(arr: np.ndarray, name: str) -> None:
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} contains NaN or inf")


def _check_finite_rows(arr: np.ndarray, name: str, rows: int = 1024) -> None:
    """Row-chunked finiteness check: no full-size boolean temporary."""
    for lo in range(0, arr.shape[0], rows):
        if not np.isfinite(arr[lo : lo + rows]).all():
            raise ValueError(f"{name} contains NaN or inf")


def _as_binary(x: Any, name: str) -> np.ndarray:
    """Boolean array from bool or 0/1 numeric input; anything else is an error."""
    arr = _as_array(x)
    if arr.dtype == np.bool_:
        return arr
    try:
        vals = np.unique(arr)
    except TypeError as exc:
        raise ValueError(f"{name} must be binary (0/1 or bool)") from exc
    if vals.size and not np.isin(vals, [0, 1]).all():
        raise ValueError(
            f"{name} must be binary (0/1 or bool); found values {vals[:10].tolist()}"
        )
    return arr.astype(bool)


def _as_ids(x: Any, name: str, length: int) -> np.ndarray:
    arr = _as_array(x)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {arr.shape}")
    if arr.shape[0] != length:
        raise ValueError(
            f"{name} has length {arr.shape[0]} but the similarity matrix needs {length}"
        )
    return arr


def _as_sim(x: Any) -> np.ndarray:
    sim = _as_scores(x, "sim")
    if sim.ndim != 2:
        raise ValueError(f"sim must be 2-D (queries x gallery), got shape {sim.shape}")
    return sim


def _encode_ids(query_ids: np.ndarray, gallery_ids: np.ndarray):
    """Integer identity codes.

    Returns ``(q_code, g_order, g_start, g_count, n_gal_ids)`` where gallery
    identities are coded ``0..n_gal_ids-1``; ``g_order[g_start[k]:
    g_start[k] + g_count[k]]`` are the gallery indices of identity ``k``;
    ``q_code`` is -1 for a query whose identity is absent from the gallery.
    """
    try:
        g_uniq, g_code = np.unique(gallery_ids, return_inverse=True)
        g_code = g_code.reshape(-1)
        pos = np.searchsorted(g_uniq, query_ids)
        pos_c = np.minimum(pos, len(g_uniq) - 1)
        found = np.asarray(g_uniq[pos_c] == query_ids, dtype=bool)
    except TypeError as exc:
        raise ValueError(
            "query_ids and gallery_ids must be 1-D arrays of mutually comparable "
            "identity labels"
        ) from exc
    if found.shape != query_ids.shape:
        raise ValueError("query_ids and gallery_ids have incomparable types")
    q_code = np.where(found, pos_c, -1).astype(np.int64)
    g_order = np.argsort(g_code, kind="stable")
    g_count = np.bincount(g_code, minlength=len(g_uniq))
    g_start = np.concatenate([[0], np.cumsum(g_count)[:-1]])
    return q_code, g_order, g_start, g_count, len(g_uniq)


# ---------------------------------------------------------------------------
# verification
# ---------------------------------------------------------------------------


def verification_auc(scores: Any, labels: Any) -> float:
    """ROC AUC of binary verification trials (label 1 = same person).

    Uses the rank-sum (Mann-Whitney U) identity with average ranks for ties,
    i.e. ``P(s_pos > s_neg) + 0.5 * P(s_pos == s_neg)``, which is exactly
    what ``sklearn.metrics.roc_auc_score`` computes (up to float rounding).
    ``scores`` and ``labels`` must have the same shape; they are flattened.
    """
    s = _as_scores(scores, "scores")
    y_raw = _as_array(labels)
    if s.shape != y_raw.shape:
        raise ValueError(f"shape mismatch: scores {s.shape} vs labels {y_raw.shape}")
    _check_finite(s, "scores")
    y = _as_binary(y_raw, "labels").ravel()
    s = s.ravel()
    n_pos = int(y.sum())
    n_neg = y.size - n_pos
    if n_pos == 0 or n_neg == 0:
        raise ValueError(
            "labels contain only one class; AUC needs both positive and negative trials"
        )
    ranks = rankdata(s.astype(np.float64), method="average")
    u = ranks[y].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def cosine_to_unit(cos: Any) -> np.ndarray:
    """Map cosine similarity in [-1, 1] to [0, 1] via ``(cos + 1) / 2``.

    For reporting verification scores as probability-like values; monotone,
    so AUC / AP / matching accuracies are unchanged by it. Values slightly
    outside [-1, 1] (float error) map slightly outside [0, 1]; no clipping.
    """
    c = _as_array(cos)
    if not np.issubdtype(c.dtype, np.floating):
        c = c.astype(np.float64)
    return (c + 1.0) / 2.0


# ---------------------------------------------------------------------------
# matching
# ---------------------------------------------------------------------------


def matching_accuracy(pos_scores: Any, neg_scores: Any) -> float:
    """1:2 matching accuracy.

    Trial ``i`` pits the correct candidate (``pos_scores[i]``) against one
    wrong candidate (``neg_scores[i]``). It is correct when the correct one
    scores strictly higher; an exact tie counts as 0.5, the expected accuracy
    of breaking the tie at random (so constant scores give chance, 0.5).
    """
    p = _as_scores(pos_scores, "pos_scores")
    n = _as_scores(neg_scores, "neg_scores")
    if p.shape != n.shape:
        raise ValueError(f"shape mismatch: pos_scores {p.shape} vs neg_scores {n.shape}")
    _check_finite(p, "pos_scores")
    _check_finite(n, "neg_scores")
    credit = (p > n).astype(np.float64) + 0.5 * (p == n)
    return float(credit.mean())


def one_to_n_accuracy(scores: Any) -> float:
    """1:N matching accuracy from a (Q, N) score matrix.

    Column 0 holds the correct candidate, columns 1..N-1 the wrong ones. A
    row earns 1 when column 0 is strictly the maximum; when column 0 ties
    with others at the maximum it earns 1 / (number of tied maxima), the
    expected accuracy of a random tie break. For N = 2 this equals
    ``matching_accuracy(scores[:, 0], scores[:, 1])``.
    """
    s = _as_scores(scores, "scores")
    if s.ndim != 2:
        raise ValueError(f"scores must be 2-D (trials x candidates), got shape {s.shape}")
    if s.shape[1] < 2:
        raise ValueError(f"scores needs at least 2 candidate columns, got {s.shape[1]}")
    _check_finite(s, "scores")
    row_max = s.max(axis=1, keepdims=True)
    n_tied = (s == row_max).sum(axis=1)
    credit = (s[:, 0] == row_max[:, 0]) / n_tied
    return float(credit.mean())


def _sample_distinct(rng: np.random.Generator, n_rows: int, k: int, m: int) -> np.ndarray:
    """(n_rows, m) rows of m distinct integers from [0, k), uniformly (Floyd)."""
    out = np.empty((n_rows, m), dtype=np.int64)
    for i, j in enumerate(range(k - m, k)):
        t = rng.integers(0, j + 1, size=n_rows)
        dup = (out[:, :i] == t[:, None]).any(axis=1)
        out[:, i] = np.where(dup, j, t)
    return out


def matching_trials(
    query_ids: Any,
    gallery_ids: Any,
    ns: Iterable[int] = range(2, 11),
    trials: int = 1000,
    seed: int | None = 0,
) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """1:N matching trials drawn from a labelled query set and gallery, for each N in ``ns``.

    Why apart from the scoring: a trial list can then be scored by any pair
    scorer (cosine, the match head, an oracle), and every scorer sees the same
    trials. Returns ``{N: (queries (T,), candidates (T, N))}`` as indices into
    the query and gallery arrays, the correct candidate in column 0.

    Each trial draws a random eligible query, a random gallery item of the
    same identity (the correct candidate) and N-1 gallery items from N-1
    distinct other identities (identities uniformly without replacement, then
    one item uniformly within each). Queries whose identity has no gallery
    item are skipped. Each N uses its own stream derived from ``seed``, so a
    trial list does not depend on which other N are requested. Raises
    ``ValueError`` when no trial can be built for some N.
    """
    q_ids = _as_array(query_ids)
    g_ids = _as_array(gallery_ids)
    if q_ids.ndim != 1 or g_ids.ndim != 1:
        raise ValueError(f"query_ids and gallery_ids must be 1-D, got shapes {q_ids.shape} and {g_ids.shape}")
    ns = [int(n) for n in ns]
    if not ns:
        raise ValueError("ns is empty")
    if any(n < 2 for n in ns):
        raise ValueError(f"every N in ns must be >= 2, got {ns}")
    trials = int(trials)
    if trials < 1:
        raise ValueError(f"trials must be >= 1, got {trials}")

    q_code, g_order, g_start, g_count, n_ids = _encode_ids(q_ids, g_ids)
    matched = np.flatnonzero(q_code >= 0)
    if matched.size == 0:
        raise ValueError("no trial can be built: no query identity appears in the gallery")

    base = np.random.SeedSequence(seed)
    result: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    for n in ns:
        if n_ids - 1 < n - 1:
            raise ValueError(
                f"no trial can be built for N={n}: the gallery has only {n_ids} "
                f"identities, so no query has {n - 1} other identities"
            )
        rng = np.random.default_rng(
            np.random.SeedSequence(entropy=base.entropy, spawn_key=(n,))
        )
        q = matched[rng.integers(0, matched.size, size=trials)]
        qc = q_code[q]
        # correct candidate: a random gallery item of the query's identity
        correct = g_order[g_start[qc] + (rng.random(trials) * g_count[qc]).astype(np.int64)]
        # N-1 distinct other identities: sample from [0, n_ids-1), skip own code
        other = _sample_distinct(rng, trials, n_ids - 1, n - 1)
        other += other >= qc[:, None]
        pick = (rng.random(other.shape) * g_count[other]).astype(np.int64)
        wrong = g_order[g_start[other] + pick]
        result[n] = (q, np.concatenate([correct[:, None], wrong], axis=1))
    return result


def matching_curve(
    sim: Any,
    query_ids: Any,
    gallery_ids: Any,
    ns: Iterable[int] = range(2, 11),
    trials: int = 1000,
    seed: int | None = 0,
) -> dict[int, float]:
    """1:N matching accuracy for each N in ``ns`` from a (Q, G) similarity matrix.

    The trials are :func:`matching_trials`'s (same arguments, same draws);
    each is scored with :func:`one_to_n_accuracy` (ties share credit).
    """
    sim = _as_sim(sim)
    n_q, n_g = sim.shape
    q_ids = _as_ids(query_ids, "query_ids", n_q)
    g_ids = _as_ids(gallery_ids, "gallery_ids", n_g)
    _check_finite_rows(sim, "sim")
    return {
        n: one_to_n_accuracy(sim[q[:, None], cand])
        for n, (q, cand) in matching_trials(q_ids, g_ids, ns, trials, seed).items()
    }


# ---------------------------------------------------------------------------
# retrieval
# ---------------------------------------------------------------------------


def _ap_from_sorted(sorted_all: np.ndarray, rel_scores: np.ndarray) -> float:
    """AP of one ranked list, sklearn tie convention.

    ``sorted_all``: every score of the list, ascending. ``rel_scores``: the
    scores of the relevant items. sklearn groups tied scores into one
    threshold, so each relevant item contributes the precision at the end of
    its tie group, i.e. #relevant(score >= s) / #items(score >= s); AP is the
    mean of that over relevant items (recall increment 1/P each).
    """
    rel = np.sort(rel_scores)
    n_all_ge = sorted_all.size - np.searchsorted(sorted_all, rel, side="left")
    n_rel_ge = rel.size - np.searchsorted(rel, rel, side="left")
    return float(np.mean(n_rel_ge / n_all_ge))


def average_precision(scores: Any, relevant: Any) -> float:
    """Average precision of one ranked list (higher score = ranked first).

    Equals ``sklearn.metrics.average_precision_score(relevant, scores)``
    including ties: tied scores form one threshold, and every relevant item
    in a tie group gets the precision measured at the end of that group.
    Raises ``ValueError`` when no item is relevant (AP undefined).
    """
    s = _as_scores(scores, "scores")
    r_raw = _as_array(relevant)
    if s.shape != r_raw.shape:
        raise ValueError(f"shape mismatch: scores {s.shape} vs relevant {r_raw.shape}")
    _check_finite(s, "scores")
    r = _as_binary(r_raw, "relevant").ravel()
    s = s.ravel()
    if not r.any():
        raise ValueError("relevant has no True entry; average precision is undefined")
    return _ap_from_sorted(np.sort(s), s[r])


def retrieval_map(
    sim: Any,
    query_ids: Any,
    gallery_ids: Any,
    *,
    chunk_size: int = 256,
) -> float:
    """Mean average precision of ranking the whole gallery for each query.

    ``sim`` is (Q, G); row q ranks all G gallery items, relevant = same
    identity as query q. AP follows :func:`average_precision` (sklearn, tie
    groups). Queries with no relevant gallery item are skipped; ``ValueError``
    if none remain. Only this direction is computed: for the other one call
    ``retrieval_map(sim.T, gallery_ids, query_ids)``.

    Rows are processed ``chunk_size`` at a time (one sorted float copy of the
    chunk in memory), so a 20k x 20k float32 matrix fits easily.
    """
    sim = _as_sim(sim)
    n_q, n_g = sim.shape
    q_ids = _as_ids(query_ids, "query_ids", n_q)
    g_ids = _as_ids(gallery_ids, "gallery_ids", n_g)
    chunk_size = int(chunk_size)
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")

    q_code, g_order, g_start, g_count, _ = _encode_ids(q_ids, g_ids)
    valid = np.flatnonzero(q_code >= 0)
    if valid.size == 0:
        raise ValueError(
            "no query has a relevant gallery item (no query identity appears in gallery_ids)"
        )
    # gallery indices per identity, precomputed once
    groups = [g_order[st : st + c] for st, c in zip(g_start, g_count)]

    total = 0.0
    for lo in range(0, valid.size, chunk_size):
        rows = valid[lo : lo + chunk_size]
        chunk = np.asarray(sim[rows])
        chunk_sorted = np.sort(chunk, axis=1)
        # after sorting, -inf sits first and +inf / NaN last
        if not np.isfinite(chunk_sorted[:, [0, -1]]).all():
            raise ValueError("sim contains NaN or inf")
        for i, code in enumerate(q_code[rows]):
            total += _ap_from_sorted(chunk_sorted[i], chunk[i, groups[code]])
    skipped = np.flatnonzero(q_code < 0)
    for lo in range(0, skipped.size, chunk_size):
        if not np.isfinite(sim[skipped[lo : lo + chunk_size]]).all():
            raise ValueError("sim contains NaN or inf")
    return total / valid.size
