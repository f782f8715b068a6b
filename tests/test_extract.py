"""python -m training.extract: the feature store of a manifest, resumable and split across ranks."""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path

import numpy as np
import pytest

os.environ["HF_HUB_OFFLINE"] = "1"

from training.loop.data import VideoIndex, open_features  # noqa: E402
from training.ingest.extract import (  # noqa: E402
    ExtractError,
    RunOptions,
    Settings,
    estimate_bytes,
    run_extraction,
    voice_token_count,
)
from training.ingest.extract import main as extract_main  # noqa: E402
from training.features import FeatureStore  # noqa: E402
from training.ingest.manifest import read_manifest  # noqa: E402
from training.ingest.prepare import prepare_manifest  # noqa: E402
from voxceleb_fixtures import build_world  # noqa: E402

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def _quiet(*_a) -> None:
    pass


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return build_world(tmp_path_factory.mktemp("vox"))


@pytest.fixture(scope="module")
def vgg_manifest(world, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("man") / "vgg"
    prepare_manifest("wen2021", world.wen, world.voices, world.vggface1, "vggface1", out, progress=False, log=_quiet)
    return out


@pytest.fixture(scope="module")
def frames_manifest(world, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("man") / "frames"
    prepare_manifest("wen2021", world.wen, world.voices, world.frames_parent, "voxceleb_frames", out,
                     progress=False, log=_quiet)
    return out


@pytest.fixture(scope="module")
def encoders(face_encoder, voice_encoder):
    return {"face": face_encoder, "voice": voice_encoder}


def _run(manifest, out, encoders, shard=2, **kw):
    opts = RunOptions(batch_size=kw.pop("batch_size", 3), workers=2, progress=False,
                      **{k: kw.pop(k) for k in list(kw) if k in ("rank", "world_size", "stop_after_parts", "wait_timeout")})
    settings = Settings(weights="random", shard_size=shard, **{k: kw.pop(k) for k in list(kw) if k in ("face_crop",)})
    messages: list[str] = []
    outcome = run_extraction(manifest, out, kw.pop("modalities", ("face", "voice")), settings, opts,
                             say=messages.append, encoders=encoders, **kw)
    return outcome, messages


def test_store_shapes_skips_and_equality_with_the_encoders(vgg_manifest, tmp_path, encoders, face_encoder, voice_encoder):
    out = tmp_path / "store"
    outcome, messages = _run(vgg_manifest, out, encoders)
    assert outcome.finalised and outcome.complete
    feats = open_features(out)  # what training reads
    face, voice = feats["face"], feats["voice"]
    # the truncated jpg (passes Image.verify) and the silent wav fail only when decoded: skipped, not fatal
    assert face.ids.tolist() == ["Alice_Able/00000001.jpg", "Alice_Able/00000002.jpg", "Bob_Baker/00000001.jpg",
                                 "Carol_Cole/00000001.jpg"]
    assert voice.ids.tolist() == ["id10001/vidA1/00001.wav", "id10001/vidA2/00001.wav", "id10002/vidB1/00001.wav",
                                  "id10003/vidC1/00001.wav"]
    assert face.identities.tolist()[-1] == "id10003" and face.splits.tolist()[-1] == "test"
    assert face.globals(np.arange(4)).shape == (4, 512) and face.token_grid == (8, 8)
    tok, mask = face.tokens([0, 3])
    assert tok.shape == (2, 64, 896) and mask.all()
    assert voice.globals([0]).shape == (1, 192) and voice.token_dim == 1024
    rows = {r["id"]: r for r in read_manifest(vgg_manifest).rows["voice"]}
    expected = [voice_token_count(float(rows[i]["duration_s"]), 4.0) for i in voice.ids.tolist()]
    assert voice.token_counts().tolist() == expected

    report = json.loads((out / "extract_report.json").read_text())["modalities"]
    skipped = {s["id"]: s["reason"] for m in report.values() for s in m["skipped"]}
    assert set(skipped) == {"Dan_Dale/00000001.jpg", "id10004/vidD1/00001.wav"}
    assert "truncated" in skipped["Dan_Dale/00000001.jpg"] and "silent" in skipped["id10004/vidD1/00001.wav"]
    assert report["face"]["center_crop"] == ["Carol_Cole/00000001.jpg"]  # the photo without a face
    store = FeatureStore(out)
    assert store.source["random_weights"] is True and store.source["skipped"] == {"face": 1, "voice": 1}
    # provenance: which weights made the features, by content (the card of a model trained on it copies this)
    assert [store.source["encoders"][m]["weights_id"] for m in ("face", "voice")] == ["random (seed 0)"] * 2
    assert (out / "face" / "shard-00000.tokens.npy").stat().st_nlink == 2  # a hard link to the part, no copy
    assert any("estimated store size" in m for m in messages)
    n_face = len(read_manifest(vgg_manifest).rows["face"])
    assert estimate_bytes(read_manifest(vgg_manifest), "face") == n_face * (512 + 64 * 896) * 2 + n_face * 8

    # the features are exactly what the library's own calls give (up to fp16)
    photo = read_manifest(vgg_manifest).path_of("face", "Alice_Able/00000001.jpg")
    _, direct = face_encoder.embed_image(photo)
    np.testing.assert_allclose(face.globals([0])[0], direct.embeddings[0].numpy(), atol=2e-3)
    np.testing.assert_allclose(face.tokens([0])[0][0], direct.tokens[0].numpy(), atol=2e-2, rtol=2e-3)
    wav = read_manifest(vgg_manifest).path_of("voice", "id10001/vidA2/00001.wav")  # 22050 Hz: resampled
    v = voice_encoder.embed_audio(wav)
    np.testing.assert_allclose(voice.globals([1])[0], v.embedding.numpy(), atol=2e-3)
    vt, vm = voice.tokens([1])
    np.testing.assert_allclose(vt[0][vm[0]], v.tokens.numpy(), atol=2e-2, rtol=2e-3)


def test_resume_skips_finished_parts_and_two_ranks_give_the_same_store(frames_manifest, tmp_path, encoders):
    run = functools.partial(_run, face_crop="center")  # detection is tested above; this test is about parts
    a = tmp_path / "a"
    first, _ = run(frames_manifest, a, encoders, stop_after_parts=2)
    assert first.stopped_early and not (a / "store.json").exists()
    assert first.parts_written == ["face/part-00000", "face/part-00001"]
    marks = {p: (a / "parts" / p / "store.json").stat().st_mtime_ns for p in first.parts_written}
    with pytest.raises(FileNotFoundError):
        FeatureStore(a)  # an unfinished extraction never looks like a store
    (a / "parts" / "face" / "part-00002").mkdir(parents=True)  # debris of a killed part: redone
    (a / "parts" / "face" / "part-00002" / "junk.npy").write_bytes(b"x")
    second, _ = run(frames_manifest, a, encoders)
    assert second.parts_done_before == 2 and second.finalised
    assert "face/part-00000" not in second.parts_written and len(second.parts_written) == 4
    assert {p: (a / "parts" / p / "store.json").stat().st_mtime_ns for p in marks} == marks
    assert not (a / "parts" / "face" / "part-00002" / "junk.npy").exists()
    third, msgs = run(frames_manifest, a, encoders)
    assert third.complete and not third.parts_written and "nothing to do" in msgs[-1]

    # two ranks, as torchrun would start them (here one after the other): rank 0 cannot finalise first ...
    b = tmp_path / "b"
    r0, _ = run(frames_manifest, b, encoders, rank=0, world_size=2, wait_timeout=0)
    assert not r0.finalised and r0.parts_written == ["face/part-00000", "face/part-00002", "voice/part-00001"]
    assert "not finalised" in r0.message
    r1, _ = run(frames_manifest, b, encoders, rank=1, world_size=2)
    assert not r1.finalised and r1.parts_written == ["face/part-00001", "voice/part-00000", "voice/part-00002"]
    r0b, _ = run(frames_manifest, b, encoders, rank=0, world_size=2, wait_timeout=0)  # ... until they are done
    assert r0b.finalised and not r0b.parts_written
    fa, fb = open_features(a), open_features(b)
    for m in ("face", "voice"):
        assert fa[m].ids.tolist() == fb[m].ids.tolist()
        np.testing.assert_allclose(fa[m].all_globals(), fb[m].all_globals(), atol=1e-3)
    # face frames and recordings of one YouTube video share the video key: training can pair them
    index = VideoIndex(fb["voice"], fb["face"], "train")
    assert sorted(index.videos.tolist()) == ["id10001/vidA1", "id10001/vidA2", "id10002/vidB1"]

    with pytest.raises(ExtractError, match="shard_size"):
        run(frames_manifest, a, encoders, shard=3)
    again, _ = run(frames_manifest, a, encoders, shard=3, modalities=("voice",), overwrite=True)
    assert again.finalised and FeatureStore(a).modalities == ["voice"] and not (a / "face").exists()


def test_cli_errors_are_messages(vgg_manifest, tmp_path, capsys, monkeypatch):
    with pytest.raises(SystemExit) as exc:
        extract_main(["--manifest", str(tmp_path / "missing"), "--out", str(tmp_path / "o")])
    assert exc.value.code == 2 and "--manifest: folder not found" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        extract_main(["--manifest", str(vgg_manifest), "--out", str(tmp_path / "o"), "--weights", str(tmp_path / "w")])
    assert "not a folder" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert extract_main(["--manifest", str(tmp_path / "empty"), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "no manifest.json" in err and "Traceback" not in err
    monkeypatch.setenv("RANK", "2")
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert extract_main(["--manifest", str(vgg_manifest), "--out", str(tmp_path / "o"), "--weights", "random"]) == 2
    assert "RANK" in capsys.readouterr().err
    monkeypatch.delenv("RANK")
    monkeypatch.delenv("WORLD_SIZE")
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "x").write_text("x")
    assert extract_main(["--manifest", str(vgg_manifest), "--out", str(tmp_path / "busy"), "--weights", "random"]) == 2
    assert "not empty" in capsys.readouterr().err


def test_cli_run_voice_only(frames_manifest, tmp_path, capsys):
    out = tmp_path / "s"
    rc = extract_main(["--manifest", str(frames_manifest), "--out", str(out), "--weights", "random",
                       "--modalities", "voice", "--device", "cpu", "--no-progress", "--batch-size", "4"])
    assert rc == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["complete"] is True
    assert len(FeatureStore(out)["voice"]) == 4


@pytest.mark.skipif(not (SHARED / "media" / "voxceleb_subset").is_dir(), reason="../shared/data/media is absent")
def test_real_voxceleb_subset(tmp_path, encoders):
    media = SHARED / "media" / "voxceleb_subset"
    man = tmp_path / "man"
    rep = prepare_manifest("wen2021", SHARED / "protocols" / "wen2021", media, media, "voxceleb_frames", man,
                           progress=False, log=_quiet)
    assert rep["face"]["kept"] == 16 and rep["voice"]["kept"] == 2
    outcome, _ = _run(man, tmp_path / "store", encoders, shard=8, batch_size=8)
    assert outcome.finalised
    feats = open_features(tmp_path / "store")
    assert len(feats["face"]) == 16 and len(feats["voice"]) == 2
    assert np.isfinite(feats["face"].all_globals()).all()
    report = json.loads((tmp_path / "store" / "extract_report.json").read_text())["modalities"]
    assert report["face"]["skipped_count"] == 0 and report["face"]["center_crop_count"] == 0  # MTCNN finds all 16


def test_face_detection_failure_skips_only_that_image():
    """FaceWork uses FaceEncoder.detect_batch: a failing image is skipped with its reason, the rest go on."""
    import torch
    from PIL import Image

    from faa_core.encoders.face import DetectedFace, FaceFeatures, ImageDetections
    from training.ingest.extract_work import FaceWork, Loaded

    crop = np.full((160, 160, 3), 7, dtype=np.uint8)

    class FakeEncoder:
        margin = 0.0

        def detect_batch(self, images):
            far = DetectedFace(np.array([0.0, 0.0, 10.0, 10.0]), 0.99, np.zeros_like(crop))
            near = DetectedFace(np.array([40.0, 40.0, 60.0, 60.0]), 0.95, crop)
            return [ImageDetections([far, near]), ImageDetections([], ValueError("image too thin")),
                    ImageDetections([])]

        def encode(self, crops):
            n = len(crops)
            seen.append(np.stack(crops))
            return FaceFeatures(torch.ones(n, 512), torch.ones(n, 64, 896))

    seen: list[np.ndarray] = []
    images = [Image.new("RGB", (100, 100)), Image.new("RGB", (4000, 4)), Image.new("RGB", (100, 100))]
    batch = [Loaded({"id": f"p{i}.jpg"}, im) for i, im in enumerate(images)] + [Loaded({"id": "bad.jpg"}, reason="truncated")]
    done, skipped, centred = FaceWork(FakeEncoder(), "detect-or-center", 0.6).run(batch)
    assert [r["id"] for r, _, _ in done] == ["p0.jpg", "p2.jpg"]
    assert skipped == [("bad.jpg", "truncated"), ("p1.jpg", "face detection failed: image too thin")]
    assert centred == ["p2.jpg"]
    assert np.array_equal(seen[0][0], crop)  # the face nearest the centre, the encoder's own crop
    done, skipped, centred = FaceWork(FakeEncoder(), "detect", 0.6).run(batch[:3])
    assert [r["id"] for r, _, _ in done] == ["p0.jpg"] and centred == []
    assert skipped[-1] == ("p2.jpg", "no face detected (MTCNN)")
