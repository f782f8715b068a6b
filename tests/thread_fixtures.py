"""Run one callable on several threads at once and collect what each returned or raised."""

from __future__ import annotations

import threading
from typing import Any, Callable


def call_in_threads(fn: Callable[[int], Any], n: int) -> tuple[list[Any], list[BaseException]]:
    """``fn(k)`` for k in 0..n-1, all started before any is joined; (results by k, exceptions raised)."""
    out: list[Any] = [None] * n
    errors: list[BaseException] = []

    def run(k: int) -> None:
        try:
            out[k] = fn(k)
        except Exception as exc:  # pragma: no cover - reported to the caller
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(k,)) for k in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return out, errors
