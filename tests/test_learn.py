"""The "Learn how FAA works" tab: choices, the background runner, the pictures and the /learn API.

The API tests train for real (FAA on the tab's `tiny` world, about a minute
each on a 2-core CPU) through a real server driven with gradio_client: the
full method must end with a higher validation AUC than the same run with
diverse positives off and clearly above the untrained model, a second caller
waits in the queue and then gets its own result, the Match tab answers
while a run trains, Stop ends a run, and bad choices get a message and a
JSON "error" instead of a traceback.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

import app
from app_fixtures import free_port, random_pipeline

pytestmark = pytest.mark.filterwarnings("ignore::pandas.errors.Pandas4Warning")  # raised inside gradio 6.31
HTTPX = {"timeout": 300}


# -- choices ------------------------------------------------------------------------------------------
def test_a_choice_becomes_a_job_with_the_switch_overrides():
    from training.learn import make_job

    job = make_job("tiny", "FAA", ["progressive clustering", "diverse positives"], 3)
    assert job.configs == ("faa", "learn_tiny")
    # switches in the menu's order, whatever order they came in; then the seed
    assert job.switches_off == ("diverse positives", "progressive clustering")
    assert job.overrides == ("pairs.diverse_positives=false", "clustering.fixed=true", "seed=3")
    cfg = job.config()
    assert cfg["pairs"]["diverse_positives"] is False and cfg["clustering"]["fixed"] is True and cfg["seed"] == 3
    assert cfg["schedule"]["max_rounds"] == 8 and cfg["validation"]["scoring"] == "cosine"
    assert make_job("tiny", "FAA", [], "2.0").seed == 2
    sl = make_job("tiny", "SL", ["FVM"], 0)  # SL has no FAA switches: ignored, and said so
    assert sl.switches_off == () and sl.overrides == ("seed=0",) and "ignored" in sl.notes[0]


@pytest.mark.parametrize("world, method, switches, seed, fragment", [
    ("atlantis", "FAA", [], 0, "unknown world 'atlantis'"),
    ("tiny", "CLIP", [], 0, "unknown method 'CLIP'"),
    ("tiny", "FAA", ["dropout"], 0, "unknown switch 'dropout'"),
    ("tiny", "FAA", "FVM", 0, "switches must be a list"),
    ("tiny", "FAA", [], 1.5, "seed must be a whole number"),
    ("tiny", "FAA", [], "abc", "seed must be a whole number"),
    ("tiny", "FAA", [], None, "seed must be a whole number"),
    ("tiny", "FAA", [], -1, "seed must be between 0"),
])
def test_bad_choices_say_what_to_choose(world, method, switches, seed, fragment):
    from training.learn import ChoiceError, make_job

    with pytest.raises(ChoiceError, match=fragment):
        make_job(world, method, switches, seed)


def test_worlds_offered_start_with_tiny_and_all_train_in_time():
    from training.learn import settings, world_names
    from training.learn.choices import _train_videos

    names = world_names()
    assert names[0] == "tiny"
    assert "small" not in names and "real-dims" not in names  # thousands of training videos: not in a minute
    limit = settings()["worlds"]["max_train_videos"]
    assert all(_train_videos(n) <= limit for n in names)
    assert _train_videos("tiny") == 720  # the tab's tiny: 240 training people x 3 videos


# -- pictures -------------------------------------------------------------------------------------------
def _rows(n: int) -> list[dict]:
    return [{"round": r, "loss": 5 - 0.1 * r, "fvc": 4.0, "fvm": 0.6, "clusters": 200 - 10 * r, "purity": 0.3 + 0.02 * r,
             "nmi": 0.5, "val_auc": 0.55 + 0.01 * r, "val_auc_cosine": 0.55 + 0.01 * r} for r in range(n)]


def test_pictures_render_with_and_without_data():
    from app_ui.learn_figures import attention_maps, embedding_projection, run_overlay, training_curves

    empty, full = training_curves([], 8), training_curves(_rows(5), 8, 0.9, 0.5, 0.8, title="FAA")
    assert empty.ndim == 3 and empty.shape[2] == 3 and full.shape == empty.shape
    assert not np.array_equal(empty, full)
    proj = {"xy": [[0, 0], [1, 1], [2, 0]], "modality": ["voice", "face", "face"], "identity": [0, 1, 0], "gender": [0, 1, 0]}
    assert embedding_projection(None, None).shape == embedding_projection(proj, proj).shape
    ex = {"probability": 0.7, "face_attention": [[0.1, 0.2], [0.3, 0.4]], "face_region": [[False, True], [False, True]],
          "voice_attention": [0.5, 0.3, 0.2], "voiced": [True, False, True]}
    two = attention_maps([ex, ex], (2, 2))
    assert two.shape[0] > attention_maps([ex], (2, 2)).shape[0]
    runs = [{"label": "FAA", "metrics": _rows(4), "val_auc": 0.6, "oracle_val_auc": 0.9},
            {"label": "FAA without diverse positives", "metrics": _rows(3), "val_auc": 0.58}]
    assert run_overlay(runs).shape == run_overlay([]).shape


def test_status_and_table_text():
    from app_ui.learn_text import learn_status_markdown, test_table_markdown

    text = learn_status_markdown("FAA (seed 0, world tiny)", "training", 12.3, _rows(3), 8,
                                 {"untrained_val_auc": 0.51, "oracle_val_auc": 0.92, "probe": 0.85})
    assert "round **3 / 8**" in text and "180 clusters" in text and "purity 0.34" in text
    assert "validation AUC **0.570** (best so far 0.570)" in text and "oracle **0.920**" in text and "probe ceiling 0.850" in text
    table = test_table_markdown({"verify_v2f_test": 0.66}, {"verify_v2f_test": 0.92}, 0.65, 0.92, 0.52)
    assert "| verify_v2f_test | 0.660 | 0.920 |" in table
    assert "| validation AUC (best round) (untrained 0.520) | 0.650 | 0.920 |" in table


# -- the runner ---------------------------------------------------------------------------------------------
def test_runner_stops_a_run_at_its_time_limit_and_keeps_only_the_last_runs(tmp_path):
    from training.learn import LearnRunner, make_job

    runner = LearnRunner(tmp_path, limits={"max_seconds": 2, "keep_runs": 1})
    job = make_job("tiny", "FAA", [], 0)
    for _ in range(2):
        last = runner.run(job, "visitor")
        assert last.phase == "stopped" and "2 s limit" in last.message
        assert last.summary()["phase"] == "stopped" and last.summary()["test"] == {}
    runs = sorted((tmp_path / "runs").iterdir())
    assert len(runs) == 2  # the older of the two is deleted when a third starts
    runner.run(job, "visitor")
    assert len(list((tmp_path / "runs").iterdir())) == 2 and runs[0] not in list((tmp_path / "runs").iterdir())
    assert not runner.busy and runner.history("visitor") == []  # stopped runs are not offered for the overlay
    spare = runner._spare
    assert spare is not None and spare.poll() is None  # a preloaded worker waits for the next run
    runner.stop_all()
    assert spare.poll() is not None


# -- the page and its API -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def learn_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("learn")


@pytest.fixture(scope="module")
def server(small_checkpoint, face_encoder, voice_encoder, random_weights, learn_root):
    import training.learn.runner as runner_module
    from training.learn import LearnRunner

    saved = runner_module._DEFAULT
    runner_module._DEFAULT = LearnRunner(learn_root)
    pipeline = random_pipeline(small_checkpoint, face_encoder, voice_encoder, random_weights)
    demo = app.build_demo(pipeline, app.describe_models(pipeline, str(small_checkpoint), "random"))
    url = app.serve(demo, host="127.0.0.1", port=free_port(), block=False, quiet=True)
    yield url
    demo.close()
    runner_module._DEFAULT.stop_all()
    runner_module._DEFAULT = saved


def _client(url: str, tmp_path_factory):
    from gradio_client import Client

    return Client(url, verbose=False, analytics_enabled=False, httpx_kwargs=HTTPX,
                  download_files=str(tmp_path_factory.mktemp("downloads")))


@pytest.mark.parametrize("world, method, switches, seed, fragment", [
    ("atlantis", "FAA", [], 0, "unknown world"),
    ("tiny", "CLIP", [], 0, "unknown method"),
    ("tiny", "FAA", ["dropout"], 0, "unknown switch"),
    ("tiny", "FAA", [], 0.5, "seed must be a whole number"),
])
def test_bad_choice_over_the_api_gets_a_message_and_an_error(server, tmp_path_factory, world, method, switches, seed, fragment):
    out = _client(server, tmp_path_factory).predict(world, method, switches, seed, api_name="/learn")
    status, summary = out[0], out[-1]
    assert "Nothing was trained" in status and fragment in status
    assert fragment in summary["error"] and "Traceback" not in status


def test_full_faa_beats_no_diverse_positives_and_a_second_caller_waits(server, tmp_path_factory):
    from gradio_client.utils import Status

    full_client, ablation_client = _client(server, tmp_path_factory), _client(server, tmp_path_factory)
    full = full_client.submit("tiny", "FAA", [], 0, api_name="/learn")
    time.sleep(1.0)
    ablation = ablation_client.submit("tiny", "FAA", ["diverse positives"], 0, api_name="/learn")
    queued_ranks, match_seconds = [], None
    while not full.done():
        st = ablation.status()
        if st.code == Status.IN_QUEUE and st.rank is not None:
            queued_ranks.append(st.rank)
        if match_seconds is None and len(full.outputs()) >= 2:  # the first one is training now
            t0 = time.perf_counter()
            match = _client(server, tmp_path_factory).predict(None, None, None, api_name="/match")
            match_seconds = time.perf_counter() - t0
            assert "No voice" in match[0]
        time.sleep(0.5)
    first = full.result()[-1]
    assert queued_ranks and min(queued_ranks) == 0  # the second caller waited, first in line
    assert match_seconds is not None and match_seconds < 30  # the Match tab did not wait for the training
    second = ablation.result()[-1]
    streamed = full.outputs()
    assert len(streamed) >= 8  # one output per round at least, not just the final one
    assert [s[-1]["phase"] for s in streamed][-1] == "done"
    for summary, off in ((first, []), (second, ["diverse positives"])):
        assert summary["phase"] == "done" and summary["switches_off"] == off
        assert summary["world"] == "tiny" and summary["method"] == "FAA" and summary["seed"] == 0
        assert summary["rounds"] == 8 and 0 < summary["seconds"] < 180
        assert {"verify_v2f_test", "verify_f2v_test", "match_v2f_2_test", "reterival_v2f_test"} <= set(summary["test"])
        assert summary["oracle_val_auc"] > 0.85
    print(f"\nfull FAA: val AUC {first['val_auc']:.3f} in {first['seconds']} s (untrained {first['untrained_val_auc']:.3f}, "
          f"oracle {first['oracle_val_auc']:.3f}); without diverse positives {second['val_auc']:.3f} in {second['seconds']} s")
    assert first["val_auc"] > first["untrained_val_auc"] + 0.08  # measured: 0.647 vs 0.519
    assert first["val_auc"] > second["val_auc"] + 0.01  # measured: 0.647 vs 0.610
    assert first["test"]["verify_v2f_test"] > 0.58  # measured 0.662 (untrained about 0.5)
    # the second run's page shows the overlay of both runs of the second caller only (its own history)
    assert second["untrained_val_auc"] == pytest.approx(first["untrained_val_auc"])


def test_stop_ends_a_run(server, tmp_path_factory):
    client = _client(server, tmp_path_factory)
    job = client.submit("tiny", "SL", [], 1, api_name="/learn")
    deadline = time.time() + 240
    while time.time() < deadline and not any(o[-1].get("rounds", 0) >= 1 for o in job.outputs()):
        time.sleep(0.5)
    assert "Stopping" in client.predict(api_name="/learn_stop")
    summary = job.result(timeout=60)[-1]
    assert summary["phase"] == "stopped" and summary["message"] == "stopped on request"
    # the stop can land during the last of the 8 rounds on a fast machine: the phase and message are the
    # proof that the request ended the run (a finished run reports phase "done" and a test evaluation)
    assert 1 <= summary["rounds"] <= 8 and summary["test"] == {}
    assert "Nothing of yours" in client.predict(api_name="/learn_stop")
