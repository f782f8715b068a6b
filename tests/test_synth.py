"""training.synth: the synthetic world (generation, ground truth, oracle, lists, binding, CLI)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from faa_core.metrics import matching_accuracy, verification_auc
from training.features import FeatureSource, FeatureStore
from training.synth import (
    LatentModel,
    build_world,
    get_preset,
    load_world,
    make_layout,
    oracle_scores,
    preset_names,
)
from training.synth.protocol import video_component

ROOT = Path(__file__).resolve().parents[1]
REAL_WEN = Path("/work/shared/data/protocols/wen2021")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return build_world("tiny", 0, tmp_path_factory.mktemp("tiny") / "w")


def _cos(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def _test_pairs(world):
    """Every test voice x every test face, with same-identity labels (stable AUC estimates)."""
    v, f = world.voice.select("test"), world.face.select("test")
    labels = world.voice.identities[v][:, None] == world.face.identities[f][None, :]
    return v, f, labels


# -- presets and shapes -------------------------------------------------------------------


def test_presets_resolve():
    assert {"tiny", "small", "real-dims"} <= set(preset_names())
    real = get_preset("real-dims")
    assert real.storage == "procedural" and real.identities == {"train": 924, "val": 112, "test": 189}
    assert (real.face.global_dim, real.face.token_dim, real.face.grid) == (512, 896, (8, 8))
    assert (real.voice.global_dim, real.voice.token_dim, real.voice.token_rate) == (192, 1024, 4.0)
    spec = get_preset("tiny", {"noise": {"item": 0.3}})
    assert spec.noise.item == 0.3 and spec.to_dict()["noise"]["global"] == get_preset("tiny").noise.global_
    with pytest.raises(ValueError, match="unknown key"):
        get_preset("tiny", {"face": {"colour": 3}})
    with pytest.raises(ValueError, match="unknown preset"):
        get_preset("huge")


def test_tiny_shapes(tiny):
    spec = tiny.spec
    assert tiny.storage == "stored" and isinstance(tiny.face, FeatureSource) and isinstance(tiny.voice, FeatureSource)
    assert (tiny.face.global_dim, tiny.face.token_dim, tiny.face.token_grid) == (32, 16, (4, 4))
    assert (tiny.voice.global_dim, tiny.voice.token_dim) == (24, 12)
    n_train = spec.identities["train"] * spec.videos_per_identity["train"]
    assert len(tiny.face) == len(tiny.voice) == (n_train + 16 * 3) * 2
    g = tiny.face.all_globals()
    np.testing.assert_allclose(np.linalg.norm(g, axis=1), 1.0, atol=2e-3)  # L2-normalised like real globals
    tok, mask = tiny.voice.tokens(np.arange(len(tiny.voice)))
    counts = mask.sum(1)
    assert counts.min() >= 3 and counts.max() <= 6 and len(set(counts.tolist())) > 1  # variable duration
    ftok, fmask = tiny.face.tokens([0, 1])
    assert ftok.shape == (2, 16, 16) and fmask.all()


@pytest.mark.parametrize("name", ["small", "real-dims"])
def test_preset_shapes_procedurally(name):
    """A few items of the bigger presets, generated alone (no whole world)."""
    spec = get_preset(name)
    model = LatentModel(spec, 0, make_layout(spec, 0))
    for modality, m in (("face", spec.face), ("voice", spec.voice)):
        G, toks = model.generate(modality, [0, 5, 17])
        assert G.shape == (3, m.global_dim) and G.dtype == np.float32
        np.testing.assert_allclose(np.linalg.norm(G, axis=1), 1.0, atol=1e-5)
        for t in toks:
            assert t.shape[1] == m.token_dim and np.isfinite(t).all()
            if modality == "face":
                assert t.shape[0] == spec.face.grid[0] * spec.face.grid[1]
            else:
                lo, hi = (round(d * spec.voice.token_rate) for d in spec.voice.duration)
                assert lo <= t.shape[0] <= hi
    n = sum(spec.identities.values())
    assert model.manifest.n_identities == n
    items = len(model.manifest.items["face"]) + len(model.manifest.items["voice"])
    if name == "small":
        assert 20_000 <= items <= 40_000


# -- determinism ----------------------------------------------------------------------------


def _files(root: Path, pattern: str) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.glob(pattern)) if p.is_file()}


def test_determinism(tiny, tmp_path):
    again = build_world("tiny", 0, tmp_path / "again", report=False)
    other = build_world("tiny", 1, tmp_path / "other", report=False)
    for pattern in ("features/*/*.npy", "features/*/items.csv", "manifest/*.csv", "protocol/*"):
        a, b = _files(tiny.root, pattern), _files(again.root, pattern)
        assert a and a == b, pattern
    for name in ("identities", "face_items", "voice_items", "videos", "maps"):
        ta, tb = tiny.truth._npz(name), again.truth._npz(name)
        assert ta.keys() == tb.keys() and all(np.array_equal(ta[k], tb[k]) for k in ta)
    assert not np.allclose(tiny.face.globals([0, 1, 2]), other.face.globals([0, 1, 2]))
    assert _files(tiny.root, "manifest/*.csv") != _files(other.root, "manifest/*.csv")
    assert _files(tiny.root, "protocol/verify_v2f_test.txt") != _files(other.root, "protocol/verify_v2f_test.txt")


def test_procedural_equals_stored(tiny, tmp_path):
    proc = build_world("tiny", 0, tmp_path / "proc", storage="procedural", report=False)
    assert proc.storage == "procedural" and not (proc.root / "features").exists()
    assert proc.face.ids.tolist() == tiny.face.ids.tolist()
    idx = np.array([0, 7, 100, 239])
    for m in ("face", "voice"):
        np.testing.assert_allclose(proc[m].globals(idx), tiny[m].globals(idx), atol=2e-3)
        tp, mp = proc[m].tokens(idx)
        ts, ms = tiny[m].tokens(idx)
        np.testing.assert_array_equal(mp, ms)
        np.testing.assert_allclose(tp, ts, rtol=2e-3, atol=2e-3)
    np.testing.assert_array_equal(proc.voice.token_counts(idx), tiny.voice.token_counts(idx))


# -- layout, lists ----------------------------------------------------------------------------


def test_splits_disjoint_by_identity(tiny):
    man = tiny.manifest
    by_split = {s: set(man.vox_ids[man.id_splits == s]) for s in ("train", "val", "test")}
    assert [len(by_split[s]) for s in ("train", "val", "test")] == [24, 8, 8]
    assert not (by_split["train"] & by_split["val"]) and not (by_split["train"] & by_split["test"])
    assert not (by_split["val"] & by_split["test"])
    for m in ("face", "voice"):
        src = tiny[m]
        for s, ids in by_split.items():
            assert set(src.identities[src.select(s)]) == ids
    # training videos link the modalities; evaluation faces are photos that share no video with a voice
    train_f, train_v = set(tiny.face.videos[tiny.face.select("train")]), set(tiny.voice.videos[tiny.voice.select("train")])
    assert train_f == train_v and len(train_f) == 24 * 3
    test_f, test_v = set(tiny.face.videos[tiny.face.select("test")]), set(tiny.voice.videos[tiny.voice.select("test")])
    assert not (test_f & test_v) and len(test_f) == (tiny.face.splits == "test").sum()
    assert all(i.count("/") == 2 and i.endswith(".wav") and i.startswith("id1") for i in tiny.voice.ids)
    assert all(i.count("/") == 1 for i in tiny.face.ids[tiny.face.select("test")])  # Name/00000042.jpg


def test_lists_parse_with_wen_reader(tiny):
    proto = tiny.read_protocol()
    assert set(proto.verification) == {
        "verify_v2f_test", "verify_f2v_test", "verify_g_v2f_test", "verify_g_f2v_test", "verify_v2f_val"
    }
    assert set(proto.matching) == {"match_v2f_2_test", "match_f2v_2_test", "match_g_v2f_2_test", "match_g_f2v_2_test"}
    assert set(proto.retrieval) == {"reterival_v2f_test", "reterival_f2v_test"}
    assert len(proto.identities) == 40
    test_v = set(tiny.voice.ids[tiny.voice.select("test")])
    test_f = set(tiny.face.ids[tiny.face.select("test")])
    neg = tiny.spec.lists.verify_negatives
    gender = {k: i.gender for k, i in proto.identities.items()}
    for name, lst in proto.verification.items():
        split = "val" if name.endswith("_val") else "test"
        assert set(tiny.voice.splits[tiny.voice.index(lst.voices)]) == {split}
        assert set(tiny.face.splits[tiny.face.index(lst.faces)]) == {split}
        assert lst.labels.mean() == pytest.approx(1 / (1 + neg))
        np.testing.assert_array_equal(lst.labels, tiny.same_identity(lst.voices, lst.faces))
        if "_g_" in name:
            vi = [proto.identity_of_voice(p) for p in lst.voices]
            fi = [proto.identity_of_face(p) for p in lst.faces]
            assert all(gender[a] == gender[b] for a, b in zip(vi, fi))
    for name, m in proto.matching.items():
        queries = test_v if m.direction == "v2f" else test_f
        assert set(m.queries.tolist()) == queries  # one triplet per test query item
    r = proto.retrieval["reterival_v2f_test"]
    assert set(r.voices.tolist()) == test_v and set(r.faces.tolist()) == test_f
    csv_head = (tiny.protocol_dir / "vox1_test.csv").read_text().splitlines()[0]
    assert csv_head == "VoxCeleb1_ID,VGGFace1_ID,Gender,Nationality,Set"


# -- ground truth ----------------------------------------------------------------------------


def test_nuisance_shared_within_video(tiny):
    f_idx = tiny.face.select("train")
    v_idx = tiny.voice.select("train")
    first_face = {}
    for k in f_idx.tolist():
        first_face.setdefault(tiny.face.videos[k], k)
    pair_f = np.array([first_face[v] for v in tiny.voice.videos[v_idx]])
    maps = tiny.truth.maps
    nf = tiny.face.globals(pair_f) @ maps["face_g_nuisance"]
    nv = tiny.voice.globals(v_idx) @ maps["voice_g_nuisance"]
    same = _cos(nf, nv).mean()
    shuffled = _cos(nf, nv[np.random.default_rng(0).permutation(len(nv))]).mean()
    assert same > 0.6 and abs(shuffled) < 0.2, (same, shuffled)
    # the truth file holds the per-video nuisance that produced it
    assert tiny.truth.videos["nuisance"].shape == (len(tiny.manifest.video_keys), tiny.spec.traits.nuisance)


def test_informative_region_and_voiced_truth(tiny):
    mask = tiny.truth.face_mask
    assert mask.shape == (4, 4) and mask.sum() == 4 and mask[1:3, 1:3].all()  # central 25%
    flat = mask.reshape(-1)
    idx = np.arange(len(tiny.face))
    tok, _ = tiny.face.tokens(idx)
    s_obs = tiny.truth.shared_observed("face")[idx]
    basis = tiny.truth.maps["face_t_shared"]

    def corr(a, b):
        return np.mean([np.corrcoef(a[:, j], b[:, j])[0, 1] for j in range(b.shape[1])])

    assert corr(tok[:, flat].mean(1) @ basis, s_obs) > 0.6
    assert abs(corr(tok[:, ~flat].mean(1) @ basis, s_obs)) < 0.2
    # voiced masks: one per utterance, as long as its tokens; only voiced tokens carry the traits
    vt = tiny.truth.items("voice")
    assert vt["token_offsets"][-1] == vt["voiced"].shape[0]
    counts = np.diff(vt["token_offsets"])
    np.testing.assert_array_equal(counts, tiny.voice.token_counts())
    assert 0.3 < vt["voiced"].mean() < 0.7
    vtok, vmask = tiny.voice.tokens(np.arange(len(tiny.voice)))
    voiced = np.zeros_like(vmask)
    for k in range(len(tiny.voice)):
        voiced[k, : counts[k]] = tiny.truth.voiced(k)
    vb = tiny.truth.maps["voice_t_shared"]
    vs = tiny.truth.shared_observed("voice")
    on = (vtok * voiced[..., None]).sum(1) / voiced.sum(1, keepdims=True)
    off_n = (vmask & ~voiced).sum(1, keepdims=True)
    has_off = off_n[:, 0] > 0
    off = (vtok * (vmask & ~voiced)[..., None]).sum(1)[has_off] / off_n[has_off]
    assert corr(on @ vb, vs) > 0.6 and abs(corr(off @ vb, vs[has_off])) < 0.2
    ident = tiny.truth.identities
    assert ident["shared"].shape == (40, tiny.spec.traits.shared_dim) and set(ident["gender"].tolist()) == {0, 1}
    assert (tiny.root / "truth" / "README.md").is_file()


def test_oracle_is_a_ceiling_below_one(tiny):
    proto = tiny.read_protocol()
    lst = proto.verification["verify_v2f_test"]
    auc = verification_auc(oracle_scores(tiny, lst.voices, lst.faces), lst.labels)
    assert 0.75 < auc < 0.995, auc
    v, f, labels = _test_pairs(tiny)
    mat = oracle_scores(tiny.root, tiny.voice.ids[v], tiny.face.ids[f], matrix=True)  # a folder works too
    assert mat.shape == labels.shape
    auc_all = verification_auc(mat, labels)
    assert 0.8 < auc_all < 0.98, auc_all
    np.testing.assert_allclose(mat[3, :5], oracle_scores(tiny, tiny.voice.ids[v[[3] * 5]], tiny.face.ids[f[:5]]), rtol=1e-4, atol=1e-4)
    m = proto.matching["match_v2f_2_test"]
    acc = matching_accuracy(oracle_scores(tiny, m.queries, m.positives), oracle_scores(tiny, m.queries, m.negatives))
    assert 0.7 < acc < 1.0
    report = tiny.truth.oracle
    assert report["verify_v2f_test"]["auc"] == pytest.approx(auc)
    assert 0 < report["reterival_v2f_test"]["map_v2f"] < 1


def test_raw_cosine_is_at_chance(tiny):
    v, f, labels = _test_pairs(tiny)
    gv, gf = tiny.voice.globals(v), tiny.face.globals(f)
    d = min(gv.shape[1], gf.shape[1])  # the modalities do not even share a dimension
    cos = (gv[:, :d] @ gf[:, :d].T) / np.outer(np.linalg.norm(gv[:, :d], axis=1), np.linalg.norm(gf[:, :d], axis=1))
    assert abs(verification_auc(cos, labels) - 0.5) < 0.1


# -- binding to protocol folders ----------------------------------------------------------


def _wen_folder(root: Path) -> Path:
    """A tiny hand-made Wen 2021 folder: 2 train, 2 val (+1 'none'), 3 test identities."""
    root.mkdir()
    head = "VoxCeleb1_ID,VGGFace1_ID,Gender,Nationality,Set\n"
    (root / "vox1_train.csv").write_text(head + "id10001,Ann_A,f,UK,dev\nid10002,Bob_B,m,USA,dev\n")
    (root / "vox1_val.csv").write_text(head + "id10003,Cat_C,f,UK,dev\nid10004,Dan_D,m,USA,dev\nid10005,Eve_E,f,USA,none\n")
    (root / "vox1_test.csv").write_text(
        head + "id10006,Fay_F,f,India,dev\nid10007,Gus_G,m,Ireland,test\nid10008,Hal_H,m,USA,dev\n"
    )
    (root / "verify_v2f_test.txt").write_text(
        "id10006/aaaaaaaaaaa/00001.wav Fay_F/00000011.jpg\n"
        "id10006/aaaaaaaaaaa/00002.wav Gus_G/00000003.jpg\n"
        "id10007/bbbbbbbbbbb/00001.wav Gus_G/00000004.jpg\n"
        "id10008/ccccccccccc/00005.wav Fay_F/00000011.jpg\n"
    )
    (root / "match_v2f_2_val.txt").write_text(
        "id10003/ddddddddddd/00001.wav Cat_C/00000001.jpg Dan_D/00000002.jpg\n"
        "id10004/eeeeeeeeeee/00003.wav Dan_D/00000002.jpg Cat_C/00000005.jpg\n"
    )
    (root / "reterival_v2f_test.txt").write_text(
        "id10006/aaaaaaaaaaa/00001.wav id10007/bbbbbbbbbbb/00001.wav id10008/fffffffffff/00001.wav\n"
        "Fay_F/00000011.jpg Gus_G/00000004.jpg Hal_H/00000009.jpg\n"
    )
    return root


def test_bind_to_handmade_wen_protocol(tmp_path):
    folder = _wen_folder(tmp_path / "wen")
    world = build_world("tiny", 0, tmp_path / "bound", protocol="wen2021", protocol_dir=folder, storage="procedural")
    man = world.manifest
    assert man.vox_ids.tolist() == [f"id1000{k}" for k in (1, 2, 3, 4, 6, 7, 8)]  # the 'none' row is skipped
    assert man.names.tolist()[4:] == ["Fay_F", "Gus_G", "Hal_H"] and man.genders.tolist() == list("fmfmfmm")
    assert man.id_splits.tolist() == ["train"] * 2 + ["val"] * 2 + ["test"] * 3
    named_v = {"id10006/aaaaaaaaaaa/00001.wav", "id10006/aaaaaaaaaaa/00002.wav", "id10007/bbbbbbbbbbb/00001.wav",
               "id10008/ccccccccccc/00005.wav", "id10003/ddddddddddd/00001.wav", "id10004/eeeeeeeeeee/00003.wav",
               "id10008/fffffffffff/00001.wav"}
    named_f = {"Fay_F/00000011.jpg", "Gus_G/00000003.jpg", "Gus_G/00000004.jpg", "Cat_C/00000001.jpg",
               "Dan_D/00000002.jpg", "Cat_C/00000005.jpg", "Hal_H/00000009.jpg"}
    eval_v = world.voice.ids[world.voice.splits != "train"]
    eval_f = world.face.ids[world.face.splits != "train"]
    assert set(eval_v.tolist()) == named_v and set(eval_f.tolist()) == named_f  # exactly the listed items
    k = world.voice.index(["id10006/aaaaaaaaaaa/00001.wav", "id10006/aaaaaaaaaaa/00002.wav"])
    assert world.voice.videos[k].tolist() == ["id10006/aaaaaaaaaaa"] * 2  # grouped by the path's video
    assert world.face.videos[world.face.index(["Cat_C/00000001.jpg"])].tolist() == ["Cat_C/00000001"]  # own video
    assert world.voice.splits[world.voice.index(["id10003/ddddddddddd/00001.wav"])][0] == "val"
    train = world.voice.select("train")
    assert set(world.voice.identities[train]) == {"id10001", "id10002"}
    assert len(train) == 2 * world.spec.videos_per_identity["train"] * world.spec.utterances_per_video
    assert (world.protocol_dir / "verify_v2f_test.txt").read_bytes() == (folder / "verify_v2f_test.txt").read_bytes()
    proto = world.read_protocol()
    lst = proto.verification["verify_v2f_test"]
    assert oracle_scores(world, lst.voices, lst.faces).shape == (4,)
    assert set(world.truth.oracle) >= {"verify_v2f_test", "match_v2f_2_val", "reterival_v2f_test"}
    assert world.face.globals(world.face.index(["Hal_H/00000009.jpg"])).shape == (1, 32)


def test_bind_to_handmade_nagrani_protocol(tmp_path):
    root = tmp_path / "nag"
    (root / "veriflist").mkdir(parents=True)
    (root / "matching").mkdir()
    (root / "vox1_meta.csv").write_text(
        "VoxCeleb1 ID\tVGGFace1 ID\tGender\tNationality\tSet\n"
        "id10001\tAnn_A\tf\tUK\tdev\nid10002\tBob_B\tm\tUSA\tdev\nid10003\tCat_C\tf\tUK\tdev\nid10004\tDan_D\tm\tUK\ttest\n"
    )
    (root / "identity_splits.txt").write_text("Ann_A 1\nBob_B 2\nCat_C 4\nDan_D 4\n")
    (root / "veriflist" / "veriflist_test_random_unseenunheard.txt").write_text(
        "id,voice-speaker-id,face-speaker-id,label,voice-path,face-path\n"
        "1,3,3,1,Cat_C/xyzxyzxyz01_0000001.wav,Cat_C/xyzxyzxyz01/0000375.jpg\n"
        "2,3,4,0,Cat_C/xyzxyzxyz01_0000002.wav,Dan_D/qqqqqqqqqqq/0000100.jpg\n"
        "3,1,1,1,Ann_A/seenseen001_0000001.wav,Ann_A/seenseen001/0000050.jpg\n"
    )
    (root / "matching" / "matching_v2f_U.csv").write_text(
        "id10003/xyzxyzxyz01/00001.wav Cat_C/1.6/xyzxyzxyz01/0000400.jpg Dan_D/1.6/qqqqqqqqqqq/0000125.jpg\n"
    )
    world = build_world("tiny", 0, tmp_path / "w", protocol="nagrani2018", protocol_dir=root, storage="procedural")
    assert world.manifest.id_splits.tolist() == ["train", "val", "test", "test"]
    keys = world.voice.videos[world.voice.index(["Cat_C/xyzxyzxyz01_0000001.wav", "id10003/xyzxyzxyz01/00001.wav"])]
    fkeys = world.face.videos[world.face.index(["Cat_C/xyzxyzxyz01/0000375.jpg", "Cat_C/1.6/xyzxyzxyz01/0000400.jpg"])]
    assert set(keys.tolist()) == set(fkeys.tolist()) == {"id10003/xyzxyzxyz01"}  # one video, four spellings
    seen = world.voice.index(["Ann_A/seenseen001_0000001.wav"])
    assert world.voice.splits[seen][0] == "test"  # a seen-heard test item of a training identity
    assert len(world.voice.select("val")) > 0  # unlisted val identity gets generated items
    assert "veriflist_test_random_unseenunheard" in world.truth.oracle
    assert video_component("Name/00000657.jpg", "face") is None


@pytest.mark.skipif(not REAL_WEN.is_dir(), reason="real Wen 2021 protocol files not available")
def test_bind_to_real_wen_protocol(tmp_path):
    world = build_world("tiny", 0, tmp_path / "real", protocol="wen2021", protocol_dir=REAL_WEN,
                        storage="procedural", report=False)
    counts = {s: int((world.manifest.id_splits == s).sum()) for s in ("train", "val", "test")}
    assert counts == {"train": 924, "val": 112, "test": 189}
    proto = world.read_protocol()
    lst = proto.verification["verify_v2f_test"]
    world.voice.index(lst.voices), world.face.index(lst.faces)  # every listed item exists
    r = proto.retrieval["reterival_v2f_test"]
    assert (world.voice.splits != "train").sum() == len(set(r.voices.tolist()) | {
        p for m in proto.matching.values() for p in m.queries.tolist()} | {
        p for v in proto.verification.values() for p in v.voices.tolist()})
    s = oracle_scores(world, lst.voices[:5000], lst.faces[:5000])
    assert 0.75 < verification_auc(s, lst.labels[:5000]) < 0.97


# -- CLI -----------------------------------------------------------------------------------


def test_cli_tiny(tmp_path):
    out = tmp_path / "cli"
    cmd = [sys.executable, "-m", "training.synth", "--preset", "tiny", "--seed", "3", "--out", str(out), "--json"]
    res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    summary = json.loads(res.stdout)
    assert summary["items"] == {"face": 240, "voice": 240} and summary["disk_bytes"] > 0
    assert 0.5 < summary["oracle"]["verify_v2f_test"]["auc"] < 1.0
    world = load_world(out)
    assert world.seed == 3 and len(FeatureStore(out / "features")["voice"]) == 240
    res2 = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert res2.returncode == 2 and "already holds" in res2.stderr  # never overwritten by accident
    res3 = subprocess.run(cmd[:-1] + ["--overwrite", "--no-report"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert res3.returncode == 0, res3.stderr


# -- variants, suite, probe -------------------------------------------------------------------


def test_world_names_combine_variants():
    from training.synth import suite_names, variant_names
    from training.synth.presets import WorldSpec

    spec = get_preset("tiny+nonlinear", variants=["bursty"])
    assert spec.name == "tiny+nonlinear+bursty"
    assert (spec.maps.kind, spec.maps.gain, spec.voice.burst) == ("mlp", 1.5, 4.0)
    assert get_preset("tiny+linear").to_dict() | {"name": "tiny"} == get_preset("tiny").to_dict()
    ref = get_preset("tiny")
    assert (ref.maps.kind, ref.face.regions, ref.voice.burst, ref.traits.gender_correlation) == ("linear", 1, 0.0, 0.0)
    with pytest.raises(ValueError, match="unknown variant 'wobbly'"):
        get_preset("tiny+wobbly")
    with pytest.raises(ValueError, match="named twice"):
        get_preset("tiny+bursty", variants=["bursty"])
    with pytest.raises(ValueError, match="empty part"):
        get_preset("tiny++bursty")
    with pytest.raises(ValueError, match="face.regions"):
        get_preset("tiny", {"face": {"regions": 17}})
    assert {"nonlinear", "gender_dominant", "scattered_regions", "bursty", "nuisance_weak", "nuisance_strong",
            "few_strong", "many_weak", "private_heavy"} <= set(variant_names())
    suite = suite_names()
    assert len(suite) >= 4 and all(n.startswith("small+") for n in suite)
    used = {v for n in suite for v in n.split("+")[1:]}
    assert used == set(variant_names()) - {"linear"}  # the suite varies every aspect
    for n in suite:
        get_preset(n)
    # a world.json written before the variants existed still loads, as the reference world
    old = ref.to_dict()
    for group, key in (("face", "regions"), ("voice", "burst"), ("traits", "gender_correlation")):
        del old[group][key]
    del old["maps"]
    assert WorldSpec.from_dict(old) == ref


def test_variant_worlds_keep_their_truth(tmp_path):
    """Scattered regions, bursty voicing and gender-correlated traits show in the truth they write."""
    ref = build_world("tiny", 0, tmp_path / "ref", report=False)
    w = build_world("tiny+scattered_regions+bursty", 0, tmp_path / "var", report=False)
    regions = np.load(w.root / "truth" / "face_regions.npy")
    traits = np.load(w.root / "truth" / "face_region_traits.npy")
    mask = w.truth.face_mask
    assert regions.tolist() == [[-1] * 4, [-1] * 4, [-1, 1, -1, 0], [-1] * 4]
    np.testing.assert_array_equal(mask, regions >= 0)
    ys, xs = np.nonzero(mask)
    assert max(abs(ys[0] - ys[1]), abs(xs[0] - xs[1])) >= 2  # the regions do not touch
    assert traits.tolist() == [[True, False, True, False, True], [False, True, False, True, False]]
    # face tokens: a region carries only its own traits
    idx = np.arange(len(w.face))
    tok, _ = w.face.tokens(idx)
    s_obs = w.truth.shared_observed("face")
    flat = regions.reshape(-1)
    basis = w.truth.maps["face_t_shared"]  # (C, d_s) the traits' directions in token space
    for r in (0, 1):
        proj = tok[:, flat == r].mean(1) @ basis
        corr = np.array([np.corrcoef(proj[:, j], s_obs[:, j])[0, 1] for j in range(s_obs.shape[1])])
        assert corr[traits[r]].min() > 0.6 and np.abs(corr[~traits[r]]).max() < 0.2, (r, corr)

    def mean_run(world):
        it = world.truth.items("voice")
        runs = []
        for k in range(len(world.voice)):
            v = np.r_[0, it["voiced"][it["token_offsets"][k] : it["token_offsets"][k + 1]].astype(int), 0]
            edges = np.flatnonzero(np.diff(v))
            runs += (edges[1::2] - edges[::2]).tolist()
        return float(np.mean(runs))

    assert mean_run(ref) == pytest.approx(1.6101, abs=1e-4) and mean_run(w) == pytest.approx(2.0842, abs=1e-4)
    spec = get_preset("tiny+gender_dominant+nonlinear")
    model = LatentModel(spec, 0, make_layout(spec, 0))
    truth = model.identity_truth()
    g = 2.0 * truth["gender"] - 1
    corr = [np.corrcoef(g, truth["continuous"][:, j])[0, 1] for j in range(3)]
    assert np.round(corr, 3).tolist() == [0.602, -0.703, 0.634]
    g0 = 2.0 * ref.truth.identities["gender"] - 1
    assert max(abs(np.corrcoef(g0, ref.truth.identities["continuous"][:, j])[0, 1]) for j in range(3)) < 0.3
    assert "face_g_mlp_a" in model.maps["face"].arrays("face") and "face_g_mlp_a" not in ref.truth.maps


def test_mixture_oracle_equals_independent_without_correlation():
    from training.synth.oracle import oracle_llr

    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(30, 5)) * 1.2, rng.normal(size=(20, 5)) * 1.2
    models = [LatentModel(s, 0, make_layout(s, 0)) for s in (get_preset("tiny"), get_preset("tiny", {"traits": {"gender_correlation": 1e-9}}))]
    indep, mix = (m.shared_prior() for m in models)
    assert mix[0] == "mixture" and indep[0][0] == "discrete"
    np.testing.assert_allclose(oracle_llr(x, y, mix, 0.55, matrix=True), oracle_llr(x, y, indep, 0.55, matrix=True), atol=1e-5)
    # the matrix and the pairwise forms agree under a real mixture too
    corr = LatentModel(get_preset("tiny+gender_dominant"), 0, make_layout(get_preset("tiny"), 0)).shared_prior()
    m = oracle_llr(x, y, corr, 0.55, matrix=True)
    np.testing.assert_allclose(m[4, :6], oracle_llr(x[[4] * 6], y[:6], corr, 0.55), atol=1e-5)


def test_probe_is_below_the_oracle_and_far_above_chance(tiny):
    from training.synth import probe_scores

    v, f, labels = _test_pairs(tiny)
    vi, fi = tiny.voice.ids[v], tiny.face.ids[f]
    oracle = verification_auc(oracle_scores(tiny, vi, fi, matrix=True), labels)
    glob = verification_auc(probe_scores(tiny, vi, fi, matrix=True, source="global"), labels)
    toks = verification_auc(probe_scores(tiny, vi, fi, matrix=True, source="tokens"), labels)
    assert (round(oracle, 4), round(glob, 4), round(toks, 4)) == (0.9444, 0.655, 0.7493)
    assert 0.6 < glob < toks < oracle  # averaging informative tokens beats the noisier global
    pairs = probe_scores(tiny, vi[[2] * 4], fi[:4], source="tokens")
    np.testing.assert_allclose(pairs, probe_scores(tiny, vi, fi, matrix=True, source="tokens")[2, :4], atol=1e-5)
    report = tiny.truth.oracle["verify_v2f_test"]
    assert set(report) >= {"auc", "probe_global", "probe_tokens"} and report["probe_tokens"]["auc"] < report["auc"]
    with pytest.raises(ValueError, match="probe source"):
        probe_scores(tiny, vi[:2], fi[:2], source="pixels")


def test_cli_variants(tmp_path):
    out = tmp_path / "v"
    cmd = [sys.executable, "-m", "training.synth", "--preset", "tiny+bursty", "--variant", "nonlinear", "--seed", "0",
           "--out", str(out), "--no-report", "--json"]
    res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["preset"] == "tiny+bursty+nonlinear"
    assert load_world(out).spec.maps.kind == "mlp"
    bad = subprocess.run(cmd[:5] + ["--variant", "wobbly", "--out", str(tmp_path / "b")], cwd=ROOT, capture_output=True,
                         text=True, timeout=120)
    assert bad.returncode == 2 and bad.stderr.startswith("error: unknown variant 'wobbly'") and "Traceback" not in bad.stderr
    lst = subprocess.run([sys.executable, "-m", "training.synth", "--list"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert lst.returncode == 0 and "suite: small+" in lst.stdout
