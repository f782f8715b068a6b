"""The Gradio demo end to end: a real server on 127.0.0.1 driven with gradio_client.

Random encoder weights and generated media: one good request, then every kind
of bad input (no face, silent / short / long / clipped / corrupt audio,
unsupported and corrupt images, huge images, more than 8 faces or images, an
oversized upload), checking that the page says what went wrong, that the
other faces are still scored and that the server keeps answering.
"""

from __future__ import annotations

import html
import threading
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from PIL import Image

import app
from app_ui import candidate_tile, heatmap_overlay, probability_bars, voice_attention_figure
from app_fixtures import free_port, random_pipeline, start_app
from media_fixtures import synthetic_voice

UPLOAD_LIMIT = "2mb"
# generous HTTP timeouts: on a loaded CI machine an upload can wait behind scoring (httpx's default is 5 s)
HTTPX = {"timeout": 120}
# gradio 6.31 itself uses a pandas option that pandas 3 deprecates
pytestmark = pytest.mark.filterwarnings("ignore::pandas.errors.Pandas4Warning")


@pytest.fixture(scope="module")
def pipeline(small_checkpoint, face_encoder, voice_encoder, random_weights):
    return random_pipeline(small_checkpoint, face_encoder, voice_encoder, random_weights)


@pytest.fixture(scope="module")
def server(pipeline, small_checkpoint):
    demo, url = start_app(pipeline, small_checkpoint, max_file_size=UPLOAD_LIMIT)
    yield url
    demo.close()


@pytest.fixture(scope="module")
def client(server, tmp_path_factory):
    from gradio_client import Client

    return Client(server, verbose=False, analytics_enabled=False, httpx_kwargs=HTTPX,
                  download_files=str(tmp_path_factory.mktemp("downloads")))


@pytest.fixture(scope="module")
def bad_media(tmp_path_factory, face_image_path) -> dict[str, Path]:
    """One file per kind of bad input."""
    d = tmp_path_factory.mktemp("bad")
    out = {}
    out["silent"] = d / "silent.wav"
    sf.write(out["silent"], np.zeros(32000, np.float32), 16000)
    out["short"] = d / "short.wav"
    sf.write(out["short"], synthetic_voice(0.5, 16000), 16000)
    out["long"] = d / "long.wav"  # 61 s at 8 kHz: under the upload limit, over the 60 s limit
    sf.write(out["long"], synthetic_voice(61.0, 8000), 8000, subtype="PCM_16")
    out["clipped"] = d / "clipped.wav"
    sf.write(out["clipped"], np.clip(10 * synthetic_voice(3.0, 16000), -1, 1), 16000, subtype="PCM_16")
    out["corrupt_audio"] = d / "corrupt.wav"
    out["corrupt_audio"].write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt " + bytes(range(256)) * 8)
    out["image_as_audio"] = face_image_path
    out["text_as_image"] = d / "notes.jpg"
    out["text_as_image"].write_text("this is not an image")
    out["truncated_image"] = d / "truncated.png"
    data = face_image_path.read_bytes()
    out["truncated_image"].write_bytes(data[: len(data) // 2])
    out["huge_image"] = d / "huge.png"  # 45 megapixels, a few kB on disk
    Image.new("1", (9000, 5000)).save(out["huge_image"])
    out["oversized"] = d / "oversized.png"  # over the upload limit
    out["oversized"].write_bytes(np.random.default_rng(0).integers(0, 255, 3 * 2**20, dtype=np.uint8).tobytes())
    return out


def match(client, voice, images, webcam=None) -> dict:
    """Call /match and return the outputs by name."""
    from gradio_client import handle_file

    out = client.predict(
        handle_file(str(voice)) if voice else None,
        [handle_file(str(p)) for p in images],
        handle_file(str(webcam)) if webcam else None,
        api_name="/match",
    )
    names = ("status", "ranking", "gallery", "bars", "voice_plot", "summary")
    return dict(zip(names, out))


# -- the good case ------------------------------------------------------------------
def test_good_request_ranks_every_face_with_heatmaps(client, speech_wav, face_image_path, group_image_path):
    out = match(client, speech_wav, [face_image_path, group_image_path])
    s = out["summary"]
    assert s["ok"] and s["errors"] == []
    faces = s["faces"]
    assert len(faces) >= 3  # one face + two in the group photo
    probs = [f["probability"] for f in faces]
    assert probs == sorted(probs, reverse=True)
    assert [f["rank"] for f in faces] == list(range(1, len(faces) + 1))
    assert all(0 <= f["probability"] <= 1 and -1 <= f["cosine"] <= 1 for f in faces)
    assert {f["label"] for f in faces} >= {"face.png", "group.png #1", "group.png #2"}
    assert all(f["has_heatmap"] for f in faces)
    assert f"{faces[0]['probability']:.3f}" in out["ranking"]
    # one gallery tile per face: the 160x160 crop, a gap and the heatmap overlay
    assert len(out["gallery"]) == len(faces)
    tile = np.asarray(Image.open(out["gallery"][0]["image"]))
    assert tile.shape[0] == 160 and tile.shape[1] > 2 * 160
    assert out["gallery"][0]["caption"].startswith("#1 ")
    assert out["bars"].startswith("<svg") and f"{faces[0]['probability']:.3f}" in out["bars"]
    assert out["voice_plot"].startswith("<svg") and "Which moments of the voice" in out["voice_plot"]
    assert any("RANDOM ENCODER WEIGHTS" in w for w in s["model_warnings"])
    assert s["voice"]["tokens"] >= 1


def test_webcam_snapshot_is_a_candidate(client, speech_wav, face_image_path):
    out = match(client, speech_wav, [], webcam=face_image_path)
    assert [f["image"] for f in out["summary"]["faces"]] == [app.WEBCAM_NAME]


def test_page_shows_checkpoint_weights_and_warnings(server, small_checkpoint):
    import httpx

    config = httpx.get(server.rstrip("/") + "/config", timeout=30).text
    assert str(small_checkpoint) in config
    assert "RANDOM (untrained InceptionResnetV1)" in config
    assert "RANDOM ENCODER WEIGHTS" in config and "SYNTHETIC CHECKPOINT" in config
    assert "How to read this" in config


# -- bad audio: a message, nothing scored, the server stays up ----------------------
@pytest.mark.parametrize("kind, error_type, words", [
    ("silent", "SilentAudioError", "silent"),
    ("short", "AudioTooShortError", "at least 1.0 s"),
    ("long", "AudioTooLongError", "the limit is 60 s"),
    ("corrupt_audio", "UnreadableMediaError", "corrupt"),
    ("image_as_audio", "UnsupportedMediaError", "not a format"),
])
def test_bad_audio_is_explained(client, bad_media, face_image_path, kind, error_type, words):
    out = match(client, bad_media[kind], [face_image_path])
    s = out["summary"]
    assert not s["ok"] and s["faces"] == [] and out["gallery"] == []
    assert s["error_types"] == [error_type], s
    assert words in s["errors"][0]
    assert words in out["status"] and "Nothing was scored" in out["status"]


def test_clipped_audio_warns_and_still_scores(client, bad_media, face_image_path):
    out = match(client, bad_media["clipped"], [face_image_path])
    s = out["summary"]
    assert s["ok"] and len(s["faces"]) == 1
    assert any("clipped" in w for w in s["warnings"])
    assert "clipped" in out["status"]


# -- bad images: named in a message, the valid faces are still scored --------------
@pytest.mark.parametrize("kind, error_type, words", [
    ("text_as_image", "UnsupportedMediaError", "not an image format"),
    ("truncated_image", "UnreadableMediaError", "truncated or corrupt"),
    ("huge_image", "ImageTooLargeError", "the limit is"),
])
def test_bad_image_reported_others_scored(client, speech_wav, face_image_path, bad_media, kind, error_type, words):
    bad = bad_media[kind]
    out = match(client, speech_wav, [bad, face_image_path])
    s = out["summary"]
    assert s["ok"] and [f["image"] for f in s["faces"]] == ["face.png"]
    assert s["error_types"] == [error_type]
    assert bad.name in s["errors"][0] and words in s["errors"][0]
    assert bad.name in out["status"]


def test_image_without_face_is_named(client, speech_wav, face_image_path, blank_image_path):
    out = match(client, speech_wav, [blank_image_path, face_image_path])
    s = out["summary"]
    assert s["ok"] and len(s["faces"]) == 1
    assert s["error_types"] == ["NoFaceError"]
    assert f"no face found in image {blank_image_path.name}" in out["status"]


def test_no_face_anywhere(client, speech_wav, blank_image_path):
    out = match(client, speech_wav, [blank_image_path])
    s = out["summary"]
    assert not s["ok"] and s["error_types"] == ["NoFaceError"]
    assert blank_image_path.name in out["status"]


def test_more_than_eight_faces_keeps_eight(client, speech_wav, group_image_path):
    out = match(client, speech_wav, [group_image_path] * 5)  # 10 faces
    s = out["summary"]
    assert len(s["faces"]) == 8 and len(out["gallery"]) == 8
    assert any("10 faces were found; at most 8" in w for w in s["warnings"])


def test_more_than_eight_images_uses_eight(client, speech_wav, face_image_path):
    out = match(client, speech_wav, [face_image_path] * 9)
    s = out["summary"]
    assert len(s["faces"]) == 8
    assert any("9 images were given; at most 8" in w for w in s["warnings"])
    assert "9 images were given" in out["status"]


def test_one_path_given_alone_is_one_image(face_image_path):
    """A library caller may pass one path where the page sends a list: one image, not one per character."""
    assert app.collect_images(str(face_image_path), None) == ([str(face_image_path)], [face_image_path.name], [])
    assert app.collect_images(face_image_path, "snap.png") == (
        [str(face_image_path), "snap.png"], [face_image_path.name, app.WEBCAM_NAME], [])


def test_missing_inputs_are_explained(client, face_image_path, speech_wav):
    out = match(client, None, [face_image_path])
    assert out["summary"]["error_types"] == ["MissingInput"] and "No voice" in out["status"]
    out = match(client, speech_wav, [])
    assert "No face images" in out["status"]


def test_oversized_upload_refused_server_stays_up(client, bad_media, speech_wav, face_image_path):
    with pytest.raises(Exception):
        match(client, speech_wav, [bad_media["oversized"]])
    assert match(client, speech_wav, [face_image_path])["summary"]["ok"]


def test_unexpected_error_is_generic_and_logged(client, pipeline, speech_wav, face_image_path, monkeypatch, caplog):
    def boom(*a, **k):
        raise RuntimeError("internal detail")

    monkeypatch.setattr(pipeline, "score", boom)
    with caplog.at_level("ERROR", logger="faa_app"):
        out = match(client, speech_wav, [face_image_path])
    assert out["summary"]["error_types"] == ["InternalError"]
    assert "went wrong" in out["status"] and "internal detail" not in out["status"]
    assert "internal detail" in caplog.text
    monkeypatch.undo()
    assert match(client, speech_wav, [face_image_path])["summary"]["ok"]


def test_concurrent_clients_all_served(server, speech_wav, face_image_path, tmp_path):
    from gradio_client import Client

    results, errors = [], []

    def one(i: int) -> None:
        try:
            c = Client(server, verbose=False, analytics_enabled=False, httpx_kwargs=HTTPX,
                       download_files=str(tmp_path / str(i)))
            results.append(match(c, speech_wav, [face_image_path])["summary"])
        except Exception as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert errors == [], [repr(e) for e in errors]
    assert len(results) == 3
    probs = {round(r["faces"][0]["probability"], 5) for r in results}
    assert len(probs) == 1  # same input, same answer whatever the interleaving


# -- start-up -------------------------------------------------------------------------
def test_offline_pretrained_falls_back_to_random(small_checkpoint, tmp_path, monkeypatch):
    monkeypatch.delenv("FAA_FACE_WEIGHTS", raising=False)
    monkeypatch.delenv("FAA_VOICE_WEIGHTS", raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    pipe, info = app.load_models(small_checkpoint, "pretrained", warmup=False)
    assert pipe.random_encoders
    assert "offline mode is on" in info.weights_error
    assert info.warnings[0].startswith("The pretrained encoder weights could not be loaded")
    assert info.weights_error in info.warnings[0]
    demo = app.build_demo(pipe, info)
    banner = next(b for b in demo.blocks.values() if getattr(b, "elem_id", None) == "faa-model-warning")
    assert html.escape(info.weights_error) in banner.value
    assert banner.visible


def test_explicit_weights_folder_missing_fails(small_checkpoint, tmp_path):
    from faa_core.errors import WeightsUnavailableError

    with pytest.raises(WeightsUnavailableError):
        app.load_models(small_checkpoint, str(tmp_path), warmup=False)


def test_cli_defaults(monkeypatch):
    monkeypatch.delenv("FAA_CHECKPOINT", raising=False)
    monkeypatch.delenv("FAA_WEIGHTS", raising=False)
    args = app.build_parser().parse_args([])
    assert args.weights == "pretrained" and not args.share
    assert Path(args.checkpoint) == app.DEFAULT_CHECKPOINT
    assert args.host is None and args.port is None  # Gradio's defaults, or the Space's variables
    monkeypatch.setenv("FAA_CHECKPOINT", "user/repo")
    assert app.build_parser().parse_args([]).checkpoint == "user/repo"
    args = app.build_parser().parse_args(["--checkpoint", "user/repo", "--weights", "random", "--port", "7999"])
    assert (args.checkpoint, args.weights, args.port) == ("user/repo", "random", 7999)


def test_missing_checkpoint_exits_with_message(tmp_path, capsys):
    assert app.main(["--checkpoint", str(tmp_path / "nothing"), "--weights", "random"]) == 2
    assert "error:" in capsys.readouterr().err


# -- drawing helpers ------------------------------------------------------------------
def test_tile_helpers_shapes():
    rng = np.random.default_rng(0)
    crop = rng.integers(0, 255, (160, 160, 3), dtype=np.uint8)
    heat = rng.random((160, 160))
    assert heatmap_overlay(crop, heat).shape == (160, 160, 3)
    assert candidate_tile(crop, None).shape == (160, 160, 3)
    assert candidate_tile(crop, heat).shape[1] > 320


def _svg_root(markup: str):
    import xml.etree.ElementTree as ET

    root = ET.fromstring(markup)  # well-formed XML, or this raises
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    return root


def _svg_all(root, tag: str) -> list:
    return root.findall(f".//{{http://www.w3.org/2000/svg}}{tag}")


def test_probability_bars_are_svg_with_one_bar_per_face_scaled_to_the_probability():
    root = _svg_root(probability_bars(["a", "b", "c"], [0.7, 0.2, 0.0]))
    bars = _svg_all(root, "rect")[1:]  # the first rect is the background
    assert len(bars) == 2  # p = 0 draws no bar
    widths = [float(b.get("width")) for b in bars]
    assert widths[0] / widths[1] == pytest.approx(0.7 / 0.2, rel=1e-3)
    assert [b.get("fill") for b in bars] == ["#d9480f", "#868e96"]  # the best one highlighted
    texts = [t.text for t in _svg_all(root, "text")]
    assert {"a", "b", "c", "0.700", "0.200", "0.000"} <= set(texts)
    with pytest.raises(ValueError, match="2 labels but 1 probabilities"):
        probability_bars(["a", "b"], [0.5])


def test_figures_escape_user_file_names():
    """Labels are file names a user chose; the markup goes into the page, so they must not become tags."""
    evil = '<img src=x onerror="alert(1)">.jpg'
    markup = probability_bars([evil], [0.5])
    assert "<img" not in markup and "&lt;img" in markup
    root = _svg_root(markup)
    assert evil in [t.text for t in _svg_all(root, "text")]
    spans = np.array([[0, 0.25], [0.25, 0.5]])
    fig = voice_attention_figure(synthetic_voice(0.5, 16000), 16000, spans, np.array([0.3, 0.7]), evil)
    assert "<img" not in fig
    _svg_root(fig)


def test_long_labels_are_shortened_in_the_middle_and_kept_whole_in_the_tooltip():
    long = "a-very-long-photo-name-from-a-phone-camera-2026-12-03-18-00-00.jpg"
    root = _svg_root(probability_bars([long], [0.4]))
    shown = [t.text for t in _svg_all(root, "text") if t.text and "…" in t.text]
    assert len(shown) == 1 and shown[0].endswith(".jpg") and len(shown[0]) < len(long)
    assert any(long in (t.text or "") for t in _svg_all(root, "title"))


def test_voice_attention_figure_draws_a_bar_per_attended_token_and_a_line_per_other_face():
    spans = np.array([[0, 0.25], [0.25, 0.5]])
    root = _svg_root(voice_attention_figure(
        synthetic_voice(0.5, 16000), 16000, spans, np.array([0.3, 0.7]), "a", [np.array([0.5, 0.5])]))
    bars = _svg_all(root, "rect")[1:]
    assert len(bars) == 2
    heights = [float(b.get("height")) for b in bars]
    assert heights[1] / heights[0] == pytest.approx(0.7 / 0.3, rel=1e-2)
    assert len(_svg_all(root, "polyline")) == 1
    wave = _svg_all(root, "path")[0].get("d")
    assert wave.count("M") == 740  # one stroke per column of the 740-px panel
    _svg_root(voice_attention_figure(np.zeros(0, np.float32), 16000, spans[:0], None, "a"))  # no samples: still drawn
    # no attention (a checkpoint without it): the waveform and the time axis only
    root = _svg_root(voice_attention_figure(synthetic_voice(0.5, 16000), 16000, spans, None, "a"))
    assert len(_svg_all(root, "rect")) == 1 and "no voice attention" in root.get("aria-label")


# -- nothing a user sends gets a traceback, and no server path in any message ----------------
def test_non_image_in_the_webcam_slot_is_explained(client, speech_wav, face_image_path, bad_media):
    """Gradio used to open the snapshot with Pillow itself and fail before the app saw it."""
    out = match(client, speech_wav, [face_image_path], webcam=bad_media["text_as_image"])
    s = out["summary"]
    assert s["ok"] and [f["image"] for f in s["faces"]] == ["face.png"]
    assert s["error_types"] == ["UnsupportedMediaError"]
    assert s["errors"][0].startswith(f"image {app.WEBCAM_NAME} is not an image format")


def test_webcam_data_url_is_read_like_an_upload(pipeline, face_image_path, tmp_path):
    import base64

    from gradio.data_classes import FileData

    from app_ui.inputs import WebcamImage

    cam = WebcamImage(sources=["webcam"], type="filepath", image_mode=None)
    assert cam.get_block_name() == "image"
    url = "data:image/png;base64," + base64.b64encode(face_image_path.read_bytes()).decode()
    path = cam.preprocess(FileData(path="", url=url))
    assert Path(path).read_bytes() == face_image_path.read_bytes()
    text = tmp_path / "t.txt"
    text.write_text("not an image")
    assert cam.preprocess(FileData(path=str(text), orig_name="t.png")) == str(text)
    assert cam.preprocess(None) is None


def test_too_thin_photo_reported_other_photo_scored(client, speech_wav, face_image_path, tmp_path):
    thin = tmp_path / "strip.png"
    Image.new("RGB", (100_000, 16), (90, 120, 160)).save(thin)
    s = match(client, speech_wav, [thin, face_image_path])["summary"]
    assert s["ok"] and [f["image"] for f in s["faces"]] == ["face.png"]
    assert s["error_types"] == ["ImageTooThinError"] and "too thin" in s["errors"][0]


def test_messages_hold_no_server_paths(client, pipeline, speech_wav, face_image_path, tmp_path):
    """0-byte uploads named their temp path; upload names with folders are cut to the file name."""
    import json
    import tempfile

    empty_wav, empty_png = tmp_path / "empty.wav", tmp_path / "empty.png"
    empty_wav.write_bytes(b"")
    empty_png.write_bytes(b"")
    out = match(client, empty_wav, [face_image_path])
    assert "empty.wav" not in out["status"] and "the recording" in out["status"] and "0 bytes" in out["status"]
    out2 = match(client, speech_wav, [empty_png, face_image_path])
    assert out2["summary"]["errors"] == ["image file is empty (0 bytes): empty.png"]
    server_dirs = {tempfile.gettempdir(), str(tmp_path), "/tmp/", "gradio"}
    for o in (out, out2):
        text = o["status"] + json.dumps(o["summary"])
        assert not any(d in text for d in server_dirs), text
    # names as a browser or client may send them, with folders (the server keeps them under its temp path)
    upload_dir = tmp_path / "gradio" / "0123abcd"
    upload_dir.mkdir(parents=True)
    odd = upload_dir / "C:\\Users\\me\\photo.jpg"
    odd.write_bytes(b"")
    view = app.run_match(pipeline, str(empty_wav), [str(odd)], None)
    assert "empty (0 bytes): the recording" in view.status and str(tmp_path) not in view.status
    view = app.run_match(pipeline, str(speech_wav), [str(odd), str(face_image_path)], None)
    assert view.summary["errors"] == ["image file is empty (0 bytes): photo.jpg"]
    assert str(tmp_path) not in view.status + json.dumps(view.summary)


def test_gradio_temp_files_are_deleted(pipeline, small_checkpoint, speech_wav, face_image_path, tmp_path):
    """Every request leaves uploads and result images in Gradio's temp folder; delete_cache bounds it."""
    import time

    from gradio_client import Client, handle_file

    demo = app.build_demo(pipeline, app.describe_models(pipeline, str(small_checkpoint), "random"), delete_cache=(1, 2))
    url = app.serve(demo, host="127.0.0.1", port=free_port(), block=False, quiet=True)
    try:
        c = Client(url, verbose=False, analytics_enabled=False, httpx_kwargs=HTTPX, download_files=str(tmp_path))
        for _ in range(2):
            c.predict(handle_file(str(speech_wav)), [handle_file(str(face_image_path))], None, api_name="/match")
        files = {f for s in demo.temp_file_sets for f in s if Path(f).is_file()}
        size = sum(Path(f).stat().st_size for f in files)
        assert len(files) >= 3 and size > 50_000  # the uploads plus the gallery tile (the figures are inline SVG)
        deadline = time.time() + 30
        while time.time() < deadline and any(Path(f).exists() for f in files):
            time.sleep(0.5)
        assert not any(Path(f).exists() for f in files)
    finally:
        demo.close()


@pytest.mark.parametrize("explicit", [None, "7"])
def test_monitoring_summary_is_not_rebuilt_after_every_event(pipeline, small_checkpoint, monkeypatch, explicit):
    """Gradio's default rebuilds its /monitoring summary (a pandas group-by) after every event; serve() spaces it
    out, and a frequency the host set explicitly is kept."""
    monkeypatch.setenv("GRADIO_ANALYTICS_CACHE_FREQUENCY", explicit or "")  # restored after the test
    if explicit is None:
        monkeypatch.delenv("GRADIO_ANALYTICS_CACHE_FREQUENCY")
    demo = app.build_demo(pipeline, app.describe_models(pipeline, str(small_checkpoint), "random"))
    monkeypatch.setattr(demo, "launch", lambda **kw: (None, "http://127.0.0.1:1/", None))  # the queue, not a server
    app.serve(demo, block=False, quiet=True)
    queue = demo._queue
    assert queue.ANAYLTICS_CACHE_FREQUENCY == (app.MONITORING_SUMMARY_EVERY if explicit is None else 7)
    records = [{"function": "match", "status": "success", "process_time": 0.1 * (i + 1)} for i in range(3)]
    queue.events_recorded = queue.ANAYLTICS_CACHE_FREQUENCY - 1  # one event short of a rebuild
    assert queue.compute_analytics_summary(records) == {"functions": {}}
    queue.events_recorded += 1
    assert queue.compute_analytics_summary(records)["functions"]["match"]["total_requests"] == 3
