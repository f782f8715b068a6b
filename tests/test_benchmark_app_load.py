"""The load benchmark's page-like HTTP client gets the same answer as gradio_client from a served app."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from app_fixtures import random_pipeline, start_app

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
pytestmark = pytest.mark.filterwarnings("ignore::pandas.errors.Pandas4Warning")


@pytest.fixture(scope="module")
def server(small_checkpoint, face_encoder, voice_encoder, random_weights):
    demo, url = start_app(random_pipeline(small_checkpoint, face_encoder, voice_encoder, random_weights),
                          small_checkpoint)
    yield demo, url
    demo.close()


def test_http_client_result_equals_gradio_clients(server, speech_wav, face_image_path, group_image_path, tmp_path):
    import app_load

    demo, server = server
    photos = [face_image_path, group_image_path]
    http = app_load.HttpClient(server, downloads=tmp_path)
    out = http.match(speech_wav, photos)
    reference = app_load.make_client(server, tmp_path, "gradio_client")
    ref = reference.predict(*_gradio_inputs(speech_wav, photos), api_name="/match")
    assert len(out) == len(ref) == 6
    summary, ref_summary = out[-1], ref[-1]
    assert summary["ok"] and summary["errors"] == []
    assert [(f["label"], f["probability"]) for f in summary["faces"]] == \
        [(f["label"], f["probability"]) for f in ref_summary["faces"]]
    assert out[3].startswith("<svg") and out[3] == ref[3]  # the chart arrives inline
    assert len(out[2]) == len(summary["faces"])  # one gallery tile per face (fetched: downloads is set)
    sent = http.photos.copy()
    sessions = set(demo.server_app.state_holder.session_data)
    seconds, error = app_load.one_request(http, speech_wav, photos)
    assert error is None and seconds > 0
    assert http.photos == sent  # the photos went up once and are referred to by their server path since
    # one session per client, as one open page: its requests did not make a new session state each
    assert http.session_hash in sessions and set(demo.server_app.state_holder.session_data) == sessions
    for reupload, uploads_per_request in ((False, 1), (True, 3)):
        fresh = app_load.HttpClient(server, reupload_photos=reupload)
        fresh.match(speech_wav, photos)
        uploaded = []
        upload = fresh.upload
        fresh.upload = lambda path: uploaded.append(path) or upload(path)
        assert fresh.match(speech_wav, photos)[-1]["faces"] == summary["faces"]
        assert len(uploaded) == uploads_per_request


def test_http_client_reports_an_apps_error_as_an_error(server, speech_wav, tmp_path):
    import app_load

    _, server = server
    bad = tmp_path / "notes.txt"
    bad.write_text("not an image")
    seconds, error = app_load.one_request(app_load.HttpClient(server), speech_wav, [bad])
    assert error is not None and "notes.txt" in error


def _gradio_inputs(voice: Path, photos: list[Path]) -> tuple:
    from gradio_client import handle_file

    return handle_file(str(voice)), [handle_file(str(p)) for p in photos], None


def test_handler_throughput_runs_the_handler_on_that_many_threads_at_once():
    """The closed-loop floor is only a floor if the handler really ran ``workers`` at a time, every call counted."""
    import threading

    import app_load

    workers, calls = 3, 4
    together = threading.Barrier(workers, timeout=10)  # breaks (and the call raises) unless all run at once
    seen: list[str] = []

    class FakeApp:
        @staticmethod
        def run_match(pipeline, voice, paths, webcam):
            assert (pipeline, voice, paths, webcam) == ("pipe", "voice.wav", ["a.jpg"], None)
            together.wait()
            seen.append(threading.current_thread().name)

    bench = object.__new__(app_load.InProcessPipeline)
    bench.app, bench.pipeline, bench.voice, bench.paths = FakeApp, "pipe", Path("voice.wav"), ["a.jpg"]
    rate = bench.handler_throughput(workers, calls)
    assert len(seen) == workers * calls and len(set(seen)) == workers
    assert rate > 0
