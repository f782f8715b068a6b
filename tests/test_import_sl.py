"""Importing Self-Lifting's released pickles: store, identities, Wen-format lists, then train and evaluate.

The release is faked with SL's own structures (as its ``utils/eva_emb_full.py``
reads them): 12 people x 3 videos, random 512-d faces and 192-d voices that
share a per-person signal.
"""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import numpy as np
import pytest

from faa_core.protocols import read_wen2021
from training.features import FeatureStore
from training.loop.data import open_features
from training.ingest.import_sl import (
    SLFormatError,
    import_sl,
    main,
    make_kind,
    read_matching,
    read_retrieval,
    read_verification,
)

N_IDS, VIDEOS, WAVS, JPGS = 12, 3, 2, 3
TRAIN, VAL = range(0, 6), range(6, 9)  # the rest is test
FAST = [
    "schedule.steps_per_round=8", "optim.batch_size=32", "validation.trials=120",
    "model.d_model=32", "model.n_heads=2", "model.n_layers=1", "model.proj_hidden=32", "model.embed_dim=16",
]


def _dump(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(obj, protocol=4))


def make_release(root: Path, seed: int = 0) -> dict:
    """A fake SL release folder (``dataset/voxceleb`` layout); returns its ground truth."""
    rng = np.random.default_rng(seed)
    shared = rng.normal(size=(N_IDS, 8))
    to_face, to_voice = rng.normal(size=(8, 512)), rng.normal(size=(8, 192))
    face_in, voice_in, m2jpg, m2wav, train_movies = {}, {}, {}, {}, []
    vids = [f"id{10001 + i}" for i in range(N_IDS)]
    names = [f"Person_{chr(65 + i)}.{i}" for i in range(N_IDS)]
    wavs_of, jpgs_of = {}, {}
    for i, (vid, name) in enumerate(zip(vids, names)):
        wavs_of[i], jpgs_of[i] = [], []
        for k in range(VIDEOS):
            yt = f"yt{i:02d}x{k}Abc-_"
            movie = f"{name}/{yt}"
            nuisance = rng.normal(size=8) * 0.3
            m2wav[movie] = [f"{vid}/{yt}/{j + 1:05d}.wav" for j in range(WAVS)]
            m2jpg[movie] = [f"{name}/1.6/{yt}/{25 * j:07d}.jpg" for j in range(JPGS)]
            for w in m2wav[movie]:
                voice_in[w] = ((shared[i] + nuisance) @ to_voice + rng.normal(size=192) * 2.0).astype(np.float64)
            for f in m2jpg[movie]:
                face_in[f] = ((shared[i] + nuisance) @ to_face + rng.normal(size=512) * 4.0).astype(np.float32)
            wavs_of[i] += m2wav[movie]
            jpgs_of[i] += m2jpg[movie]
            if i in TRAIN:
                train_movies.append(movie)
    # items outside every movie: a VGGFace1-style photo (no video) and a wav of an unlisted video
    face_in[f"{names[9]}/00000001.jpg"] = rng.normal(size=512).astype(np.float32)
    voice_in[f"{vids[9]}/extra-yt/00001.wav"] = rng.normal(size=192)
    test = [i for i in range(N_IDS) if i not in TRAIN and i not in VAL]

    def verification(people, n):
        trials = []
        for t in range(n):
            a = people[t % len(people)]
            b = a if t % 2 == 0 else people[(people.index(a) + 1 + (t // 2) % (len(people) - 1)) % len(people)]
            trials.append([wavs_of[a][t % len(wavs_of[a])], jpgs_of[b][t % len(jpgs_of[b])], int(a == b)])
        return {"wav_set": {t[0] for t in trials}, "jpg_set": {t[1] for t in trials}, "list": trials,
                "script": "# generated"}

    def matching(people, n):
        rows = []
        for t in range(n):
            a, b = people[t % len(people)], people[(t + 1) % len(people)]
            rows.append((names[a], wavs_of[a][t % 6], jpgs_of[a][t % 9], names[b], wavs_of[b][t % 6], jpgs_of[b][t % 9]))
        return {"wav_set": set(), "jpg_set": set(), "match_list": rows}

    root = root / "dataset" / "voxceleb"
    _dump(root / "face_input.pkl", face_in)
    _dump(root / "voice_input.pkl", voice_in)
    _dump(root / "cluster" / "movie2jpg_path.pkl", m2jpg)
    _dump(root / "cluster" / "movie2wav_path.pkl", m2wav)
    _dump(root / "cluster" / "train_movie_list.pkl", train_movies)
    ev = root / "eval"
    _dump(ev / "valid_verification.pkl", verification(list(VAL), 40))
    _dump(ev / "test_verification.pkl", verification(test, 30))
    _dump(ev / "test_verification_g.pkl", verification(test, 20))
    _dump(ev / "test_matching.pkl", matching(test, 15))
    _dump(ev / "test_matching_g.pkl", matching(test, 9))
    one_to_n = [([wavs_of[(i + s) % 3 + test[0]][0] for s in range(3)], [jpgs_of[(i + s) % 3 + test[0]][1] for s in range(3)])
                for i in range(3)]
    _dump(ev / "test_matching_10.pkl", {"wav_set": set(), "jpg_set": set(), "match_list": one_to_n})
    groups = [[(wavs_of[i][g], jpgs_of[i][g], names[i]) for i in test] for g in range(2)]
    _dump(ev / "test_retrieval.pkl", {"wav_set": set(), "jpg_set": set(), "retrieval_lists": groups})
    return {"vids": vids, "names": names, "train_movies": train_movies, "face_in": face_in, "voice_in": voice_in,
            "root": root}


@pytest.fixture(scope="module")
def release(tmp_path_factory) -> dict:
    return make_release(tmp_path_factory.mktemp("sl"))


@pytest.fixture(scope="module")
def imported(release, tmp_path_factory) -> dict:
    store = tmp_path_factory.mktemp("store") / "sl"
    assert main(["--sl-dir", str(release["root"].parent.parent), "--out", str(store), "--quiet"]) == 0
    return {"store": store, "summary": json.loads((store / "sl_import.json").read_text())}


def test_store_holds_every_embedding_with_identities_videos_and_splits(release, imported):
    src = open_features(imported["store"])
    voice, face = src["voice"], src["face"]
    assert (voice.global_dim, voice.token_dim, face.global_dim, face.token_dim) == (192, 0, 512, 0)
    assert len(voice) == N_IDS * VIDEOS * WAVS + 1 and len(face) == N_IDS * VIDEOS * JPGS + 1
    # normalised like SL does at load time, otherwise the same vectors (float16 on disk)
    path = next(iter(release["face_in"]))
    want = release["face_in"][path] / np.linalg.norm(release["face_in"][path])
    assert np.allclose(face.globals(face.index(path))[0], want, atol=2e-3)
    # face name folders mapped to VoxCeleb1 ids from the release's own evidence
    assert set(face.identities.tolist()) == set(release["vids"]) == set(voice.identities.tolist())
    assert imported["summary"]["face_names"] == {"total": N_IDS, "from_table": 0, "inferred": N_IDS, "unmapped": 0}
    # train = exactly the items of the training movies, video = the movie key
    train = face.select("train")
    assert len(train) == len(TRAIN) * VIDEOS * JPGS
    assert set(face.videos[train].tolist()) == set(release["train_movies"])
    assert set(voice.videos[voice.select("train")].tolist()) == set(release["train_movies"])
    # val/test items are those the lists use, the rest is unused
    assert len(face.select("val")) > 0 and len(voice.select("test")) > 0
    assert set(np.unique(face.splits).tolist()) == {"train", "val", "test", "unused"}
    # outside the movies: <identity>/<parent folder>, and no video for a photo
    i = voice.index(f"{release['vids'][9]}/extra-yt/00001.wav")[0]
    assert (voice.videos[i], voice.splits[i]) == (f"{release['vids'][9]}/extra-yt", "unused")
    i = face.index(f"{release['names'][9]}/00000001.jpg")[0]
    assert (face.videos[i], face.identities[i]) == ("", release["vids"][9])
    assert imported["summary"]["train_items_in_eval"] == {}
    # the features were made by SL's encoders, whose weight files are unknown: the store says so
    enc = FeatureStore(imported["store"]).source["encoders"]
    assert enc["voice"]["name"] == "Self-Lifting's ECAPA-TDNN (SpeechBrain's architecture) retrained on VoxCeleb2"
    assert enc["voice"]["weights_id"].startswith("unknown: Self-Lifting's own ECAPA-TDNN checkpoint")
    assert enc["face"]["weights_id"].startswith("unknown: Self-Lifting's face pipeline")


def test_lists_are_wen_format_and_keep_sls_trials(release, imported):
    folder = imported["store"] / "protocol"
    proto = read_wen2021(folder)
    assert set(proto.verification) == {"verify_v2f_sl_val", "verify_v2f_sl_test", "verify_g_v2f_sl_test"}
    assert set(proto.matching) == {"match_v2f_sl_test", "match_f2v_sl_test", "match_g_v2f_sl_test", "match_g_f2v_sl_test"}
    assert set(proto.retrieval) == {f"reterival_{d}_sl_test_{k}" for d in ("v2f", "f2v") for k in (1, 2)}
    # labels as SL pickled them (the Wen format derives them from the identities: they must agree)
    sl = pickle.loads((release["root"] / "eval" / "test_verification.pkl").read_bytes())["list"]
    vl = proto.verification["verify_v2f_sl_test"]
    assert vl.voices.tolist() == [t[0] for t in sl] and vl.labels.tolist() == [t[2] for t in sl]
    ml = proto.matching["match_f2v_sl_test"]
    sl = pickle.loads((release["root"] / "eval" / "test_matching.pkl").read_bytes())["match_list"]
    assert (ml.queries[0], ml.positives[0], ml.negatives[0]) == (sl[0][2], sl[0][1], sl[0][4])
    assert len(proto.retrieval["reterival_v2f_sl_test_1"].voices) == N_IDS - len(TRAIN) - len(VAL)
    # SL's 1:N trials sit beside the lists, query first, correct candidate second
    lines = (folder / "sl_match_v2f_10_test.txt").read_text().splitlines()
    assert len(lines) == 3 and all(len(l.split()) == 4 for l in lines)
    manifest = json.loads((folder / "sl_lists.json").read_text())
    assert manifest["lists"]["verify_v2f_sl_val"]["from"] == "valid_verification.pkl"
    assert {p.name for p in folder.iterdir()} == set(manifest["files"]) | {"sl_lists.json"}


def test_train_and_evaluate_global_only_on_the_import(imported, tmp_path):
    from training.eval.evaluate import evaluate
    from training.loop.train import main as train_main

    run = tmp_path / "run"
    argv = ["--config", "faa", "--config", "sl_features", "--data", str(imported["store"]), "--out", str(run),
            "--no-progress", "schedule.max_rounds=2", *FAST]
    assert train_main(argv) == 0
    card = json.loads((run / "best" / "config.json").read_text())
    assert card["trained_on"]["config"]["model"]["use_tokens"] is False
    assert card["trained_on"]["synthetic"] is False
    # the card names SL's encoders, so faa_core refuses it with this package's encoders
    assert card["encoders"]["voice"]["weights"].startswith("SL's ECAPA (VoxCeleb2)")
    assert card["encoders"]["voice"]["weights_id"].startswith("unknown: Self-Lifting's own ECAPA-TDNN")
    report = evaluate(str(run / "best"), imported["store"], tmp_path / "eval", rerank_k=3)
    assert json.loads((tmp_path / "eval" / "report.json").read_text())["lists"].keys() == report["lists"].keys()
    assert {"verify_v2f_sl_test", "match_v2f_sl_test", "reterival_f2v_sl_test_2"} <= set(report["lists"])
    assert all(0.0 <= e["value"] <= 1.0 for e in report["lists"].values())
    one_to_n = [e for e in report["lists"].values() if e.get("candidates")]
    assert one_to_n and all(e["candidates"] >= 3 and e["trials"] > 0 for e in one_to_n)  # SL's 1:N lists scored


def test_identity_table_wins_and_brings_gender(release, tmp_path):
    table = tmp_path / "wen"
    table.mkdir()
    rows = [f"{v},{n},{'m' if i % 2 else 'f'},Nowhere,dev" for i, (v, n) in enumerate(zip(release["vids"], release["names"]))]
    (table / "vox1_test.csv").write_text("VoxCeleb1_ID,VGGFace1_ID,Gender,Nationality,Set\n" + "\n".join(rows) + "\n")
    summary = import_sl(release["root"], tmp_path / "store", protocol_dir=table, protocol_out=tmp_path / "lists")
    assert summary["face_names"]["from_table"] == N_IDS
    proto = read_wen2021(tmp_path / "lists")
    assert proto.identities[release["vids"][1]].gender == "m"
    assert proto.identities[release["vids"][1]].face_id == release["names"][1]
    assert not (tmp_path / "store" / "protocol").exists()


def test_existing_output_and_overwrite(release, imported, tmp_path, capsys):
    store = imported["store"]
    with pytest.raises(SystemExit) as info:
        main(["--sl-dir", str(release["root"]), "--out", str(store), "--quiet"])
    assert info.value.code == 2 and "already holds a feature store" in capsys.readouterr().err
    # --overwrite into a copy: stale lists of the earlier import are removed, foreign files refused
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(store, copy)
    (copy / "protocol" / "verify_v2f_sl_old.txt").write_text("x y\n")
    manifest = json.loads((copy / "protocol" / "sl_lists.json").read_text())
    manifest["files"].append("verify_v2f_sl_old.txt")
    (copy / "protocol" / "sl_lists.json").write_text(json.dumps(manifest))
    assert main(["--sl-dir", str(release["root"]), "--out", str(copy), "--overwrite", "--quiet"]) == 0
    assert not (copy / "protocol" / "verify_v2f_sl_old.txt").exists()
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(SystemExit):
        main(["--sl-dir", str(release["root"]), "--out", str(tmp_path / "s2"), "--protocol-out", str(foreign),
              "--overwrite", "--quiet"])
    assert "not empty" in capsys.readouterr().err and (foreign / "notes.txt").exists()


def test_a_hostile_pickle_stops_the_import_before_anything_runs(release, tmp_path, capsys):
    import shutil

    root = tmp_path / "rel"
    shutil.copytree(release["root"], root)
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return os.system, (f"touch {marker}",)

    _dump(root / "eval" / "test_matching.pkl", {"match_list": [Evil()]})
    with pytest.raises(SystemExit) as info:
        main(["--sl-dir", str(root), "--out", str(tmp_path / "store"), "--quiet"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "eval/test_matching.pkl wants posix.system; only containers, strings, numbers and numpy arrays" in err
    assert not marker.exists() and not (tmp_path / "store" / "store.json").exists()


def test_unknown_structures_and_missing_paths_are_named(release, tmp_path, capsys):
    import shutil

    root = tmp_path / "rel"
    shutil.copytree(release["root"], root)
    _dump(root / "eval" / "test_retrieval.pkl", {"galleries_v2": 3, "other": "x"})
    with pytest.raises(SystemExit):
        main(["--sl-dir", str(root), "--out", str(tmp_path / "s"), "--quiet"])
    err = capsys.readouterr().err
    assert "eval/test_retrieval.pkl: expected retrieval galleries" in err and "'galleries_v2'" in err
    _dump(root / "eval" / "test_retrieval.pkl", {"retrieval_lists": [[("id10001/zz/00009.wav", "x/1.6/zz/1.jpg", "n")]]})
    with pytest.raises(SystemExit):
        main(["--sl-dir", str(root), "--out", str(tmp_path / "s"), "--quiet"])
    err = capsys.readouterr().err
    assert "no embedding for" in err and "id10001/zz/00009.wav" in err


def test_readers_accept_the_plausible_shapes():
    kind = make_kind(["a/v/1.wav", "b/v/1.wav", "c/v/1"], ["A/1.jpg", "B/1.jpg", "C/x"])
    # bare list, face-first, string labels, dict trials, voices without an extension (known key)
    ev = read_verification([("A/1.jpg", "a/v/1.wav", "1"), {"wav": "b/v/1.wav", "jpg": "A/1.jpg", "label": 0},
                            ["name", "c/v/1", "C/x", np.int64(1)]], "v.pkl", kind)
    assert ev.verification == [("a/v/1.wav", "A/1.jpg", 1), ("b/v/1.wav", "A/1.jpg", 0), ("c/v/1", "C/x", 1)]
    assert ev.same == [("a/v/1.wav", "A/1.jpg"), ("c/v/1", "C/x")]
    # matching: SL 6-tuples, 4-tuples, 3-tuples either way, 1:2 and 1:N path lists
    ml = read_matching({"match_list": [("n1", "a/v/1.wav", "A/1.jpg", "n2", "b/v/1.wav", "B/1.jpg"),
                                       ("a/v/1.wav", "A/1.jpg", "B/1.jpg"), ("B/1.jpg", "b/v/1.wav", "a/v/1.wav"),
                                       (["a/v/1.wav", "b/v/1.wav"], ["A/1.jpg", "B/1.jpg"]),
                                       (["A/1.jpg", "B/1.jpg", "C/x"], ["a/v/1.wav", "b/v/1.wav", "c/v/1"])]},
                       "m.pkl", kind)
    assert ml.v2f == [("a/v/1.wav", "A/1.jpg", "B/1.jpg")] * 3
    assert ml.f2v == [("A/1.jpg", "a/v/1.wav", "b/v/1.wav"), ("B/1.jpg", "b/v/1.wav", "a/v/1.wav"),
                      ("A/1.jpg", "a/v/1.wav", "b/v/1.wav")]
    assert ml.v2f_n == [("a/v/1.wav", ["A/1.jpg", "B/1.jpg", "C/x"])]
    # retrieval: one gallery of tuples, a list of galleries, (voices, faces) path lists
    one = read_retrieval([("a/v/1.wav", "A/1.jpg", "n"), ("b/v/1.wav", "B/1.jpg", "m")], "r.pkl", kind)
    assert one.galleries == [(["a/v/1.wav", "b/v/1.wav"], ["A/1.jpg", "B/1.jpg"])] and len(one.same) == 2
    lists = read_retrieval({"lists": [[["A/1.jpg", "C/x"], ["a/v/1.wav"]]]}, "r.pkl", kind)
    assert lists.galleries == [(["a/v/1.wav"], ["A/1.jpg", "C/x"])] and lists.same == []
    with pytest.raises(SLFormatError, match=r"v\.pkl: trial 0 should hold one voice path, one face path"):
        read_verification([("A/1.jpg", "B/1.jpg", 1)], "v.pkl", kind)
    with pytest.raises(SLFormatError, match=r"m\.pkl: trial 0 should hold 2 voices and 2 faces.*found 1 voice"):
        read_matching([("a/v/1.wav", "A/1.jpg")], "m.pkl", kind)
    with pytest.raises(SLFormatError, match=r"v\.pkl: expected verification trials.*found dict with 2 keys"):
        read_verification({"x": 1, "y": 2}, "v.pkl", kind)


def test_an_oversized_embedding_is_refused_with_its_path():
    """A vector far beyond SL's 512/192 dimensions is not an embedding (the pickle-bomb shape)."""
    from training.ingest.sl_release import MAX_EMBEDDING_DIM, SLFormatError, _embeddings

    ok = _embeddings({"a/1.jpg": np.ones(512)}, "face_input.pkl")
    assert ok["a/1.jpg"].shape == (512,)
    with pytest.raises(SLFormatError, match=r"'a/2\.jpg' is a 4097-d vector; this reader accepts at most 4096"):
        _embeddings({"a/2.jpg": [0.5] * (MAX_EMBEDDING_DIM + 1)}, "face_input.pkl")
