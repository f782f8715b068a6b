"""1:2 matching lists on the Wen 2021 *test* identities, made by this project.

Wen et al. released their 1:2 matching lists (``match_{v2f,g_v2f}_2_val.txt``)
on the validation identities only: the same identities a trainer uses to pick
its best round, so numbers on them are validation numbers. Their test
matching lists are not public. This module derives test lists from what is
public — the test retrieval galleries (every test voice and face) and the
identity table (gender) — deterministically from a seed, in the same triplet
format (query, correct candidate, wrong candidate):

* ``match_{v2f,f2v}_2_test``: the wrong candidate is of any other test identity;
* ``match_g_{v2f,f2v}_2_test``: the wrong candidate has the query's gender.

``TRIALS_PER_QUERY`` triplets per query item, as in Wen's validation lists
(about two per voice). They are this project's lists, not Wen's: reports
label them ``"origin": "generated"``.
"""

from __future__ import annotations

import numpy as np

from faa_core.protocols import MatchingList, Protocol

TRIALS_PER_QUERY = 2
DEFAULT_SEED = 0
ORIGIN = f"training.eval.test_matching, seed {DEFAULT_SEED}"


def _gallery(protocol: Protocol) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Every test-identity voice and face with its identity, from the retrieval lists (union, sorted)."""
    voices: dict[str, str] = {}
    faces: dict[str, str] = {}
    for r in protocol.retrieval.values():
        voices.update(zip(r.voices.tolist(), r.voice_identities.tolist()))
        faces.update(zip(r.faces.tolist(), r.face_identities.tolist()))
    test = set(protocol.ids_in_split("test"))
    v = sorted(p for p, i in voices.items() if i in test)
    f = sorted(p for p, i in faces.items() if i in test)
    return (np.array(v, dtype=str), np.array([voices[p] for p in v], dtype=str),
            np.array(f, dtype=str), np.array([faces[p] for p in f], dtype=str))


def _triplets(
    queries: np.ndarray, q_ids: np.ndarray, cands: np.ndarray, c_ids: np.ndarray,
    gender: dict[str, str], same_gender: bool, rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    by_id: dict[str, np.ndarray] = {i: np.flatnonzero(c_ids == i) for i in np.unique(c_ids)}
    people = np.array(sorted(by_id), dtype=str)
    genders = np.array([gender.get(p, "") for p in people], dtype=str)
    q_out, p_out, n_out = [], [], []
    for q, qi in zip(queries.tolist(), q_ids.tolist()):
        own = by_id.get(qi)
        if own is None:
            continue  # no candidate of the query's identity in this modality
        pool = people[(people != qi) & ((genders == gender.get(qi, "")) if same_gender else True)]
        if len(pool) == 0:
            continue
        for _ in range(TRIALS_PER_QUERY):
            other = by_id[str(pool[rng.integers(len(pool))])]
            q_out.append(q)
            p_out.append(cands[own[rng.integers(len(own))]])
            n_out.append(cands[other[rng.integers(len(other))]])
    return np.array(q_out, dtype=str), np.array(p_out, dtype=str), np.array(n_out, dtype=str)


def wen_test_matching(protocol: Protocol, seed: int = DEFAULT_SEED) -> dict[str, MatchingList]:
    """The four generated 1:2 test lists of a Wen 2021 protocol (empty when it has no test galleries).

    Deterministic: the same protocol files and seed give the same trials in the same order.
    """
    if protocol.name != "wen2021" or not protocol.retrieval:
        return {}
    voices, v_ids, faces, f_ids = _gallery(protocol)
    gender = {key: ident.gender for key, ident in protocol.identities.items()}
    out: dict[str, MatchingList] = {}
    for k, (direction, same_gender) in enumerate(
        (("v2f", False), ("f2v", False), ("v2f", True), ("f2v", True))
    ):
        rng = np.random.default_rng([int(seed), 2021, k])
        if direction == "v2f":
            q, p, n = _triplets(voices, v_ids, faces, f_ids, gender, same_gender, rng)
        else:
            q, p, n = _triplets(faces, f_ids, voices, v_ids, gender, same_gender, rng)
        name = f"match_{'g_' if same_gender else ''}{direction}_2_test"
        out[name] = MatchingList(name, direction, q, p, n)
    return out
