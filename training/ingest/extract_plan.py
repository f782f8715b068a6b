"""Extraction plan: settings, ranks, parts, the recorded plan (``OUT/extract.json``) and the disk estimate.

Part of ``python -m training.extract`` (see :mod:`training.ingest.extract`):
this module decides *what* is extracted where; it never runs an encoder.
"""

from __future__ import annotations

import math
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

from faa_core.fileio import atomic_write_json, read_json_document
from training.features import MODALITIES
from training.ingest.manifest import Manifest

PLAN_FORMAT = "faa-extraction"
PLAN_VERSION = 1
FACE_CROPS = ("detect-or-center", "detect", "center")
EXIT_INCOMPLETE = 3


class ExtractError(Exception):
    """A user mistake or a refused situation, with a message to show as is."""


@dataclass
class Settings:
    """Everything that decides the features; a resumed run must use the same values."""

    weights: str = "pretrained"
    face_crop: str = "detect-or-center"
    center_fraction: float = 0.6
    voice_token_rate: float = 4.0
    max_audio_seconds: float = 300.0
    shard_size: int = 1024


@dataclass
class RunOptions:
    """How this invocation works; changing these never changes the features."""

    batch_size: int = 32
    device: str = "auto"
    workers: int = 4
    stop_after_parts: Optional[int] = None
    wait_timeout: Optional[float] = None
    poll_seconds: float = 10.0
    progress: bool = True
    rank: Optional[int] = None
    world_size: Optional[int] = None
    local_rank: Optional[int] = None


@dataclass
class Outcome:
    """What one invocation did."""

    rank: int
    world_size: int
    parts_total: int
    parts_done_before: int
    parts_written: list[str] = field(default_factory=list)
    items_written: int = 0
    items_skipped: int = 0
    finalised: bool = False
    complete: bool = False
    stopped_early: bool = False
    message: str = ""


def rank_from_env(env: Optional[dict[str, str]] = None) -> tuple[int, int, int]:
    """(rank, world_size, local_rank) from torchrun's variables; (0, 1, 0) when absent."""
    env = dict(os.environ if env is None else env)
    try:
        rank = int(env.get("RANK", "0"))
        world = int(env.get("WORLD_SIZE", "1"))
        local = int(env.get("LOCAL_RANK", str(rank)))
    except ValueError:
        raise ExtractError(
            f"RANK/WORLD_SIZE/LOCAL_RANK must be integers, got {env.get('RANK')!r}/{env.get('WORLD_SIZE')!r}/"
            f"{env.get('LOCAL_RANK')!r}"
        ) from None
    if world < 1 or not 0 <= rank < world:
        raise ExtractError(f"need 0 <= RANK < WORLD_SIZE, got RANK={rank} WORLD_SIZE={world}")
    return rank, world, local


@dataclass(frozen=True)
class Part:
    modality: str
    index: int
    start: int
    stop: int

    @property
    def name(self) -> str:
        return part_folder(Path("."), self.modality, self.index).name

    def folder(self, out: Path) -> Path:
        return part_folder(out, self.modality, self.index)

    def done(self, out: Path) -> bool:
        return (self.folder(out) / "store.json").is_file()


def part_folder(out: Path, modality: str, index: int) -> Path:
    """Where part ``index`` of a modality is written: ``OUT/parts/<modality>/part-NNNNN``."""
    return out / "parts" / modality / f"part-{index:05d}"


def parts_of(counts: dict[str, int], shard_size: int, modalities: Sequence[str]) -> list[Part]:
    """All parts in the fixed order ranks deal from (modalities in MODALITIES order)."""
    parts: list[Part] = []
    for m in MODALITIES:
        if m not in modalities:
            continue
        n = counts[m]
        for i in range(math.ceil(n / shard_size)):
            parts.append(Part(m, i, i * shard_size, min(n, (i + 1) * shard_size)))
    return parts


def _weights_signature(weights: str) -> str:
    """``random``/``pretrained`` as is; a directory by its absolute path (same files on every rank)."""
    return weights if weights in ("random", "pretrained") else str(Path(weights).resolve())


def _modality_plan(manifest: Manifest, m: str, settings: Settings) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "manifest_checksum": manifest.checksum(m),
        "items": len(manifest.rows[m]),
        "shard_size": settings.shard_size,
        "parts": math.ceil(len(manifest.rows[m]) / settings.shard_size),
        "weights": _weights_signature(settings.weights),
    }
    if m == "face":
        entry["face_crop"] = settings.face_crop
        entry["center_fraction"] = settings.center_fraction
    else:
        entry["voice_token_rate"] = settings.voice_token_rate
        entry["max_audio_seconds"] = settings.max_audio_seconds
    return entry


def _load_plan(out: Path) -> Optional[dict[str, Any]]:
    path = out / "extract.json"
    if not path.is_file():
        return None
    try:
        return read_json_document(path, PLAN_FORMAT)
    except ValueError as exc:
        raise ExtractError(f"{exc}: not an extraction plan; remove it, pass --overwrite or choose another --out") from None


def merge_plan(out: Path, manifest: Manifest, modalities: Sequence[str], settings: Settings) -> dict[str, Any]:
    """Create the plan, or check that this run continues it (same manifest and settings)."""
    plan = _load_plan(out) or {
        "format": PLAN_FORMAT, "version": PLAN_VERSION, "manifest": str(manifest.root.resolve()), "modalities": {},
    }
    changed = False
    for m in modalities:
        want = _modality_plan(manifest, m, settings)
        have = plan["modalities"].get(m)
        if have is None:
            plan["modalities"][m] = want
            changed = True
            continue
        diff = [k for k in sorted(set(want) | set(have)) if want.get(k) != have.get(k)]
        if diff:
            what = ", ".join(f"{k}: {have.get(k)!r} -> {want.get(k)!r}" for k in diff if k != "manifest_checksum")
            if "manifest_checksum" in diff:
                what = "the manifest changed" + (f"; {what}" if what else "")
            raise ExtractError(
                f"{out} holds a {m} extraction made with other inputs ({what}); rerun with the same manifest and "
                "settings to resume, or pass --overwrite to start over (or use another --out)"
            )
    weights = {e["weights"] for e in plan["modalities"].values()}
    if len(weights) > 1:
        raise ExtractError(f"{out}: the modalities would use different encoder weights {sorted(weights)}; use one --weights")
    if changed:
        atomic_write_json(out / "extract.json", plan)
    return plan


def prepare_out(out: Path, overwrite: bool, world: int) -> None:
    ours = ("extract.json", "parts", "store.json", "face", "voice", "extract_report.json", "extract_report.txt")
    if out.exists() and not out.is_dir():
        raise ExtractError(f"--out {out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()):
        if not (out / "extract.json").is_file():
            raise ExtractError(f"--out {out} is not empty and holds no extraction (extract.json); choose an empty or new folder")
        if overwrite:
            if world > 1:
                raise ExtractError("--overwrite cannot be used with several ranks (they would delete each other's "
                                   "parts); clear the folder with one process first")
            (out / "store.json").unlink(missing_ok=True)
            for name in ours:
                p = out / name
                if p.is_dir():
                    shutil.rmtree(p)
                elif p.exists():
                    p.unlink()
    out.mkdir(parents=True, exist_ok=True)


# ---------------------------------------------------------------------------
# disk size
# ---------------------------------------------------------------------------


def voice_token_count(duration_s: float, token_rate: float) -> int:
    """Tokens VoiceEncoder gives for a recording: Fbank frames (10 ms hop) pooled per 1/token_rate s."""
    from faa_core.encoders.voice import FRAMES_PER_SECOND

    frames = int(duration_s * FRAMES_PER_SECOND) + 1
    window = max(1, int(round(FRAMES_PER_SECOND / token_rate)))
    return -(-frames // window)


def estimate_bytes(manifest: Manifest, modality: str, token_rate: float = 4.0) -> int:
    """Store size of a modality: items x (global + token) dims x 2 bytes (fp16), plus offsets.

    Voice tokens come from the manifest's ``duration_s`` (8 s assumed where absent).
    """
    from faa_core.encoders import FACE_DIM, FACE_GRID, FACE_TOKEN_DIM, VOICE_DIM, VOICE_TOKEN_DIM

    rows = manifest.rows[modality]
    n = len(rows)
    if modality == "face":
        return n * (FACE_DIM + FACE_GRID[0] * FACE_GRID[1] * FACE_TOKEN_DIM) * 2 + n * 8
    tokens = 0
    for r in rows:
        try:
            d = float(r.get("duration_s") or 8.0)
        except ValueError:
            d = 8.0
        tokens += voice_token_count(d, token_rate)
    return n * VOICE_DIM * 2 + tokens * VOICE_TOKEN_DIM * 2 + n * 8


def gib(n: float) -> str:
    return f"{n / 2**30:.2f} GiB" if n >= 2**28 else f"{n / 2**20:.1f} MiB"
