"""Atomic file writes: a reader sees the old file or the new one, never half of one.

Every file the project writes that another process may read while it is
being written (checkpoints, feature-store shards and ``store.json``,
manifests, training state, experiment results) goes through :func:`atomic_write`:
the content is written to a temporary file in the target's folder and moved
over the target with ``os.replace`` (atomic on POSIX and Windows within one
file system). A failure leaves the target as it was and removes the
temporary file.

The temporary file is created with mode ``0o666`` through ``os.open``, so the
kernel applies the process umask exactly as for a plain ``open(path, "w")``
(``tempfile.mkstemp`` would make every file ``0600``, hiding shared stores and
checkpoints from the other users of a group).
"""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path
from typing import Any, Callable

__all__ = [
    "read_json_document",
    "atomic_write",
    "atomic_write_text",
    "atomic_write_json",
    "atomic_write_bytes",
    "atomic_save_npy",
    "atomic_torch_save",
]


def atomic_write(path: str | os.PathLike[str], write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp)`` on a fresh temporary file beside ``path``, then move it over ``path``.

    Why one function: the temporary name, the umask-respecting mode, the
    clean-up on failure and the final ``os.replace`` are the same for every
    format; ``write`` only fills the file (it may reopen it by name, as
    ``safetensors`` and ``torch.save`` do). The parent folder is created.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    while True:
        tmp = target.with_name(f".{target.name}.{secrets.token_hex(4)}.tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:  # pragma: no cover - 32 random bits collided
            continue
        os.close(fd)
        break
    try:
        write(tmp)
        os.replace(tmp, target)
    finally:
        if os.path.lexists(tmp):
            os.unlink(tmp)
    return target


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    """UTF-8 text written as is (no newline translation)."""

    def write(tmp: Path) -> None:
        with open(tmp, "w", encoding="utf-8", newline="") as fh:
            fh.write(text)

    return atomic_write(path, write)


def atomic_write_json(path: str | os.PathLike[str], obj: Any) -> Path:
    """``obj`` as indented JSON with a final newline (keys in insertion order)."""
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Raw bytes."""
    return atomic_write(path, lambda tmp: tmp.write_bytes(data))


def atomic_save_npy(path: str | os.PathLike[str], array: Any) -> Path:
    """One array in ``.npy`` format (never pickled, so it can be memory-mapped and read safely)."""
    import numpy as np

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as fh:
            np.save(fh, array, allow_pickle=False)

    return atomic_write(path, write)


def atomic_torch_save(obj: Any, path: str | os.PathLike[str]) -> Path:
    """``torch.save(obj, path)`` (argument order as torch's), atomically."""
    import torch

    return atomic_write(path, lambda tmp: torch.save(obj, tmp))


def read_json_document(path: str | os.PathLike[str], fmt: str, version: int | None = None) -> dict[str, Any]:
    """A JSON file that names its format (``{"format": fmt, "version": n, ...}``), checked.

    Why: stores, manifests, worlds and extraction plans are all such documents;
    each reader used to parse and check it its own way (a damaged file gave a
    raw JSONDecodeError). ValueError, naming the file, when it cannot be read as
    JSON, holds another format, or is newer than ``version``.
    """
    path = Path(path)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: cannot be read as JSON ({exc})") from None
    got = doc.get("format") if isinstance(doc, dict) else None
    if got != fmt:
        raise ValueError(f"{path}: format is {got!r}, expected {fmt!r}")
    if version is not None and int(doc.get("version", -1)) > version:
        raise ValueError(f"{path}: version {doc.get('version')} is newer than this reader ({version})")
    return doc

