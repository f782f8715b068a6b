"""Rehearsal of the real-data chain on real files: prepare -> extract -> train -> evaluate -> publish -> app.

A small VoxCeleb-shaped tree is built from ``../shared/data/media`` (skipped where that folder is absent,
e.g. a CI clone without it) and every step runs as a user runs it (each command's ``main([...])``, the app
through ``gradio_client``), with its output checked. Encoders use random weights (no downloads): the numbers
say nothing about people; the point is that real photos, real speech and real video go through every step.

What the tree holds, honestly:

* 10 GRID speakers (``grid/*.mpg``): 2 frames of each clip as face photos and its audio (16 kHz) cut in two
  1.5 s utterances. Face and voice are the same real person: these are the only REAL voice-face pairings.
  Their ids (``id9xxxx``) and names (``Grid_<clip>``) are made up here.
* 11 VGGFace1 identities under their real VoxCeleb1 ids (from Wen's ``vox1_*.csv``): 2 photos each plus their
  16 VoxCeleb1 face-track frames (as photos). Their voices are the 13 real VoxCeleb1 utterances of OTHER people
  (``voxceleb_wav/*.wav`` and ``voxceleb_subset/wav``) dealt out in file order: these pairings are ARBITRARY.

Identities are split into train/val/test (both kinds in every split), written as a Wen-format protocol by
``faa_core.protocols.write_wen2021_lists`` with test verification, matching and retrieval lists.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
MEDIA = SHARED / "media"
WEN = SHARED / "protocols" / "wen2021"

pytestmark = [
    pytest.mark.skipif(not MEDIA.is_dir() or not WEN.is_dir(), reason="../shared/data is not on this machine"),
    pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg is not installed"),
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
]

PHOTOS_PER_VGG = 2
GRID_FRAMES = 2
GRID_CUTS = 2  # 1.5 s utterances per 3 s clip
# faa_supervised small enough for the 2-core machine; data.link=identity pairs any voice and face of one person
TRAIN_OVERRIDES = [
    "data.link=identity", "schedule.steps_per_round=4", "schedule.max_rounds=2", "optim.batch_size=16",
    "validation.trials=40", "model.d_model=16", "model.n_heads=2", "model.n_layers=1", "model.proj_hidden=16",
    "model.embed_dim=8",
]


def _vox_ids() -> dict[str, str]:
    """VGGFace1 name -> VoxCeleb1 id, from Wen's identity tables."""
    out = {}
    for f in sorted(WEN.glob("vox1_*.csv")):
        for line in f.read_text().splitlines()[1:]:
            cells = line.strip().split(",")
            if len(cells) >= 2:
                out[cells[1]] = cells[0]
    return out


def build_tree(root: Path) -> dict:
    """The voice tree, the face tree and the protocol; returns what a check needs (counts, identities)."""
    from faa_core.protocols import Identity, MatchingList, RetrievalList, VerificationList, write_wen2021_lists

    voices, faces, proto = root / "vox1" / "wav", root / "faces", root / "protocol"
    people: list[tuple[str, str, str]] = []  # (voice id, face name, kind)
    voice_items: dict[str, list[str]] = {}
    face_items: dict[str, list[str]] = {}

    def add_voice(vid: str, video: str, n: int, samples: np.ndarray, rate: int) -> None:
        path = voices / vid / video / f"{n:05d}.wav"
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(str(path), samples, rate, subtype="PCM_16")
        voice_items.setdefault(vid, []).append(f"{vid}/{video}/{n:05d}.wav")

    def add_face(name: str, vid: str, src: Path, stem: str) -> None:
        (faces / name).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, faces / name / f"{stem}.jpg")
        face_items.setdefault(vid, []).append(f"{name}/{stem}.jpg")

    # GRID: real face and real voice of one speaker per clip
    scratch = root / "grid_scratch"
    scratch.mkdir(parents=True)
    for k, clip in enumerate(sorted((MEDIA / "grid").glob("*.mpg"))):
        vid, name = f"id9{k + 1:04d}", f"Grid_{clip.stem}"
        wav, frames = scratch / f"{clip.stem}.wav", scratch / f"{clip.stem}_%d.jpg"
        subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-i", str(clip), "-vn", "-ac", "1", "-ar", "16000",
                        str(wav), "-an", "-vf", "fps=1", "-frames:v", str(GRID_FRAMES), "-q:v", "2", str(frames)],
                       check=True, timeout=60)
        audio, rate = sf.read(str(wav), dtype="float32")
        cut = len(audio) // GRID_CUTS
        for n in range(GRID_CUTS):
            add_voice(vid, "grid", n + 1, audio[n * cut:(n + 1) * cut], rate)
        for n in range(GRID_FRAMES):
            add_face(name, vid, scratch / f"{clip.stem}_{n + 1}.jpg", f"frame{n + 1}")
        people.append((vid, name, "grid"))

    # VGGFace1 identities: real photos and face-track frames; voices of other people, dealt out arbitrarily
    ids = _vox_ids()
    vgg = MEDIA / "voxceleb_subset" / "VGG_ALL_FRONTAL"
    names = sorted(p.name for p in vgg.iterdir() if p.is_dir())
    for name in names:
        vid = ids[name]
        for photo in sorted((vgg / name).glob("*.jpg"))[:PHOTOS_PER_VGG]:
            add_face(name, vid, photo, photo.stem)
        for frame in sorted((MEDIA / "voxceleb_subset" / "unzippedFaces" / name).rglob("*.jpg")):
            add_face(name, vid, frame, f"track_{frame.parent.name}_{frame.stem}")
        people.append((vid, name, "vgg"))
    others = sorted((MEDIA / "voxceleb_wav").glob("*.wav")) + sorted((MEDIA / "voxceleb_subset" / "wav").rglob("*.wav"))
    for k, wav in enumerate(others):
        vid = ids[names[k % len(names)]]
        audio, rate = sf.read(str(wav), dtype="float32")
        add_voice(vid, f"other{k + 1:02d}", 1, audio if audio.ndim == 1 else audio.mean(axis=1), rate)

    # splits: both kinds in every split (GRID 6/2/2, VGG 7/2/2)
    split_of = {}
    for kind, (n_train, n_val) in (("grid", (6, 2)), ("vgg", (7, 2))):
        mine = [p for p in people if p[2] == kind]
        for i, (vid, _, _) in enumerate(mine):
            split_of[vid] = "train" if i < n_train else "val" if i < n_train + n_val else "test"
    identities = [Identity(vid, name, "", "", split_of[vid]) for vid, name, _ in people]
    test = [vid for vid, _, _ in people if split_of[vid] == "test"]
    pairs = [(v, f) for a in test for v in voice_items[a] for b in test for f in face_items[b]]
    who = {item: vid for vid in test for item in voice_items[vid] + face_items[vid]}
    verify = VerificationList("verify_v2f_test", np.array([v for v, _ in pairs]), np.array([f for _, f in pairs]),
                              np.array([int(who[v] == who[f]) for v, f in pairs]))
    queries = [v for a in test for v in voice_items[a]]
    match = MatchingList("match_v2f_test", "v2f", np.array(queries),
                         np.array([face_items[who[v]][0] for v in queries]),
                         np.array([face_items[test[(test.index(who[v]) + 1) % len(test)]][0] for v in queries]))
    gallery_v = [v for a in test for v in voice_items[a]]
    gallery_f = [f for a in test for f in face_items[a]]
    retrieval = RetrievalList("reterival_v2f_test", np.array(gallery_v), np.array(gallery_f),
                              np.array([who[v] for v in gallery_v]), np.array([who[f] for f in gallery_f]))
    write_wen2021_lists(proto, identities, verification=[verify], matching=[match], retrieval=[retrieval])
    return {"voices": voices, "faces": faces, "protocol": proto, "split_of": split_of,
            "n_voices": sum(map(len, voice_items.values())), "n_faces": sum(map(len, face_items.values())),
            "grid_voice": voices / people[0][0] / "grid" / "00001.wav",
            "grid_faces": [faces / people[i][1] / "frame1.jpg" for i in (0, 1)]}


def test_real_files_go_through_every_step(tmp_path):
    from training.evaluate import main as evaluate_main
    from training.extract import main as extract_main
    from training.features import FeatureStore
    from training.prepare import main as prepare_main
    from training.publish import main as publish_main
    from training.train import main as train_main

    clock = [time.perf_counter()]
    seconds: dict[str, float] = {}

    def lap(step: str) -> None:  # printed at the end (pytest -s): what each step costs on this machine
        clock.append(time.perf_counter())
        seconds[step] = round(clock[-1] - clock[-2], 1)

    tree = build_tree(tmp_path / "data")
    lap("tree")
    assert (tree["n_voices"], tree["n_faces"]) == (10 * GRID_CUTS + 13, 10 * GRID_FRAMES + 11 * PHOTOS_PER_VGG + 16)

    # 1. prepare: every file is kept, nothing reported missing
    man = tmp_path / "manifest"
    assert prepare_main(["--protocol", "wen2021", "--protocol-dir", str(tree["protocol"]), "--voices",
                         str(tree["voices"]), "--faces", str(tree["faces"]), "--face-source", "vggface1",
                         "--out", str(man), "--no-progress"]) == 0
    report = json.loads((man / "report.json").read_text())
    rows = {m: (man / f"{m}.csv").read_text().splitlines()[1:] for m in ("voice", "face")}
    assert (len(rows["voice"]), len(rows["face"])) == (tree["n_voices"], tree["n_faces"]), report
    for m, n in (("voice", tree["n_voices"]), ("face", tree["n_faces"])):
        assert (report[m]["found"], report[m]["kept"], report[m]["unreadable_count"], report[m]["other_problems_count"],
                report[m]["outside_protocol_files"]) == (n, n, 0, 0, 0)
    by_split = report["identities"]["by_split"]
    assert {s: (e["identities"], e["with_both"]) for s, e in by_split.items()} == {
        "train": (13, 13), "val": (4, 4), "test": (4, 4)}
    assert all(e["voice_missing"] == 0 and e["face_missing"] == 0 for e in report["lists"].values())

    lap("prepare")

    # 2. extract with random weights: every item written, provenance recorded
    store = tmp_path / "store"
    assert extract_main(["--manifest", str(man), "--out", str(store), "--weights", "random", "--device", "cpu",
                         "--batch-size", "16", "--workers", "2", "--no-progress"]) == 0
    fs = FeatureStore(store)
    assert (len(fs["voice"]), len(fs["face"])) == (tree["n_voices"], tree["n_faces"])
    assert fs.source["skipped"] == {"face": 0, "voice": 0} and fs.source["random_weights"] is True
    assert fs.source["encoders"]["voice"]["weights_id"] == "random (seed 0)"
    splits = {s: int((fs["face"].splits == s).sum()) for s in ("train", "val", "test")}
    assert all(splits.values()), splits

    lap("extract")

    # 3. train (identity-level pairs: VGGFace1 photos share no video with any recording)
    run = tmp_path / "run"
    assert train_main(["--config", "faa_supervised", "--data", str(store), "--out", str(run), "--no-progress",
                       "--device", "cpu", *TRAIN_OVERRIDES]) == 0
    card = json.loads((run / "best" / "config.json").read_text())
    assert card["synthetic"] is True and card["trained_on"]["random_encoder_features"] is True
    assert [card["encoders"][m]["weights_id"] for m in ("face", "voice")] == ["random (seed 0)"] * 2

    lap("train")

    # 4. evaluate on the written test lists
    ev = tmp_path / "eval"
    assert evaluate_main(["--checkpoint", str(run / "best"), "--data", str(store), "--protocol-dir",
                          str(tree["protocol"]), "--out", str(ev), "--quiet"]) == 0
    lists = json.loads((ev / "report.json").read_text())["lists"]
    assert {"verify_v2f_test", "match_v2f_test", "reterival_v2f_test"} <= set(lists)  # + evaluate's generated 1:2 lists
    assert (lists["verify_v2f_test"]["trials"], lists["match_v2f_test"]["trials"]) == (60, 6)
    assert all(0.0 <= e["value"] <= 1.0 for e in lists.values()), lists

    lap("evaluate")

    # 5. publish, 6. the app on the published checkpoint with random weights, one /match request
    pub = tmp_path / "published"
    assert publish_main(["--run", str(run), "--report", str(ev / "report.json"), "--out", str(pub)]) == 0
    lap("publish")
    import app
    from app_fixtures import free_port
    from gradio_client import Client, handle_file

    pipeline, info = app.load_models(pub, "random", device="cpu", warmup=False)
    assert json.loads((pub / "config.json").read_text())["evaluation"]["test"]["lists"].keys() == lists.keys()
    assert pipeline.encoder_mismatch is None and any(w.startswith("SYNTHETIC CHECKPOINT") for w in info.warnings)
    demo = app.build_demo(pipeline, info)
    url = app.serve(demo, host="127.0.0.1", port=free_port(), block=False, quiet=True)
    try:
        client = Client(url, verbose=False, analytics_enabled=False, httpx_kwargs={"timeout": 120},
                        download_files=str(tmp_path / "downloads"))
        out = client.predict(handle_file(str(tree["grid_voice"])), [handle_file(str(p)) for p in tree["grid_faces"]],
                             None, api_name="/match")
    finally:
        demo.close()
    lap("app")
    print("rehearsal step seconds:", seconds)
    summary = out[5]
    assert summary["ok"] and summary["errors"] == [], summary
    assert sorted(f["rank"] for f in summary["faces"]) == [1, 2]  # one real GRID face per photo
