"""The demo in a real headless browser (Debian's Chromium driven by Playwright).

Uploads a speech recording and two photos (one face, a group of two) through
the page's own upload widgets, presses the button and checks that the ranked
probabilities, the heatmap tiles, the bar chart and the voice-attention figure
appear. A full-page screenshot is written to $FAA_SCREENSHOT_DIR (or the test's
tmp dir) and its path printed.

Needs the ``playwright`` Python package and a Chromium binary (``apt-get
install chromium``; ``$FAA_CHROMIUM`` to point at another one). Playwright's
own browser download is never used. Without them the test is skipped.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from typing import Optional

import pytest

from app_fixtures import random_pipeline, start_app

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
TIMEOUT_MS = 120_000


def find_chromium() -> Optional[str]:
    """$FAA_CHROMIUM, else the first Chromium-like browser on PATH."""
    env = os.environ.get("FAA_CHROMIUM")
    if env:
        return env if Path(env).is_file() else None
    for name in CHROMIUM_NAMES:
        path = shutil.which(name)
        if path:
            return path
    return None


def _skip_reason() -> Optional[str]:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright Python package is not installed (pip install -r requirements.txt)"
    if find_chromium() is None:
        return "no Chromium browser found (apt-get install chromium, or set FAA_CHROMIUM=/path/to/chrome)"
    return None


pytestmark = [
    pytest.mark.skipif(_skip_reason() is not None, reason=_skip_reason() or ""),
    pytest.mark.filterwarnings("ignore::pandas.errors.Pandas4Warning"),  # raised inside gradio 6.31
]


@pytest.fixture(scope="module")
def server(small_checkpoint, face_encoder, voice_encoder, random_weights):
    demo, url = start_app(random_pipeline(small_checkpoint, face_encoder, voice_encoder, random_weights), small_checkpoint)
    yield url
    demo.close()


@pytest.fixture
def screenshot_path(tmp_path) -> Path:
    folder = Path(os.environ.get("FAA_SCREENSHOT_DIR") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder / "app_screenshot.png"


def test_upload_match_and_see_results(server, speech_wav, face_image_path, group_image_path, screenshot_path):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=find_chromium(), headless=True,
            args=["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"],
        )
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(TIMEOUT_MS)
            # not "networkidle": the live microphone's streaming audio keeps a request open
            page.goto(server, wait_until="load")
            page.locator("#faa-run").wait_for()
            # the model banner is there before anything is run
            assert "RANDOM ENCODER WEIGHTS" in page.locator("#faa-model-warning").inner_text()
            assert "Checkpoint" in page.locator("#faa-model-info").inner_text()

            page.locator('#faa-voice button[aria-label="Upload file"]').click()
            page.locator("#faa-voice input[type=file]").set_input_files(str(speech_wav))
            page.locator("#faa-images input[type=file]").set_input_files([str(face_image_path), str(group_image_path)])
            page.locator('#faa-images td.filename[aria-label="group.png"]').wait_for()
            page.locator("#faa-voice audio").first.wait_for(state="attached")
            page.locator("#faa-run").click()

            page.locator("#faa-ranking table").wait_for()
            page.wait_for_function(
                "() => Array.from(document.querySelectorAll('#faa-gallery img'))"
                ".filter(i => i.complete && i.naturalWidth > 0).length >= 3"
            )
            status = page.locator("#faa-status").inner_text()
            ranking = page.locator("#faa-ranking").inner_text()
            tiles = page.evaluate(
                "() => Array.from(document.querySelectorAll('#faa-gallery img')).map(i => [i.naturalWidth, i.naturalHeight])"
            )
            page.locator("#faa-bars svg").wait_for()
            page.locator("#faa-voice-attention svg").wait_for()
            page.wait_for_timeout(500)  # let the images paint before the screenshot
            page.screenshot(path=str(screenshot_path), full_page=True)
        finally:
            browser.close()
    print(f"\nscreenshot: {screenshot_path}")

    assert "3 faces scored" in status
    probabilities = [float(v) for v in re.findall(r"\t(\d\.\d{3})\t", ranking)]
    assert len(probabilities) == 3 and probabilities == sorted(probabilities, reverse=True)
    assert all(0.0 <= v <= 1.0 for v in probabilities)
    assert "group.png #2" in ranking
    # each tile is the 160 px crop and its heatmap side by side
    assert len(tiles) >= 3 and all(h == 160 and w > 320 for w, h in tiles)
    assert screenshot_path.is_file() and screenshot_path.stat().st_size > 10_000


@pytest.fixture(scope="module")
def learn_server(small_checkpoint, face_encoder, voice_encoder, random_weights, tmp_path_factory):
    """The page with its Learn tab training into a temporary folder."""
    import training.learn.runner as runner_module
    from training.learn import LearnRunner

    saved = runner_module._DEFAULT
    runner_module._DEFAULT = LearnRunner(tmp_path_factory.mktemp("learn"))
    demo, url = start_app(random_pipeline(small_checkpoint, face_encoder, voice_encoder, random_weights), small_checkpoint)
    yield url
    demo.close()
    runner_module._DEFAULT.stop_all()
    runner_module._DEFAULT = saved


def test_learn_tab_trains_twice_and_shows_the_pictures(learn_server, screenshot_path):
    """Train FAA, then FAA without diverse positives; every picture appears and the overlay holds both runs."""
    from playwright.sync_api import sync_playwright

    learn_shot = screenshot_path.with_name("learn_tab_screenshot.png")
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=find_chromium(), headless=True,
            args=["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"],
        )
        try:
            page = browser.new_page(viewport={"width": 1300, "height": 1000})
            page.set_default_timeout(TIMEOUT_MS)
            # not "networkidle": the page keeps a heartbeat stream open (gr.State of the live microphone)
            page.goto(learn_server, wait_until="load")
            page.get_by_role("tab", name="Learn how FAA works").click()
            page.locator("#faa-learn-run").click()
            page.locator("#faa-learn-table table").wait_for(timeout=4 * TIMEOUT_MS)
            first_status = page.locator("#faa-learn-status").inner_text()
            switches = page.locator("#faa-learn-switches input").first
            switches.click()
            switches.fill("diverse positives")
            switches.press("Enter")
            page.locator("#faa-learn-run").click()
            page.wait_for_function(
                "() => document.querySelector('#faa-learn-status')?.innerText.includes('without diverse positives')"
                " && document.querySelector('#faa-learn-status')?.innerText.includes('Done')",
                timeout=4 * TIMEOUT_MS,
            )
            for name in ("curves", "projection", "attention", "overlay"):
                # images below the fold may load lazily: bring each into view, then wait until it has decoded
                page.locator(f"#faa-learn-{name} img").scroll_into_view_if_needed()
                page.wait_for_function(
                    f"() => {{ const i = document.querySelector('#faa-learn-{name} img');"
                    " return i && i.complete && i.naturalWidth > 0; }",
                    timeout=2 * TIMEOUT_MS,
                )
            sizes = page.evaluate(
                "() => ['curves', 'projection', 'attention', 'overlay'].map(n => {"
                " const i = document.querySelector('#faa-learn-' + n + ' img'); return [i.naturalWidth, i.naturalHeight]; })"
            )
            second_status = page.locator("#faa-learn-status").inner_text()
            table = page.locator("#faa-learn-table").inner_text()
            page.wait_for_timeout(500)  # let the images paint before the screenshot
            page.screenshot(path=str(learn_shot), full_page=True)
        finally:
            browser.close()
    print(f"\nscreenshot: {learn_shot}")

    assert "Done" in first_status and "FAA (seed 0, world tiny)" in first_status
    assert "FAA without diverse positives (seed 0, world tiny)" in second_status
    assert "verify_v2f_test" in table and "validation AUC" in table
    assert all(w >= 600 and h >= 300 for w, h in sizes), sizes
    assert learn_shot.is_file() and learn_shot.stat().st_size > 50_000


def test_live_microphone_ranks_while_recording(server, speech_wav, face_image_path, group_image_path):
    """Chromium's fake microphone plays the speech file; the ranking must appear before Stop is pressed."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=find_chromium(), headless=True,
            args=["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                  "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
                  f"--use-file-for-fake-audio-capture={speech_wav}"],
        )
        try:
            page = browser.new_context(permissions=["microphone"]).new_page()
            page.set_default_timeout(TIMEOUT_MS)
            page.goto(server, wait_until="load")
            page.locator("#faa-images input[type=file]").set_input_files([str(face_image_path), str(group_image_path)])
            # the photos are detected and encoded when added, before any voice
            page.locator("#faa-photos-status").get_by_text("3 faces ready").wait_for()
            page.locator("#faa-live button", has_text="Record").click()
            stop = page.locator("#faa-live button", has_text="Stop")
            stop.wait_for()
            page.locator("#faa-status").get_by_text("Live (update").wait_for()
            still_recording = stop.is_visible()
            live_status = page.locator("#faa-status").inner_text()
            live_ranking = page.locator("#faa-ranking").inner_text()
            stop.click()
            page.locator("#faa-status").get_by_text("Recording stopped").wait_for()
            final_status = page.locator("#faa-status").inner_text()
        finally:
            browser.close()

    assert still_recording, "the ranking only appeared after the recording ended"
    assert re.search(r"ranked on the \d+\.\d s heard so far", live_status) and "3 faces scored" in live_status
    probabilities = [float(v) for v in re.findall(r"\t(\d\.\d{3})\t", live_ranking)]
    assert len(probabilities) == 3 and probabilities == sorted(probabilities, reverse=True)
    heard = float(re.search(r"ranked on the whole (\d+\.\d) s", final_status).group(1))
    assert heard >= 1.0 and "3 faces scored" in final_status
