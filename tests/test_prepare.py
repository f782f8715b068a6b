"""python -m training.prepare: manifests and the report of every missing or unreadable file."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"

from training.ingest.prepare import main as prepare_main  # noqa: E402
from training.ingest.prepare import prepare_manifest  # noqa: E402
from voxceleb_fixtures import build_world  # noqa: E402

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return build_world(tmp_path_factory.mktemp("vox"))


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def _quiet(*_a) -> None:
    pass


def test_vggface1_manifest_and_report(world, tmp_path, capsys):
    out = tmp_path / "man"
    rc = prepare_main([
        "--protocol", "wen2021", "--protocol-dir", str(world.wen), "--voices", str(world.root / "vox1"),
        "--faces", str(world.vggface1), "--face-source", "vggface1", "--out", str(out), "--no-progress",
    ])
    assert rc == 0
    voice, face = _rows(out / "voice.csv"), _rows(out / "face.csv")
    assert list(voice[0])[:4] == ["id", "video", "identity", "split"]
    assert {"gender", "nationality", "name"} <= set(voice[0]) and {"gender", "nationality"} <= set(face[0])
    # kept: readable files of protocol identities (silent wav and truncated jpg pass the header checks)
    assert [r["id"] for r in voice] == [
        "id10001/vidA1/00001.wav", "id10001/vidA2/00001.wav", "id10002/vidB1/00001.wav",
        "id10003/vidC1/00001.wav", "id10004/vidD1/00001.wav",
    ]
    assert [r["id"] for r in face] == [
        "Alice_Able/00000001.jpg", "Alice_Able/00000002.jpg", "Bob_Baker/00000001.jpg",
        "Carol_Cole/00000001.jpg", "Dan_Dale/00000001.jpg",
    ]
    v = voice[0]
    assert (v["video"], v["identity"], v["split"], v["name"], v["gender"], v["nationality"]) == (
        "id10001/vidA1", "id10001", "train", "Alice_Able", "f", "USA")
    assert float(v["duration_s"]) == pytest.approx(2.0, abs=0.01)
    carol = next(r for r in face if r["name"] == "Carol_Cole")
    assert (carol["identity"], carol["split"], carol["video"]) == ("id10003", "test", "Carol_Cole/00000001.jpg")
    assert {r["split"] for r in face} == {"train", "test", "val"}

    report = json.loads((out / "report.json").read_text())
    bad_v = {u["path"]: u["reason"] for u in report["voice"]["unreadable"]}
    assert set(bad_v) == {"id10002/vidB1/00002.wav", "id10003/vidC1/00002.wav"}
    assert "too short" in bad_v["id10002/vidB1/00002.wav"] and "audio" in bad_v["id10003/vidC1/00002.wav"]
    bad_f = {u["path"]: u["reason"] for u in report["face"]["unreadable"]}
    assert list(bad_f) == ["Carol_Cole/00000002.jpg"]
    assert report["voice"]["outside_protocol_folders"] == {"id10005": 1, "id10099": 1}  # Set=none + unknown
    assert report["face"]["outside_protocol_folders"] == {"Zed_Zane": 1}
    stray = {p["path"] for p in report["voice"]["other_problems"]}
    assert stray == {"id10001/stray.txt", "id10001/vidA1/notes.txt"}
    assert report["voice"]["found"] == 9 and report["voice"]["kept"] == 5
    miss = report["list_items_missing"]
    assert miss["voice"]["absent"] == ["id10003/vidC1/00009.wav"]
    assert miss["voice"]["unreadable"] == ["id10003/vidC1/00002.wav"]
    assert miss["face"]["absent"] == ["Carol_Cole/00000009.jpg"]
    assert miss["face"]["unreadable"] == ["Carol_Cole/00000002.jpg"]
    assert report["lists"]["verify_v2f_test"] == {"voice_paths": 4, "voice_missing": 2, "face_paths": 4, "face_missing": 2}
    assert report["identities"]["by_split"]["train"]["identities"] == 2
    text = (out / "report.txt").read_text()
    for needle in ("id10003/vidC1/00002.wav", "Carol_Cole/00000009.jpg", "Zed_Zane: 1", "too short"):
        assert needle in text
    assert "kept" in capsys.readouterr().out
    meta = json.loads((out / "manifest.json").read_text())
    assert meta["roots"]["voice"] == str(world.voices.resolve()) and meta["face_video"] == "photo"


def test_voxceleb_frames_link_videos_and_nagrani_old_paths(world, tmp_path):
    out = tmp_path / "man"
    report = prepare_manifest("nagrani2018", world.nagrani, world.voices, world.frames_parent, "voxceleb_frames", out,
                              progress=False, log=_quiet, workers=2, full_decode=True)
    face = _rows(out / "face.csv")
    voice = {r["video"] for r in _rows(out / "voice.csv")}
    assert face[0]["id"] == "Alice_Able/1.6/vidA1/0000100.jpg" and face[0]["video"] == "id10001/vidA1"
    assert {r["video"] for r in face} <= voice  # every frame's video has a recording
    assert {r["split"] for r in face} == {"train", "val", "unseen_unheard"}
    # the veriflist's first-release paths are matched to the files; only the absent frame is missing
    assert report["list_items_missing"]["voice"]["absent_count"] == 0
    assert report["list_items_missing"]["face"]["absent"] == ["Dan_Dale/vidD9/0000100.jpg"]
    assert any("first VoxCeleb1 release" in n for n in report["notes"])


def test_full_decode_catches_truncated_jpeg(world, tmp_path):
    report = prepare_manifest("wen2021", world.wen, world.voices, world.vggface1, "vggface1", tmp_path / "m",
                              progress=False, log=_quiet, full_decode=True)
    assert "truncated" in {u["path"]: u["reason"] for u in report["face"]["unreadable"]}["Dan_Dale/00000001.jpg"]


def test_user_mistakes_give_messages_not_tracebacks(world, tmp_path, capsys):
    base = ["--protocol", "wen2021", "--protocol-dir", str(world.wen), "--voices", str(world.voices),
            "--faces", str(world.vggface1), "--face-source", "vggface1", "--no-progress"]
    assert prepare_main(base[:5] + [str(tmp_path / "nope")] + base[6:] + ["--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "--voices: folder not found" in err and "Traceback" not in err
    assert prepare_main(["--protocol", "wen2021", "--protocol-dir", str(world.nagrani)] + base[4:] + ["--out", str(tmp_path / "o")]) == 2
    assert "cannot read the wen2021 protocol" in capsys.readouterr().err
    out = tmp_path / "m"
    assert prepare_main(base + ["--out", str(out)]) == 0
    capsys.readouterr()
    assert prepare_main(base + ["--out", str(out)]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert prepare_main(base + ["--out", str(out), "--overwrite"]) == 0
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "x.txt").write_text("x")
    assert prepare_main(base + ["--out", str(tmp_path / "busy")]) == 2
    assert "not empty" in capsys.readouterr().err


@pytest.mark.skipif(not (SHARED / "media" / "voxceleb_subset").is_dir(), reason="../shared/data/media is absent")
def test_real_voxceleb_subset(tmp_path):
    media, protocols = SHARED / "media" / "voxceleb_subset", SHARED / "protocols"
    rep = prepare_manifest("wen2021", protocols / "wen2021", media, media, "vggface1", tmp_path / "vgg",
                           progress=False, log=_quiet)
    assert rep["face"]["kept"] == rep["face"]["found"] == 1295 and rep["voice"]["kept"] == 2
    assert rep["face"]["unreadable_count"] == 0 and rep["list_items_missing"]["face"]["absent_count"] > 10000
    # the face-track frames with the same protocol: prepare + extract of them is in test_extract.py
