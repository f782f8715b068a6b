"""training.features: the on-disk feature store (write, shard, read lazily, validate)."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from training.features import FeatureSource, FeatureStore, FeatureStoreWriter, ModalityFeatures, pad_tokens

GRID = (2, 2)
DIMS = {"face": (8, 5), "voice": (6, 4)}


def _data(n: int = 10, seed: int = 0) -> dict:
    """Random items: faces with a 2x2 token grid, voices with 1..6 tokens each."""
    rng = np.random.default_rng(seed)
    face_g = rng.standard_normal((n, 8)).astype(np.float32)
    voice_g = rng.standard_normal((n, 6)).astype(np.float32)
    face_t = [rng.standard_normal((4, 5)).astype(np.float32) for _ in range(n)]
    voice_t = [rng.standard_normal((int(rng.integers(1, 7)), 4)).astype(np.float32) for _ in range(n)]
    return {
        "face": dict(
            ids=[f"Name_{i // 3}/{i:08d}.jpg" for i in range(n)],
            videos=[f"Name_{i // 3}/{i:08d}" for i in range(n)],
            identities=[f"id{10001 + i // 3}" if i % 5 else "" for i in range(n)],
            splits=["train" if i < n // 2 else "test" for i in range(n)],
            globals=face_g,
            tokens=face_t,
        ),
        "voice": dict(
            ids=[f"id{10001 + i // 3}/vid{i // 2}/{i:05d}.wav" for i in range(n)],
            videos=[f"id{10001 + i // 3}/vid{i // 2}" for i in range(n)],
            identities=[f"id{10001 + i // 3}" for i in range(n)],
            splits=["train" if i < n // 2 else "val" for i in range(n)],
            globals=voice_g,
            tokens=voice_t,
        ),
    }


def _write(root, data: dict, shard_size: int = 3) -> None:
    with FeatureStoreWriter(root, DIMS, shard_size=shard_size, token_grid=GRID, source={"test": True}) as w:
        for m, d in data.items():
            w.add_batch(m, d["ids"], d["videos"], d["identities"], d["splits"], d["globals"], d["tokens"])


@pytest.fixture()
def store_dir(tmp_path):
    data = _data()
    _write(tmp_path / "store", data)
    return tmp_path / "store", data


def test_round_trip(store_dir):
    root, data = store_dir
    store = FeatureStore(root)
    assert store.modalities == ["face", "voice"] and store.source == {"test": True}
    for m, d in data.items():
        src = store[m]
        assert isinstance(src, FeatureSource) and isinstance(src, ModalityFeatures)
        assert len(src) == 10 and src.global_dim == DIMS[m][0] and src.token_dim == DIMS[m][1] and src.has_tokens
        assert src.ids.tolist() == d["ids"] and src.videos.tolist() == d["videos"]
        assert src.identities.tolist() == d["identities"] and src.splits.tolist() == d["splits"]
        idx = np.array([7, 0, 3, 3, 9, 2])  # any order, repeats, across shards
        got = src.globals(idx)
        assert got.dtype == np.float32 and got.shape == (6, DIMS[m][0])
        np.testing.assert_allclose(got, d["globals"][idx], rtol=1e-3, atol=1e-3)
        np.testing.assert_allclose(src.all_globals(), d["globals"], rtol=1e-3, atol=1e-3)
    assert store["face"].token_grid == GRID and store["voice"].token_grid is None
    assert store["face"].select("test").tolist() == [5, 6, 7, 8, 9]
    assert store["voice"].select("val").tolist() == [5, 6, 7, 8, 9]
    assert store["face"].identities[0] == ""  # unknown identity survives


def test_tokens_padding_and_mask(store_dir):
    root, data = store_dir
    voice = FeatureStore(root)["voice"]
    idx = np.array([9, 1, 4, 0])
    lengths = np.array([len(data["voice"]["tokens"][i]) for i in idx])
    tok, mask = voice.tokens(idx)
    assert tok.dtype == np.float32 and mask.dtype == bool
    assert tok.shape == (4, lengths.max(), 4) and mask.shape == (4, lengths.max())
    assert mask.sum(1).tolist() == lengths.tolist()
    for row, i in enumerate(idx):
        n = lengths[row]
        np.testing.assert_allclose(tok[row, :n], data["voice"]["tokens"][i], rtol=1e-3, atol=1e-3)
        assert not tok[row, n:].any()  # padding is zeros
    np.testing.assert_array_equal(voice.token_counts(idx), lengths)
    tok2, mask2 = voice.tokens(idx, max_tokens=2)  # keeps the first tokens
    assert tok2.shape[1] == min(2, lengths.max()) and (mask2.sum(1) == np.minimum(lengths, 2)).all()
    np.testing.assert_array_equal(tok2, tok[:, : tok2.shape[1]] * mask2[..., None])
    face_tok, face_mask = FeatureStore(root)["face"].tokens([3])
    assert face_tok.shape == (1, 4, 5) and face_mask.all()
    with pytest.raises(ValueError, match="max_tokens"):
        voice.tokens(idx, max_tokens=0)


def test_sharding_boundaries(tmp_path):
    data = _data(10)
    _write(tmp_path / "s", data, shard_size=4)
    meta = json.loads((tmp_path / "s" / "store.json").read_text())
    assert meta["format"] == "faa-features" and meta["version"] == 1
    face = meta["modalities"]["face"]
    assert [s["count"] for s in face["shards"]] == [4, 4, 2] and face["count"] == 10
    assert face["token_grid"] == [2, 2] and "token_grid" not in meta["modalities"]["voice"]
    files = sorted(p.name for p in (tmp_path / "s" / "face").iterdir())
    assert files == sorted(
        ["items.csv"] + [f"shard-0000{k}.{kind}.npy" for k in range(3) for kind in ("global", "tokens", "offsets")]
    )
    off = np.load(tmp_path / "s" / "voice" / "shard-00001.offsets.npy")
    assert off.dtype == np.int64 and off.shape == (5,) and off[0] == 0
    assert np.load(tmp_path / "s" / "voice" / "shard-00001.global.npy").dtype == np.float16
    store = FeatureStore(tmp_path / "s")
    idx = np.array([3, 4, 7, 8, 9, 0])  # last/first rows of neighbouring shards
    np.testing.assert_allclose(store["voice"].globals(idx), data["voice"]["globals"][idx], rtol=1e-3, atol=1e-3)
    tok, mask = store["voice"].tokens(idx)
    for row, i in enumerate(idx):
        n = len(data["voice"]["tokens"][i])
        np.testing.assert_allclose(tok[row, :n], data["voice"]["tokens"][i], rtol=1e-3, atol=1e-3)
    # an exact multiple of the shard size leaves no empty shard
    _write(tmp_path / "e", _data(8), shard_size=4)
    assert [s["count"] for s in json.loads((tmp_path / "e" / "store.json").read_text())["modalities"]["face"]["shards"]] == [4, 4]


def test_index_lookup(store_dir):
    root, data = store_dir
    voice = FeatureStore(root)["voice"]
    ids = [data["voice"]["ids"][i] for i in (4, 0, 9)]
    assert voice.index(ids).tolist() == [4, 0, 9]
    assert voice.index(ids[0]).tolist() == [4]
    with pytest.raises(KeyError, match="nope/x.wav"):
        voice.index([ids[0], "nope/x.wav"])
    with pytest.raises(IndexError):
        voice.globals([10])
    with pytest.raises(KeyError, match="no modality"):
        FeatureStore(root)["audio"]


def test_validation_errors(tmp_path):
    w = FeatureStoreWriter(tmp_path / "v", DIMS, token_grid=GRID)
    g8, t4 = np.zeros(8), np.zeros((4, 5))
    with pytest.raises(ValueError, match="a/1.jpg.*shape"):
        w.add("face", "a/1.jpg", "v", "i", "train", np.zeros(7), t4)
    bad = np.zeros(8)
    bad[3] = np.nan
    with pytest.raises(ValueError, match="a/2.jpg.*NaN"):
        w.add("face", "a/2.jpg", "v", "i", "train", bad, t4)
    with pytest.raises(ValueError, match="a/3.jpg.*float16"):
        w.add("face", "a/3.jpg", "v", "i", "train", np.full(8, 1e6), t4)
    with pytest.raises(ValueError, match="a/4.jpg.*tokens"):
        w.add("face", "a/4.jpg", "v", "i", "train", g8, np.zeros((4, 3)))
    with pytest.raises(ValueError, match="a/5.jpg.*2x2"):
        w.add("face", "a/5.jpg", "v", "i", "train", g8, np.zeros((3, 5)))
    with pytest.raises(ValueError, match="a/6.jpg.*missing"):
        w.add("face", "a/6.jpg", "v", "i", "train", g8)
    t_nan = np.zeros((2, 4))
    t_nan[1, 1] = np.inf
    with pytest.raises(ValueError, match="b/1.wav.*NaN"):
        w.add("voice", "b/1.wav", "v", "i", "train", np.zeros(6), t_nan)
    with pytest.raises(ValueError, match="unknown modality"):
        w.add("audio", "x", "v", "i", "train", g8)
    w.add("face", "a/ok.jpg", "v", "i", "train", g8, t4)
    with pytest.raises(ValueError, match="duplicate.*a/ok.jpg"):
        w.add("face", "a/ok.jpg", "v", "i", "train", g8, t4)
    with pytest.raises(ValueError, match="differ in length"):
        w.add_batch("voice", ["x"], [], ["i"], ["train"], np.zeros((1, 6)))
    w.close()
    assert len(FeatureStore(tmp_path / "v")["face"]) == 1  # rejected items left no trace
    g_only = FeatureStoreWriter(tmp_path / "g", {"voice": (6, 0)})
    with pytest.raises(ValueError, match="c.wav.*token_dim 0"):
        g_only.add("voice", "c.wav", "v", "i", "train", np.zeros(6), np.zeros((2, 4)))
    with pytest.raises(ValueError):
        FeatureStoreWriter(tmp_path / "bad", {"face": (0, 4)})
    with pytest.raises(ValueError, match="not in dims"):
        FeatureStoreWriter(tmp_path / "bad2", {"voice": (6, 4)}, token_grid={"face": (2, 2)})


def test_atomic_store_json(tmp_path, monkeypatch):
    root = tmp_path / "a"
    w = FeatureStoreWriter(root, {"voice": (6, 0)}, shard_size=2)
    for i in range(5):
        w.add("voice", f"id1/v/{i}.wav", "id1/v", "id1", "train", np.ones(6))
    assert not (root / "store.json").exists()  # shards are on disk, the store is not complete yet
    with pytest.raises(FileNotFoundError, match="store.json"):
        FeatureStore(root)
    replaced: list[str] = []
    real_replace = os.replace
    monkeypatch.setattr(os, "replace", lambda a, b: (replaced.append(os.path.basename(b)), real_replace(a, b))[1])
    w.close()
    assert replaced[-1] == "store.json" and "items.csv" in replaced  # store.json goes last, via rename
    assert not [p for p in root.rglob("*.tmp")]
    assert len(FeatureStore(root)["voice"]) == 5
    # an error inside the with-block leaves no store.json
    with pytest.raises(RuntimeError):
        with FeatureStoreWriter(tmp_path / "b", {"voice": (6, 0)}) as w2:
            w2.add("voice", "x.wav", "v", "i", "train", np.ones(6))
            raise RuntimeError("extraction crashed")
    assert not (tmp_path / "b" / "store.json").exists()
    # an existing store is never replaced by accident; overwrite removes stale shards
    with pytest.raises(FileExistsError):
        FeatureStoreWriter(root, {"voice": (6, 0)})
    with FeatureStoreWriter(root, {"voice": (6, 0)}, overwrite=True) as w3:
        w3.add("voice", "only.wav", "v", "i", "train", np.ones(6))
    assert sorted(p.name for p in (root / "voice").glob("shard-*")) == ["shard-00000.global.npy"]
    assert FeatureStore(root)["voice"].ids.tolist() == ["only.wav"]


def test_reads_through_memory_maps(store_dir, monkeypatch):
    root, data = store_dir
    calls: list[tuple[str, object]] = []
    real_load = np.load

    def spy(path, *args, **kwargs):
        calls.append((os.path.basename(str(path)), kwargs.get("mmap_mode")))
        return real_load(path, *args, **kwargs)

    monkeypatch.setattr(np, "load", spy)
    voice = FeatureStore(root)["voice"]
    voice.globals([0, 9])
    tok, mask = voice.tokens([1, 8])
    assert calls and all(mode == "r" for _, mode in calls), calls
    assert {name for name, _ in calls} == {
        "shard-00000.global.npy", "shard-00003.global.npy",
        "shard-00000.tokens.npy", "shard-00000.offsets.npy", "shard-00002.tokens.npy", "shard-00002.offsets.npy",
    }  # only the shards holding the requested items are touched
    assert isinstance(voice._tokens_mm[0], np.memmap)
    n = len(data["voice"]["tokens"][8])
    np.testing.assert_allclose(tok[1, :n], data["voice"]["tokens"][8], rtol=1e-3, atol=1e-3)


def test_empty_and_global_only(tmp_path):
    with FeatureStoreWriter(tmp_path / "z", {"face": (4, 0), "voice": (3, 2)}) as w:
        w.add("face", "f.jpg", "f", "", "train", np.ones(4))
    store = FeatureStore(tmp_path / "z")
    assert not store["face"].has_tokens and store["face"].token_dim == 0
    with pytest.raises(ValueError, match="no tokens"):
        store["face"].tokens([0])
    assert len(store["voice"]) == 0 and store["voice"].all_globals().shape == (0, 3)
    tok, mask = store["voice"].tokens([])
    assert tok.shape == (0, 0, 2) and mask.shape == (0, 0)


def test_pad_tokens():
    tok, mask = pad_tokens([np.ones((2, 3)), np.ones((5, 3))], 3, max_tokens=4)
    assert tok.shape == (2, 4, 3) and mask.sum(1).tolist() == [2, 4]


def test_merge_parts_equals_one_writer_and_can_be_rerun(tmp_path):
    """extract's finalisation and FeatureStoreWriter.close write store.json/items.csv through one function."""
    from training.features import merge_parts

    rng = np.random.default_rng(0)
    items = [(f"f{i}", f"v{i // 2}", f"p{i % 3}", "train" if i < 5 else "test") for i in range(7)]
    g = rng.normal(size=(7, 4)).astype(np.float32)
    t = [rng.normal(size=(2 + i % 3, 3)).astype(np.float32) for i in range(7)]
    with FeatureStoreWriter(tmp_path / "one", {"voice": (4, 3)}, shard_size=100, source={"s": 1}) as w:
        for k, it in enumerate(items):
            w.add("voice", *it, g[k], t[k])
    parts = []
    for p, (lo, hi) in enumerate(((0, 3), (3, 7))):
        with FeatureStoreWriter(tmp_path / f"part{p}", {"voice": (4, 3)}, shard_size=2) as w:
            for k in range(lo, hi):
                w.add("voice", *items[k], g[k], t[k])
        parts.append(tmp_path / f"part{p}")
    for _ in range(2):  # a rerun after an interruption gives the same store
        merge_parts(tmp_path / "merged", {"voice": parts}, {"voice": (4, 3)}, source={"s": 1})
    one, merged = FeatureStore(tmp_path / "one"), FeatureStore(tmp_path / "merged")
    assert (tmp_path / "merged" / "voice" / "items.csv").read_text() == (tmp_path / "one" / "voice" / "items.csv").read_text()
    assert merged.source == {"s": 1} and merged.meta["format"] == one.meta["format"]
    assert [s["name"] for s in merged.meta["modalities"]["voice"]["shards"]] == [
        "shard-00000", "shard-00000-1", "shard-00001", "shard-00001-1"]
    np.testing.assert_array_equal(merged["voice"].all_globals(), one["voice"].all_globals())
    for a, b in zip(merged["voice"].tokens(np.arange(7)), one["voice"].tokens(np.arange(7))):
        np.testing.assert_array_equal(a, b)
    assert (tmp_path / "merged" / "voice" / "shard-00001.tokens.npy").stat().st_nlink == 2  # linked, not copied
    with pytest.raises(ValueError, match=r"has dims \(4, 3\).*expected \(4, 0\)"):
        merge_parts(tmp_path / "bad", {"voice": parts}, {"voice": (4, 0)})
