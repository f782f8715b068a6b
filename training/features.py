"""The feature store: frozen-encoder outputs on disk, one folder per extraction.

Encoders are frozen, so features are extracted once and every trainer and
evaluator reads them from here. The layout is plain numpy + CSV + JSON so it
can be inspected without this code, and it is read through memory maps so a
store far larger than RAM (real-dims tokens: 64 x 896 per face) costs only the
rows actually asked for::

    ROOT/store.json                  what is inside (written last, atomically)
    ROOT/<modality>/items.csv        id,video,identity,split in item-index order
    ROOT/<modality>/shard-00000.global.npy   (n, D) float16
    ROOT/<modality>/shard-00000.tokens.npy   (sum of token counts, C) float16
    ROOT/<modality>/shard-00000.offsets.npy  (n + 1,) int64 (token rows of item i:
                                             offsets[i]:offsets[i + 1])

``store.json`` is written only when the writer closes cleanly, so a crashed
extraction never looks like a complete store. float16 halves the disk and the
page cache; readers return float32.

:class:`FeatureSource` is the small interface a trainer or evaluator needs;
:class:`ModalityFeatures` (stored features) and the synthetic world's
procedural sources (``training.synth``) both implement it.
"""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path
from typing import Any, Iterable, Mapping, Protocol, Sequence, runtime_checkable

import numpy as np

from faa_core.fileio import atomic_save_npy, atomic_write_json, atomic_write_text, read_json_document

__all__ = [
    "FORMAT",
    "VERSION",
    "MODALITIES",
    "FeatureSource",
    "ItemTable",
    "FeatureStoreWriter",
    "FeatureStore",
    "merge_parts",
    "ModalityFeatures",
    "pad_tokens",
]

FORMAT = "faa-features"
VERSION = 1
#: The two modalities of this project, in the order every tool walks them (stores, manifests, worlds).
MODALITIES = ("face", "voice")
ITEM_COLUMNS = ("id", "video", "identity", "split")


# ---------------------------------------------------------------------------
# the interface shared by stored and procedural features
# ---------------------------------------------------------------------------


@runtime_checkable
class FeatureSource(Protocol):
    """One modality's items and their features, however they are produced.

    Items are addressed by integer index ``0 .. len - 1``; the string arrays
    describe them (``identity`` may be ``""`` = unknown, as for unlabeled data).
    """

    ids: np.ndarray
    videos: np.ndarray
    identities: np.ndarray
    splits: np.ndarray

    @property
    def global_dim(self) -> int: ...

    @property
    def token_dim(self) -> int: ...

    @property
    def has_tokens(self) -> bool: ...

    @property
    def token_grid(self) -> tuple[int, int] | None: ...

    def __len__(self) -> int: ...

    def index(self, ids: Iterable[str]) -> np.ndarray: ...

    def select(self, split: str) -> np.ndarray: ...

    def globals(self, indices: Any) -> np.ndarray: ...

    def all_globals(self) -> np.ndarray: ...

    def tokens(self, indices: Any, max_tokens: int | None = None) -> tuple[np.ndarray, np.ndarray]: ...

    def token_counts(self, indices: Any = None) -> np.ndarray: ...


class ItemTable:
    """The id/video/identity/split arrays and the lookups every source shares."""

    def __init__(self, ids: Sequence[str], videos: Sequence[str], identities: Sequence[str], splits: Sequence[str]) -> None:
        n = len(ids)
        if not (len(videos) == len(identities) == len(splits) == n):
            raise ValueError("ids, videos, identities and splits must have the same length")
        self.ids = np.asarray(list(ids), dtype=str)
        self.videos = np.asarray(list(videos), dtype=str)
        self.identities = np.asarray(list(identities), dtype=str)
        self.splits = np.asarray(list(splits), dtype=str)
        self._lookup: dict[str, int] | None = None

    def __len__(self) -> int:
        return int(self.ids.shape[0])

    def index(self, ids: Iterable[str]) -> np.ndarray:
        """Item indices of ``ids`` (a str is one id); KeyError names the missing ones."""
        if self._lookup is None:
            self._lookup = {s: i for i, s in enumerate(self.ids.tolist())}
        wanted = [ids] if isinstance(ids, str) else list(ids)
        out = np.empty(len(wanted), dtype=np.int64)
        missing: list[str] = []
        for k, s in enumerate(wanted):
            i = self._lookup.get(str(s))
            if i is None:
                missing.append(str(s))
                out[k] = -1
            else:
                out[k] = i
        if missing:
            shown = ", ".join(repr(m) for m in missing[:5])
            more = f" (and {len(missing) - 5} more)" if len(missing) > 5 else ""
            raise KeyError(f"{len(missing)} id(s) not in this feature source: {shown}{more}")
        return out

    def select(self, split: str) -> np.ndarray:
        """Indices of the items of one split ("train", "val", "test", ...)."""
        return np.flatnonzero(self.splits == split)

    def check_indices(self, indices: Any) -> np.ndarray:
        """int64 1-D copy of ``indices``; IndexError when one is out of range."""
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        n = len(self)
        if idx.size and (idx.min() < -n or idx.max() >= n):
            raise IndexError(f"item index out of range for {n} items")
        return np.where(idx < 0, idx + n, idx)


def pad_tokens(seqs: Sequence[np.ndarray], dim: int, max_tokens: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Stack variable-length (T_i, C) arrays into (n, Tmax, C) float32 + a bool mask.

    Sequences longer than ``max_tokens`` keep their first ``max_tokens`` rows.
    """
    lengths = [min(len(s), max_tokens) if max_tokens is not None else len(s) for s in seqs]
    t_max = max(lengths, default=0)
    out = np.zeros((len(seqs), t_max, dim), dtype=np.float32)
    mask = np.zeros((len(seqs), t_max), dtype=bool)
    for i, (s, n) in enumerate(zip(seqs, lengths)):
        out[i, :n] = s[:n]
        mask[i, :n] = True
    return out, mask


# ---------------------------------------------------------------------------
# writing
# ---------------------------------------------------------------------------


class _ModalityBuffer:
    """Rows waiting to become the next shard, plus the item table so far."""

    def __init__(self, name: str, global_dim: int, token_dim: int, token_grid: tuple[int, int] | None) -> None:
        self.name = name
        self.global_dim = global_dim
        self.token_dim = token_dim
        self.token_grid = token_grid
        self.rows: list[tuple[str, str, str, str]] = []
        self.seen: set[str] = set()
        self.globals: list[np.ndarray] = []
        self.tokens: list[np.ndarray] = []
        self.shards: list[dict[str, Any]] = []

    @property
    def pending(self) -> int:
        return len(self.globals)


class _ModalityTable:
    """What store.json and items.csv say about one modality: dims, grid, rows, shards."""

    def __init__(self, global_dim: int, token_dim: int, token_grid: tuple[int, int] | None,
                 rows: list[tuple[str, str, str, str]], shards: list[dict[str, Any]]) -> None:
        self.global_dim, self.token_dim, self.token_grid = int(global_dim), int(token_dim), token_grid
        self.rows, self.shards = rows, shards

    def entry(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "global_dim": self.global_dim, "token_dim": self.token_dim, "count": len(self.rows), "shards": self.shards,
        }
        if self.token_grid is not None:
            out["token_grid"] = list(self.token_grid)
        return out


def _write_store(root: Path, tables: Mapping[str, _ModalityTable], source: Mapping[str, Any]) -> None:
    """Each modality's items.csv, then store.json last (it marks the store complete)."""
    for name, table in tables.items():
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(ITEM_COLUMNS)
        writer.writerows(table.rows)
        atomic_write_text(root / name / "items.csv", buf.getvalue())
    store = {"format": FORMAT, "version": VERSION, "modalities": {n: t.entry() for n, t in tables.items()},
             "source": dict(source)}
    atomic_write_json(root / "store.json", store)


def _link(src: Path, dst: Path) -> None:
    """``dst`` becomes the same file as ``src`` (hard link; a move where links are not supported)."""
    if not src.exists():
        if dst.exists():  # moved there by an earlier merge
            return
        raise FileNotFoundError(f"{src} is missing (and {dst} too)")
    if dst.exists() or dst.is_symlink():
        if dst.exists() and os.path.samefile(src, dst):
            return
        dst.unlink()
    try:
        os.link(src, dst)
    except OSError:
        os.replace(src, dst)


def merge_parts(
    root: str | os.PathLike[str],
    parts: Mapping[str, Sequence[str | os.PathLike[str]]],
    dims: Mapping[str, tuple[int, int]],
    token_grid: Mapping[str, tuple[int, int]] | None = None,
    source: Mapping[str, Any] | None = None,
) -> Path:
    """One store at ``root`` from finished part stores, without copying a shard.

    Why: a sharded extraction writes every part as its own small store (its
    store.json marks it finished); the final store is their concatenation in
    the given order. Each part's shard files are hard-linked (moved where the
    file system has no links) to ``root/<modality>/shard-PPPPP[-k].*.npy``
    (``PPPPP`` = the part's position), then items.csv and store.json are written
    exactly as :meth:`FeatureStoreWriter.close` writes them. Rerunning it
    after an interruption is safe. Every part must have the modality's
    ``dims`` (global, token) and grid; ValueError otherwise.
    """
    out = Path(root)
    grids = dict(token_grid or {})
    tables: dict[str, _ModalityTable] = {}
    for m, folders in parts.items():
        g_dim, t_dim = (int(v) for v in dims[m])
        grid = tuple(grids[m]) if m in grids and t_dim else None
        mdir = out / m
        mdir.mkdir(parents=True, exist_ok=True)
        table = _ModalityTable(g_dim, t_dim, grid, [], [])  # type: ignore[arg-type]
        for i, folder in enumerate(folders):
            part = FeatureStore(folder)
            feats = part[m]
            if (feats.global_dim, feats.token_dim, feats.token_grid) != (g_dim, t_dim, grid):
                raise ValueError(f"{folder}: {m} has dims {(feats.global_dim, feats.token_dim)} and grid "
                                 f"{feats.token_grid}, expected {(g_dim, t_dim)} and {grid}")
            table.rows += list(zip(feats.ids.tolist(), feats.videos.tolist(), feats.identities.tolist(),
                                   feats.splits.tolist()))
            kinds = ("global", "tokens", "offsets") if t_dim else ("global",)
            for k, shard in enumerate(part.meta["modalities"][m]["shards"]):
                name = f"shard-{i:05d}" if k == 0 else f"shard-{i:05d}-{k}"
                for kind in kinds:
                    _link(Path(folder) / m / f"{shard['name']}.{kind}.npy", mdir / f"{name}.{kind}.npy")
                table.shards.append({"name": name, "count": int(shard["count"])})
        tables[m] = table
    _write_store(out, tables, source or {})
    return out


class FeatureStoreWriter:
    """Writes a feature store; ``store.json`` appears only on a clean :meth:`close`.

    ``dims`` maps modality -> (global_dim, token_dim); token_dim 0 = globals only.
    ``token_grid`` is the face token grid (a pair applies to "face"; a dict maps
    modality -> grid); items of a gridded modality must have exactly H*W tokens.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        dims: Mapping[str, tuple[int, int]],
        shard_size: int = 4096,
        token_grid: tuple[int, int] | Mapping[str, tuple[int, int]] | None = None,
        source: Mapping[str, Any] | None = None,
        overwrite: bool = False,
    ) -> None:
        if not dims:
            raise ValueError("dims must name at least one modality")
        if int(shard_size) < 1:
            raise ValueError(f"shard_size must be >= 1, got {shard_size}")
        self.root = Path(root)
        self.shard_size = int(shard_size)
        self.source = dict(source or {})
        if (self.root / "store.json").exists() and not overwrite:
            raise FileExistsError(f"{self.root} already holds a feature store (pass overwrite=True to replace it)")
        grids: dict[str, tuple[int, int]] = {}
        if isinstance(token_grid, Mapping):
            grids = {str(k): (int(v[0]), int(v[1])) for k, v in token_grid.items()}
        elif token_grid is not None:
            grids = {"face": (int(token_grid[0]), int(token_grid[1]))}
        self._mods: dict[str, _ModalityBuffer] = {}
        for name, pair in dims.items():
            if not isinstance(name, str) or not name or "/" in name or name.startswith("."):
                raise ValueError(f"bad modality name {name!r}")
            g, t = int(pair[0]), int(pair[1])
            if g <= 0 or t < 0:
                raise ValueError(f"{name}: global_dim must be > 0 and token_dim >= 0, got {pair}")
            grid = grids.get(name) if t > 0 else None
            if grid is not None and min(grid) <= 0:
                raise ValueError(f"{name}: token_grid must be positive, got {grid}")
            self._mods[name] = _ModalityBuffer(name, g, t, grid)
        unknown = sorted(set(grids) - set(self._mods))
        if unknown:
            raise ValueError(f"token_grid names modalities not in dims: {unknown}")
        self.root.mkdir(parents=True, exist_ok=True)
        for name in self._mods:
            d = self.root / name
            d.mkdir(exist_ok=True)
            if overwrite:  # stale shards of an earlier store must not be mixed in
                for old in d.glob("shard-*.npy"):
                    old.unlink()
        if overwrite and (self.root / "store.json").exists():
            (self.root / "store.json").unlink()
        self._closed = False

    # -- adding ---------------------------------------------------------------

    def _mod(self, modality: str) -> _ModalityBuffer:
        if self._closed:
            raise RuntimeError("this FeatureStoreWriter is closed")
        try:
            return self._mods[modality]
        except KeyError:
            raise ValueError(f"unknown modality {modality!r}; this store has {sorted(self._mods)}") from None

    def add(
        self,
        modality: str,
        id: str,
        video: str,
        identity: str,
        split: str,
        global_vec: Any,
        tokens: Any = None,
    ) -> None:
        """Add one item; ValueError (naming the id) on bad shapes, NaN/inf or a duplicate id."""
        m = self._mod(modality)
        item_id = str(id)
        if not item_id:
            raise ValueError(f"{modality}: empty item id")
        if item_id in m.seen:
            raise ValueError(f"{modality}: duplicate item id {item_id!r}")
        for label, text in (("video", video), ("identity", identity), ("split", split)):
            if any(c in str(text) for c in "\n\r"):
                raise ValueError(f"{modality} item {item_id!r}: {label} contains a line break")
        g = np.asarray(global_vec, dtype=np.float32)
        if g.shape != (m.global_dim,):
            raise ValueError(f"{modality} item {item_id!r}: global vector has shape {g.shape}, expected ({m.global_dim},)")
        with np.errstate(over="ignore"):  # overflow shows up as inf and is reported below
            g16 = g.astype(np.float16)
        if not np.isfinite(g16).all():
            raise ValueError(f"{modality} item {item_id!r}: global vector has NaN/inf (or exceeds float16 range)")
        t16 = None
        if m.token_dim == 0:
            if tokens is not None:
                raise ValueError(f"{modality} item {item_id!r}: tokens given but the store has token_dim 0 for {modality}")
        else:
            if tokens is None:
                raise ValueError(f"{modality} item {item_id!r}: tokens missing (token_dim {m.token_dim})")
            t = np.asarray(tokens, dtype=np.float32)
            if t.ndim != 2 or t.shape[1] != m.token_dim or t.shape[0] < 1:
                raise ValueError(
                    f"{modality} item {item_id!r}: tokens have shape {t.shape}, expected (T >= 1, {m.token_dim})"
                )
            if m.token_grid is not None and t.shape[0] != m.token_grid[0] * m.token_grid[1]:
                raise ValueError(
                    f"{modality} item {item_id!r}: {t.shape[0]} tokens, expected {m.token_grid[0]}x{m.token_grid[1]}"
                )
            with np.errstate(over="ignore"):
                t16 = t.astype(np.float16)
            if not np.isfinite(t16).all():
                raise ValueError(f"{modality} item {item_id!r}: tokens have NaN/inf (or exceed float16 range)")
        m.seen.add(item_id)
        m.rows.append((item_id, str(video), str(identity), str(split)))
        m.globals.append(g16)
        if t16 is not None:
            m.tokens.append(t16)
        if m.pending >= self.shard_size:
            self._flush(m)

    def add_batch(
        self,
        modality: str,
        ids: Sequence[str],
        videos: Sequence[str],
        identities: Sequence[str],
        splits: Sequence[str],
        globals: Any,
        tokens_list: Sequence[Any] | None = None,
    ) -> None:
        """Add many items (``globals`` is (n, D); ``tokens_list`` n arrays (T_i, C) or None)."""
        n = len(ids)
        if not (len(videos) == len(identities) == len(splits) == n):
            raise ValueError(f"{modality}: ids, videos, identities and splits differ in length")
        G = np.asarray(globals)
        if G.ndim != 2 or G.shape[0] != n:
            raise ValueError(f"{modality}: globals must be ({n}, D), got shape {G.shape}")
        if tokens_list is not None and len(tokens_list) != n:
            raise ValueError(f"{modality}: tokens_list has {len(tokens_list)} entries for {n} items")
        for i in range(n):
            self.add(
                modality, ids[i], videos[i], identities[i], splits[i], G[i],
                None if tokens_list is None else tokens_list[i],
            )

    # -- shards and closing ---------------------------------------------------

    def _flush(self, m: _ModalityBuffer) -> None:
        if not m.pending:
            return
        name = f"shard-{len(m.shards):05d}"
        d = self.root / m.name
        atomic_save_npy(d / f"{name}.global.npy", np.stack(m.globals))
        if m.token_dim:
            counts = np.array([len(t) for t in m.tokens], dtype=np.int64)
            offsets = np.zeros(len(counts) + 1, dtype=np.int64)
            np.cumsum(counts, out=offsets[1:])
            atomic_save_npy(d / f"{name}.tokens.npy", np.concatenate(m.tokens, axis=0))
            atomic_save_npy(d / f"{name}.offsets.npy", offsets)
        m.shards.append({"name": name, "count": m.pending})
        m.globals, m.tokens = [], []

    def close(self) -> Path:
        """Flush the last shards, write items.csv files, then store.json (atomically)."""
        if self._closed:
            return self.root
        tables: dict[str, _ModalityTable] = {}
        for m in self._mods.values():
            self._flush(m)
            tables[m.name] = _ModalityTable(m.global_dim, m.token_dim, m.token_grid, m.rows, m.shards)
        _write_store(self.root, tables, self.source)
        self._closed = True
        return self.root

    def abort(self) -> None:
        """Stop without writing store.json (the folder is then not a valid store)."""
        self._closed = True

    def __enter__(self) -> "FeatureStoreWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


# ---------------------------------------------------------------------------
# reading
# ---------------------------------------------------------------------------


class ModalityFeatures(ItemTable):
    """One modality of a stored feature store, read lazily through memory maps."""

    def __init__(self, root: Path, name: str, meta: Mapping[str, Any]) -> None:
        self.root = Path(root)
        self.name = name
        self._dir = self.root / name
        ids, videos, identities, splits = _read_items(self._dir / "items.csv")
        super().__init__(ids, videos, identities, splits)
        self._global_dim = int(meta["global_dim"])
        self._token_dim = int(meta.get("token_dim", 0))
        grid = meta.get("token_grid")
        self._grid = (int(grid[0]), int(grid[1])) if grid else None
        self._shards = [str(s["name"]) for s in meta.get("shards", [])]
        counts = np.array([int(s["count"]) for s in meta.get("shards", [])], dtype=np.int64)
        self._starts = np.zeros(len(counts) + 1, dtype=np.int64)
        np.cumsum(counts, out=self._starts[1:])
        if int(self._starts[-1]) != len(self) or int(meta.get("count", len(self))) != len(self):
            raise ValueError(
                f"{self._dir}: items.csv has {len(self)} rows but store.json counts {int(self._starts[-1])}"
            )
        self._globals_mm: dict[int, np.ndarray] = {}
        self._tokens_mm: dict[int, np.ndarray] = {}
        self._offsets: dict[int, np.ndarray] = {}

    # -- description ----------------------------------------------------------

    @property
    def global_dim(self) -> int:
        return self._global_dim

    @property
    def token_dim(self) -> int:
        return self._token_dim

    @property
    def has_tokens(self) -> bool:
        return self._token_dim > 0

    @property
    def token_grid(self) -> tuple[int, int] | None:
        return self._grid

    @property
    def num_shards(self) -> int:
        return len(self._shards)

    def __repr__(self) -> str:
        return (
            f"ModalityFeatures({self.name!r}, n={len(self)}, global_dim={self.global_dim}, "
            f"token_dim={self.token_dim}, shards={self.num_shards})"
        )

    # -- file access ------------------------------------------------------------

    def _global_map(self, s: int) -> np.ndarray:
        mm = self._globals_mm.get(s)
        if mm is None:
            mm = np.load(self._dir / f"{self._shards[s]}.global.npy", mmap_mode="r")
            self._globals_mm[s] = mm
        return mm

    def _token_map(self, s: int) -> tuple[np.ndarray, np.ndarray]:
        mm = self._tokens_mm.get(s)
        if mm is None:
            mm = np.load(self._dir / f"{self._shards[s]}.tokens.npy", mmap_mode="r")
            self._tokens_mm[s] = mm
            # offsets are n+1 int64, tiny next to the tokens; still read them via a map
            self._offsets[s] = np.asarray(np.load(self._dir / f"{self._shards[s]}.offsets.npy", mmap_mode="r"))
        return mm, self._offsets[s]

    def _by_shard(self, idx: np.ndarray) -> Iterable[tuple[int, np.ndarray, np.ndarray]]:
        """(shard, positions in idx, local row numbers) for every shard idx touches."""
        shard_of = np.searchsorted(self._starts, idx, side="right") - 1
        for s in np.unique(shard_of):
            pos = np.flatnonzero(shard_of == s)
            yield int(s), pos, idx[pos] - self._starts[s]

    def token_counts(self, indices: Any = None) -> np.ndarray:
        """Number of tokens of each item (all items when ``indices`` is None)."""
        if not self.has_tokens:
            raise ValueError(f"{self.name} features have no tokens (token_dim 0)")
        idx = np.arange(len(self)) if indices is None else self.check_indices(indices)
        out = np.zeros(idx.shape[0], dtype=np.int64)
        for s, pos, local in self._by_shard(idx):
            _, off = self._token_map(s)
            out[pos] = off[local + 1] - off[local]
        return out

    # -- features ---------------------------------------------------------------

    def globals(self, indices: Any) -> np.ndarray:
        """(n, global_dim) float32 for the given item indices (any order, repeats allowed)."""
        idx = self.check_indices(indices)
        out = np.empty((idx.shape[0], self._global_dim), dtype=np.float32)
        for s, pos, local in self._by_shard(idx):
            out[pos] = self._global_map(s)[local]
        return out

    def all_globals(self) -> np.ndarray:
        """Every item's global vector, (len, global_dim) float32."""
        if not self._shards:
            return np.zeros((0, self._global_dim), dtype=np.float32)
        return np.concatenate([np.asarray(self._global_map(s), dtype=np.float32) for s in range(len(self._shards))])

    def tokens(self, indices: Any, max_tokens: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Padded tokens (n, Tmax, C) float32 and mask (n, Tmax) bool (True = real token).

        Only the requested rows are read. Items longer than ``max_tokens`` keep
        their first ``max_tokens`` tokens.
        """
        if not self.has_tokens:
            raise ValueError(f"{self.name} features have no tokens (token_dim 0)")
        if max_tokens is not None and int(max_tokens) < 1:
            raise ValueError(f"max_tokens must be >= 1, got {max_tokens}")
        idx = self.check_indices(indices)
        n = idx.shape[0]
        starts = np.zeros(n, dtype=np.int64)
        lengths = np.zeros(n, dtype=np.int64)
        groups = list(self._by_shard(idx))
        for s, pos, local in groups:
            _, off = self._token_map(s)
            starts[pos] = off[local]
            lengths[pos] = off[local + 1] - off[local]
        if max_tokens is not None:
            lengths = np.minimum(lengths, int(max_tokens))
        t_max = int(lengths.max()) if n else 0
        out = np.zeros((n, t_max, self._token_dim), dtype=np.float32)
        mask = np.arange(t_max)[None, :] < lengths[:, None]
        for s, pos, _ in groups:
            mm, _ = self._token_map(s)
            lens = lengths[pos]
            total = int(lens.sum())
            if total == 0:
                continue
            # one fancy-index read per shard: the token rows of all its requested items
            item_of_row = np.repeat(np.arange(pos.shape[0]), lens)
            first_row = np.cumsum(lens) - lens
            t_in_item = np.arange(total) - np.repeat(first_row, lens)
            rows = np.repeat(starts[pos], lens) + t_in_item
            out[pos[item_of_row], t_in_item] = mm[rows]
        return out, mask


def _read_items(path: Path) -> tuple[list[str], list[str], list[str], list[str]]:
    with open(path, "r", encoding="utf-8", newline="") as fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        if header is None or tuple(header) != ITEM_COLUMNS:
            raise ValueError(f"{path}: expected header {','.join(ITEM_COLUMNS)}, got {header}")
        cols: tuple[list[str], ...] = ([], [], [], [])
        for row in reader:
            if len(row) != 4:
                raise ValueError(f"{path}: bad row {row!r}")
            for c, v in zip(cols, row):
                c.append(v)
    return cols  # type: ignore[return-value]


class FeatureStore:
    """A feature store folder; ``store["face"]`` gives that modality's features."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        path = self.root / "store.json"
        if not path.is_file():
            raise FileNotFoundError(f"{self.root} is not a feature store (no store.json; an unfinished extraction?)")
        meta = read_json_document(path, FORMAT, VERSION)
        self.meta = meta
        self.source: dict[str, Any] = dict(meta.get("source") or {})
        self._meta_mods: dict[str, Any] = dict(meta["modalities"])
        self._loaded: dict[str, ModalityFeatures] = {}

    @property
    def modalities(self) -> list[str]:
        return list(self._meta_mods)

    def __contains__(self, modality: str) -> bool:
        return modality in self._meta_mods

    def __getitem__(self, modality: str) -> ModalityFeatures:
        if modality not in self._meta_mods:
            raise KeyError(f"no modality {modality!r} in {self.root} (has {self.modalities})")
        if modality not in self._loaded:
            self._loaded[modality] = ModalityFeatures(self.root, modality, self._meta_mods[modality])
        return self._loaded[modality]

    def __repr__(self) -> str:
        return f"FeatureStore({str(self.root)!r}, modalities={self.modalities})"
