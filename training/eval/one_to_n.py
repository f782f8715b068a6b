"""1:N matching lists (one query, the correct candidate, N-1 others), as SL's ``test_matching_10``.

The Wen 2021 format only holds 1:2 trials, so ``training.ingest.import_sl`` writes
SL's 1:N trials to ``sl_match_{v2f,f2v}_*.txt`` next to the other lists: one
trial per line, space-separated, the query first, then the correct candidate,
then the others. Accuracy is ``faa_core.metrics.one_to_n_accuracy``'s: a
trial earns 1 when the correct candidate scores strictly highest, and
1 / (number tied) when it ties others at the top.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from faa_core.metrics import one_to_n_accuracy

from faa_core.protocols import direction_from_name

PATTERN = "sl_match_*.txt"


def read_one_to_n(path: Path) -> tuple[str, np.ndarray, np.ndarray]:
    """(direction, queries (T,), candidates (T, N) with the correct one first) of one list file."""
    direction = direction_from_name(path.stem)
    if direction is None:
        raise ValueError(f"{path.name}: cannot tell the direction (v2f or f2v) from the name")
    rows = [line.split() for line in path.read_text().splitlines() if line.strip()]
    sizes = {len(r) for r in rows}
    if not rows or len(sizes) != 1 or min(sizes) < 3:
        raise ValueError(f"{path.name}: every line needs a query and the same number (>= 2) of candidates; "
                         f"found line lengths {sorted(sizes)}")
    table = np.array(rows)
    return direction, table[:, 0], table[:, 1:]


def evaluate_one_to_n(
    folder: Path, voice: Any, face: Any, score: Callable[[np.ndarray, np.ndarray], np.ndarray],
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Accuracy of every 1:N list in ``folder`` (report entries keyed by the file's stem)."""
    out: dict[str, Any] = {}
    for path in sorted(Path(folder).glob(PATTERN)):
        t0 = time.perf_counter()
        direction, queries, cands = read_one_to_n(path)
        t, n = cands.shape
        q_src, c_src = (voice, face) if direction == "v2f" else (face, voice)
        q = np.repeat(q_src.index([str(s) for s in queries]), n)
        c = c_src.index([str(s) for s in cands.reshape(-1)])
        s = (score(q, c) if direction == "v2f" else score(c, q)).reshape(t, n)
        value = one_to_n_accuracy(s)
        out[path.stem] = {"task": "matching", "direction": direction, "metric": "accuracy", "candidates": int(n),
                          "value": value, "trials": int(t), "seconds": round(time.perf_counter() - t0, 2)}
        if log is not None:
            log(f"{path.stem}: accuracy {value:.4f} (1:{n}, {t} trials)")
    return out
