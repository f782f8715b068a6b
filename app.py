"""FAA voice-face association: the Gradio demo.

    python app.py [--checkpoint PATH|HUB_REPO_ID] [--weights pretrained|random|DIR]
                  [--host HOST] [--port PORT]

Record or upload a voice, upload 1-8 face photos (a group photo gives one
candidate per detected face), and see every face ranked by the probability
that it is the speaker, with attention maps over the faces and over the
recording. All numbers come from ``faa_core.pipeline.MatchPipeline``; this
file only arranges inputs and presents results (drawing helpers: ``app_ui``).

Models are loaded once at start and warmed up. When the pretrained encoder
weights cannot be had (offline, nothing cached) the app still starts, on
random encoders, with the reason in a warning banner.
"""

from __future__ import annotations

import os

# Before gradio is imported: no usage analytics, no Hub telemetry.
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

import argparse  # noqa: E402
import logging  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any, Optional, Sequence  # noqa: E402

import numpy as np  # noqa: E402

log = logging.getLogger("faa_app")

ROOT = Path(__file__).resolve().parent
DEFAULT_CHECKPOINT = ROOT / "checkpoints" / "faa-realdims-synthetic"
#: At most this many images per request (the pipeline scores at most 8 faces).
MAX_IMAGES = 8
#: Per-file upload limit enforced by Gradio before our code sees the file.
DEFAULT_MAX_FILE_SIZE = "25mb"
#: Requests scored at the same time; more wait in the queue.
DEFAULT_CONCURRENCY = 2
#: Requests allowed to wait; beyond this the queue refuses new ones ("queue full").
QUEUE_MAX_SIZE = 64
WEBCAM_NAME = "webcam snapshot"
#: Gradio's temp files (uploads, result images) are deleted every 10 minutes once an hour old.
DELETE_CACHE = (600, 3600)
#: Gradio's monitoring summary is recomputed once per this many events (its default: after every one).
MONITORING_SUMMARY_EVERY = 100
GENERIC_ERROR = (
    "Something went wrong on the server while scoring these files (the details were logged). "
    "Please try again, or with other files."
)
CSS = """
#faa-ranking table { width: 100%; }
.faa-warning ul { list-style: disc; }
"""


@dataclass
class AppInfo:
    """What the page says about the models in use."""

    checkpoint: str
    weights_requested: str
    weights_description: str
    device: str
    trained_on: dict[str, Any] = field(default_factory=dict)
    weights_error: Optional[str] = None  # why the requested weights could not be used
    warnings: list[str] = field(default_factory=list)
    load_s: float = 0.0


@dataclass
class MatchView:
    """Everything one request puts on the page, in the order of the output components."""

    status: str
    ranking: str = ""
    gallery: list[tuple[np.ndarray, str]] = field(default_factory=list)
    bars: str = ""  # SVG markup
    voice_plot: str = ""  # SVG markup
    summary: dict[str, Any] = field(default_factory=dict)

    def outputs(self) -> tuple:
        return self.status, self.ranking, self.gallery, self.bars, self.voice_plot, self.summary


# -- models -------------------------------------------------------------------
def describe_models(
    pipeline: Any,
    checkpoint: str,
    weights_requested: str,
    weights_error: Optional[str] = None,
    load_s: float = 0.0,
) -> AppInfo:
    """The banner text and model description for a loaded pipeline."""
    warnings = []
    if weights_error:
        warnings.append(
            f"The {weights_requested} encoder weights could not be loaded, so this demo runs on "
            f"RANDOM encoders. Reason: {weights_error}"
        )
    warnings += pipeline.model_warnings()
    return AppInfo(
        checkpoint=checkpoint,
        weights_requested=weights_requested,
        weights_description=pipeline.weights.describe(),
        device=f"{pipeline.device} ({str(getattr(pipeline.voice_encoder, 'precision', 'float32')).replace('torch.', '')} encoders)",
        trained_on=dict(pipeline.card.get("trained_on") or {}),
        weights_error=weights_error,
        warnings=warnings,
        load_s=load_s,
    )


def load_models(
    checkpoint: str | os.PathLike,
    weights: str | os.PathLike = "pretrained",
    device: str = "cpu",
    warmup: bool = True,
    allow_encoder_mismatch: bool = False,
    precision: str = "auto",
) -> tuple[Any, AppInfo]:
    """Load the checkpoint and encoders once; fall back to random encoders when pretrained ones are missing.

    Only ``weights="pretrained"`` falls back (an explicit folder that lacks the
    files is a configuration mistake and fails). Checkpoint errors always fail,
    and so does a checkpoint trained on other encoders' features than the loaded
    ones (also after the fallback) unless ``allow_encoder_mismatch``, which puts
    the reason in the banner.
    """
    from faa_core.errors import WeightsUnavailableError
    from faa_core.pipeline import MatchPipeline

    t0 = time.perf_counter()
    weights_error = None
    try:
        pipeline = MatchPipeline.from_checkpoint(checkpoint, weights=weights, device=device,
                                                 allow_encoder_mismatch=allow_encoder_mismatch, precision=precision)
    except WeightsUnavailableError as exc:
        if str(weights) != "pretrained":
            raise
        weights_error = str(exc)
        log.warning("pretrained encoder weights unavailable, starting on random encoders: %s", exc)
        pipeline = MatchPipeline.from_checkpoint(checkpoint, weights="random", device=device,
                                                 allow_encoder_mismatch=allow_encoder_mismatch, precision=precision)
    if warmup:
        pipeline.warmup()
    load_s = time.perf_counter() - t0
    return pipeline, describe_models(pipeline, str(checkpoint), str(weights), weights_error, load_s)


# -- one request ----------------------------------------------------------------
def _name_of(path: str) -> str:
    """The file name alone: no server folder, and no client folder either (``a/b.jpg``, ``C:\\x\\b.jpg``)."""
    return str(path).replace("\\", "/").rstrip("/").rsplit("/", 1)[-1] or "image"


def collect_images(
    files: Optional[Sequence[str] | str | os.PathLike], webcam: Optional[str]
) -> tuple[list[str], list[str], list[str]]:
    """Uploaded files then the webcam snapshot, at most ``MAX_IMAGES``: (paths, names, messages).

    ``files`` is a list of paths (what the page sends); one path given alone counts as one file.
    """
    if isinstance(files, (str, os.PathLike)):
        files = [files]
    paths = [str(f) for f in (files or []) if f]
    names = [_name_of(p) for p in paths]
    if webcam:
        paths.append(str(webcam))
        names.append(WEBCAM_NAME)
    messages = []
    if len(paths) > MAX_IMAGES:
        left_out = ", ".join(names[MAX_IMAGES:])
        messages.append(
            f"{len(paths)} images were given; at most {MAX_IMAGES} are used at once, so these were "
            f"left out: {left_out}"
        )
        paths, names = paths[:MAX_IMAGES], names[:MAX_IMAGES]
    return paths, names, messages


def run_match(pipeline: Any, voice: Any, files: Optional[Sequence[str]], webcam: Optional[str]) -> MatchView:
    """Score the faces against the voice and turn the result into page content.

    Never raises: bad input becomes a message in the page (other valid faces
    are still scored), anything unexpected is logged and shown as a generic
    message, so one request cannot take the server down.
    """
    from faa_core.errors import InputError

    paths, names, left_out = collect_images(files, webcam)
    summary = _empty_summary(pipeline)
    errors, error_types = summary["errors"], summary["error_types"]
    if not voice:
        errors.append("No voice: record one with the microphone or upload an audio file.")
        error_types.append("MissingInput")
    if not paths:
        errors.append(f"No face images: upload 1-{MAX_IMAGES} photos or take a webcam snapshot.")
        error_types.append("MissingInput")
    if errors:
        return MatchView(status=_status(errors, [], 0), summary=summary)
    try:
        return _score(pipeline, voice, paths, names, left_out, summary)
    except InputError as exc:
        errors.append(str(exc))
        error_types.append(type(exc).__name__)
    except Exception:  # the server must stay up whatever a request does
        log.exception("unexpected error while matching %s against %s", voice, names)
        errors.append(GENERIC_ERROR)
        error_types.append("InternalError")
    summary["warnings"] = list(left_out)
    return MatchView(status=_status(errors, left_out, 0), summary=summary)


def _empty_summary(pipeline: Any, errors: Sequence[str] = (), error_types: Sequence[str] = ()) -> dict[str, Any]:
    """The JSON summary of a request that scored nothing (yet): its errors and the model's warnings."""
    return {
        "ok": False, "errors": list(errors), "error_types": list(error_types), "warnings": [],
        "faces": [], "images": [], "model_warnings": pipeline.model_warnings(),
    }


def _status(errors: Sequence[str], warnings: Sequence[str], scored: int) -> str:
    from app_ui import messages_markdown

    return messages_markdown(errors, warnings, scored)


def _score(
    pipeline: Any, voice: Any, paths: list[str], names: list[str], left_out: list[str], summary: dict[str, Any]
) -> MatchView:
    """Run the pipeline leniently (bad images reported, not fatal) and draw its result."""
    from app_ui import candidate_label, candidate_tile, probability_bars, ranking_markdown, voice_attention_figure
    from faa_core.media import Audio, load_audio

    recording = voice if isinstance(voice, Audio) else load_audio(voice, name="the recording")
    result = pipeline(recording, paths, names=names, strict=False)
    faces_per_image = {r.index: r.faces for r in result.images}
    rows = []
    for f in result.faces:
        rows.append({
            "rank": f.rank,
            "label": candidate_label(f.image_name, f.face_index, faces_per_image.get(f.image_index, 1)),
            "image": f.image_name,
            "image_index": f.image_index,
            "face_index": f.face_index,
            "probability": round(f.probability, 6),
            "cosine": round(f.cosine, 6),
            "has_heatmap": f.heatmap is not None,
        })
    image_errors = [r.error for r in result.images if r.error]
    errors, error_types = summary["errors"], summary["error_types"]
    errors += image_errors
    error_types += [r.error_type for r in result.images if r.error]
    warnings = list(left_out) + list(result.warnings)
    gallery = [
        (candidate_tile(f.crop, f.heatmap), f"#{r['rank']} {r['label']}: P={f.probability:.3f}, cos={f.cosine:.3f}")
        for f, r in zip(result.faces, rows)
    ]
    bars = probability_bars([f"#{r['rank']} {r['label']}" for r in rows], [f.probability for f in result.faces])
    top = result.faces[0]
    voice_plot = voice_attention_figure(
        recording.samples, recording.sample_rate, result.voice_token_spans, top.voice_attention,
        label=f"#1 {rows[0]['label']}",
        others=[f.voice_attention for f in result.faces[1:] if f.voice_attention is not None],
    )
    summary.update(
        ok=True,
        warnings=warnings,
        faces=rows,
        images=[vars(r).copy() for r in result.images],
        voice={"duration_s": round(result.voice_duration_s, 3), "tokens": int(len(result.voice_token_spans))},
        timings_s={k: round(v, 4) for k, v in result.timings.items()},
    )
    return MatchView(
        status=_status(errors, warnings, len(rows)),
        ranking=ranking_markdown(rows),
        gallery=gallery,
        bars=bars,
        voice_plot=voice_plot,
        summary=summary,
    )


# -- photos ahead of the voice, and the live microphone ----------------------------------
def prepare_photos(pipeline: Any, files: Optional[Sequence[str]], webcam: Optional[str]) -> str:
    """Detect and encode the photos as soon as they are added (into the pipeline's face cache).

    Why: a match then runs only the voice encoder and the fusion, which is
    what lets the live microphone update the ranking every second. Never
    raises; returns a one-line note for the page.
    """
    paths, names, left_out = collect_images(files, webcam)
    if not paths:
        return ""
    try:
        reports = pipeline.prepare_images(paths, names)
    except Exception:  # the page must stay up; the match itself will report the problem
        log.exception("preparing photos %s failed", names)
        return ""
    faces = sum(r.faces for r in reports)
    bad = [r.name for r in reports if r.error]
    note = f"{faces} face{'s' if faces != 1 else ''} ready in {len(reports) - len(bad)} photo(s)"
    if bad:
        note += f"; no usable face in: {', '.join(bad)}"
    if left_out:
        note += f" ({left_out[0]})"
    return note


@dataclass
class LiveRecording:
    """What the live microphone has sent so far in one browser session (kept in ``gr.State``)."""

    rate: int = 0
    chunks: list[np.ndarray] = field(default_factory=list)
    samples: int = 0
    scored_samples: int = 0  # how much audio the ranking on the page was computed from
    updates: int = 0

    @property
    def seconds(self) -> float:
        return self.samples / self.rate if self.rate else 0.0

    def add(self, chunk: Any, keep_seconds: float = 60.0) -> None:
        """Append one streamed chunk: Gradio's (rate, int16 samples[, channels]) pair.

        Each chunk is read as any recording is (rate, sample type and shape
        checked; stereo averaged to mono), so a chunk that is not audio raises
        its ``InputError`` and leaves the recording as it was, and chunks with
        different channel counts still join up. Only the chunks that reach into
        the last ``keep_seconds`` (the scoring window) are kept, so a session's
        memory stays bounded however long the microphone stays open.
        """
        from faa_core.errors import UnsupportedMediaError
        from faa_core.media import load_audio

        if chunk is None:
            return
        if not (isinstance(chunk, tuple) and len(chunk) == 2):  # never a path: nothing is read from disk here
            raise UnsupportedMediaError("the live recording: a microphone chunk must be a (sample rate, samples) "
                                        f"pair, got {type(chunk).__name__}")
        audio = load_audio((chunk[0], np.asarray(chunk[1])), name="the live recording")
        if audio.samples.size == 0:
            return
        if self.rate and audio.sample_rate != self.rate:  # the browser changed its rate: start over
            self.chunks, self.samples, self.scored_samples = [], 0, 0
        self.rate = audio.sample_rate
        data = audio.samples
        self.chunks.append(data)
        self.samples += int(data.shape[0])
        keep = int(keep_seconds * self.rate)
        while len(self.chunks) > 1 and sum(len(c) for c in self.chunks) - len(self.chunks[0]) >= keep:
            self.chunks.pop(0)

    def recording(self, max_seconds: float) -> Any:
        """The audio so far (its last ``max_seconds`` when longer) as a decoded recording."""
        from faa_core.media import Audio

        data = np.concatenate(self.chunks, axis=0) if len(self.chunks) > 1 else self.chunks[0]
        keep = int(max_seconds * self.rate)
        if data.shape[0] > keep:
            data = data[-keep:]
        return Audio(samples=data, sample_rate=self.rate)


#: The live ranking first appears after this much audio ...
LIVE_FIRST_S = 1.0
#: ... and is then recomputed after every this much new audio.
LIVE_EVERY_S = 1.0
#: How often the browser sends the microphone's new audio.
LIVE_STREAM_EVERY_S = 0.5
NO_LIVE_AUDIO = ("no audio arrived from the microphone. Check that the browser may use it and that the right "
                 "input device is selected, then record again.")


def live_update(
    pipeline: Any, live: Optional[LiveRecording], chunk: Any, files: Optional[Sequence[str]],
    webcam: Optional[str], final: bool = False,
) -> tuple[Optional[MatchView], LiveRecording]:
    """Add a microphone chunk and, when an update is due, rank the faces on all audio so far.

    Due: at least ``LIVE_FIRST_S`` of audio and ``LIVE_EVERY_S`` of it new
    since the last ranking, or ``final`` (the recording stopped). Returns
    (None, state) when nothing is due. The photos come from the face cache,
    so an update costs the voice encoder and the fusion.

    When the recording stops the page always gets an answer: the ranking on
    the whole recording (also when no audio arrived since the last update,
    so the page says that the recording stopped; also under ``LIVE_FIRST_S``,
    where a too-short recording is explained), or, when no audio arrived at
    all, a message saying so.
    """
    from faa_core.errors import InputError

    live = live if live is not None else LiveRecording()
    max_s = float(getattr(pipeline, "max_audio_s", 60.0))
    try:
        live.add(chunk, keep_seconds=max_s)
    except InputError as exc:  # a chunk that is not audio: said at once, the recording so far kept
        status = _status([str(exc)], [], 0)
        return MatchView(status=status, summary=_empty_summary(pipeline, [str(exc)], [type(exc).__name__])), live
    if not live.rate:
        if not final:
            return None, live
        view = run_match(pipeline, None, files, webcam)  # explains the missing voice (and photos, if any)
        view.status = f"**Recording stopped**: {NO_LIVE_AUDIO}\n\n" + view.status
        view.summary["live"] = {"seconds": 0.0, "update": live.updates, "final": True, "scored_last_s": 0.0,
                                "update_s": 0.0}
        return view, live
    new_s = (live.samples - live.scored_samples) / live.rate
    due = final or (live.seconds >= LIVE_FIRST_S and new_s >= LIVE_EVERY_S)
    if not due:
        return None, live
    t = time.perf_counter()
    view = run_match(pipeline, live.recording(max_s), files, webcam)
    live.scored_samples = live.samples
    live.updates += 1
    heard = min(live.seconds, max_s)
    view.status = (
        f"**Recording stopped**: ranked on the whole {heard:.1f} s.\n\n" if final
        else f"**Live** (update {live.updates}): ranked on the {heard:.1f} s heard so far.\n\n"
    ) + view.status
    view.summary["live"] = {
        "seconds": round(live.seconds, 3), "update": live.updates, "final": final,
        "scored_last_s": round(min(live.seconds, max_s), 3), "update_s": round(time.perf_counter() - t, 4),
    }
    return view, live


# -- the page -------------------------------------------------------------------
def build_demo(pipeline: Any, info: AppInfo, delete_cache: tuple[int, int] = DELETE_CACHE):
    """The Blocks page around one loaded pipeline (launch it with ``serve``).

    ``delete_cache`` = (every, age) seconds: Gradio deletes the uploads and
    result images it wrote for this page once they are ``age`` seconds old,
    so its temp folder stays bounded (a request leaves its uploads and the gallery tiles, ~25 kB each).
    """
    import gradio as gr

    from app_ui.inputs import WebcamImage

    from app_ui import HOW_TO_READ, model_info_markdown, warning_banner_html

    def match(voice: Optional[str], images: Optional[list[str]], webcam: Optional[str]):
        return run_match(pipeline, voice, images, webcam).outputs()

    def photos_added(images: Optional[list[str]], webcam: Optional[str]) -> str:
        return prepare_photos(pipeline, images, webcam)

    def live_started():
        return LiveRecording()

    def live_chunk(chunk, live, images, webcam):
        view, live = live_update(pipeline, live, chunk, images, webcam)
        return (*(view.outputs() if view is not None else [gr.skip()] * 6), live)

    def live_stopped(live, images, webcam):
        view, live = live_update(pipeline, live, None, images, webcam, final=True)
        return (*(view.outputs() if view is not None else [gr.skip()] * 6), live)

    with gr.Blocks(title="FAA voice-face matching", delete_cache=delete_cache) as demo, gr.Tabs() as tabs, gr.Tab("Match voice to faces", id="match"):
        gr.Markdown(
            "# Whose voice is it?\n"
            "Record or upload a voice, add photos of the candidates, and FAA (*Fuse after Align*) "
            "ranks every face by how likely it is to be the speaker."
        )
        gr.HTML(warning_banner_html(info.warnings), elem_id="faa-model-warning", visible=bool(info.warnings))
        gr.Markdown(
            model_info_markdown(info.checkpoint, info.weights_description, info.trained_on, info.device),
            elem_id="faa-model-info",
        )
        with gr.Row():
            with gr.Column(scale=1):
                voice = gr.Audio(
                    sources=["microphone", "upload"], type="filepath", elem_id="faa-voice",
                    label="Voice: record or upload (1-60 s; WAV, FLAC, OGG, MP3)",
                )
                live = gr.Audio(
                    sources=["microphone"], type="numpy", streaming=True, elem_id="faa-live",
                    label="Live microphone: add the photos, then speak; the ranking updates every second",
                )
                live_state = gr.State(None)
                images = gr.File(
                    file_count="multiple", type="filepath", elem_id="faa-images",
                    label=f"Face photos: 1-{MAX_IMAGES} images (a group photo gives one candidate per face)",
                )
                webcam = WebcamImage(  # the file is passed on undecoded; faa_core reads it like the uploads
                    sources=["webcam"], type="filepath", image_mode=None, elem_id="faa-webcam",
                    label="Webcam snapshot (optional, one more candidate photo)",
                )
                run = gr.Button("Match voice to faces", variant="primary", elem_id="faa-run")
                photos_status = gr.Markdown(elem_id="faa-photos-status")
            with gr.Column(scale=1):
                status = gr.Markdown(elem_id="faa-status")
                ranking = gr.Markdown(elem_id="faa-ranking")
                # the two figures are inline SVG: nothing to encode or fetch per request (see app_ui.figures)
                bars = gr.HTML(elem_id="faa-bars")
        gallery = gr.Gallery(
            label="Candidates, best first: aligned face crop | attention heatmap over it",
            # JPEG: the tiles are photographs; measured per 160x326 tile, PNG took 8 ms to encode and 114 kB,
            # JPEG 0.2 ms and 25 kB (the charts stay PNG: line art and text)
            columns=4, object_fit="contain", height="auto", format="jpeg", interactive=False,
            elem_id="faa-gallery",
        )
        voice_plot = gr.HTML(elem_id="faa-voice-attention")
        with gr.Accordion("How to read this", open=True):
            gr.Markdown(HOW_TO_READ, elem_id="faa-how-to-read")
        with gr.Accordion("Result as JSON", open=False):
            summary = gr.JSON(elem_id="faa-json")
        run.click(
            match, inputs=[voice, images, webcam],
            outputs=[status, ranking, gallery, bars, voice_plot, summary],
            api_name="match",
        )
        # The photos' work is done once, when they are added; the live microphone then ranks as it records.
        images.upload(photos_added, [images, webcam], [photos_status], api_name=False, show_progress="hidden")
        webcam.change(photos_added, [images, webcam], [photos_status], api_name=False, show_progress="hidden")
        live_outputs = [status, ranking, gallery, bars, voice_plot, summary, live_state]
        live.start_recording(live_started, None, [live_state], api_name=False, show_progress="hidden")
        live.stream(
            live_chunk, [live, live_state, images, webcam], live_outputs, stream_every=LIVE_STREAM_EVERY_S,
            api_name=False, show_progress="hidden",
        )
        live.stop_recording(live_stopped, [live_state, images, webcam], live_outputs, api_name=False)
    from app_ui.learn_tab import add_learn_tab  # the second tab: train on a synthetic world live

    add_learn_tab(demo, tabs)
    return demo


def serve(
    demo: Any,
    host: Optional[str] = None,
    port: Optional[int] = None,
    concurrency: int = DEFAULT_CONCURRENCY,
    max_file_size: str | int = DEFAULT_MAX_FILE_SIZE,
    share: bool = False,
    block: bool = True,
    quiet: bool = False,
) -> str:
    """Queue and launch the page; returns its local URL (``block=False`` returns at once).

    ``host``/``port`` of None let Gradio use GRADIO_SERVER_NAME / GRADIO_SERVER_PORT
    (set by Hugging Face Spaces) or 127.0.0.1:7860.
    """
    import gradio as gr

    # After every event Gradio rebuilds the summary behind its /monitoring page: a pandas group-by over
    # up to 10,000 past events, 2 ms per request at first and 7 ms once the history is full (the live
    # microphone adds an event every 0.5 s), run while the request still holds its slot. Read when the
    # queue is made; an explicit setting wins.
    os.environ.setdefault("GRADIO_ANALYTICS_CACHE_FREQUENCY", str(MONITORING_SUMMARY_EVERY))
    demo.queue(default_concurrency_limit=concurrency, max_size=QUEUE_MAX_SIZE)
    _, local_url, _ = demo.launch(
        server_name=host,
        server_port=port,
        share=share,
        max_file_size=max_file_size,
        max_threads=max(8, 4 * concurrency),
        prevent_thread_lock=not block,
        quiet=quiet,
        show_error=False,
        theme=gr.themes.Soft(),
        css=CSS,
    )
    return local_url


# -- command line -----------------------------------------------------------------
def configure_caches() -> None:
    """On a Hugging Face Space with persistent storage, keep the face weights in /data across restarts.

    The voice weights live in the Hugging Face cache, which the Space fills at
    build time (``preload_from_hub`` in the README front matter).
    """
    data = Path("/data")
    if "TORCH_HOME" not in os.environ and data.is_dir() and os.access(data, os.W_OK):
        os.environ["TORCH_HOME"] = str(data / "torch")


def build_parser() -> argparse.ArgumentParser:
    from faa_core.device import PRECISION_CHOICES

    parser = argparse.ArgumentParser(description="FAA voice-face association demo (Gradio)")
    parser.add_argument(
        "--checkpoint", default=os.environ.get("FAA_CHECKPOINT", str(DEFAULT_CHECKPOINT)),
        help="checkpoint folder or Hugging Face Hub repo id (default: $FAA_CHECKPOINT or the bundled one)",
    )
    parser.add_argument(
        "--weights", default=os.environ.get("FAA_WEIGHTS", "pretrained"),
        help="encoder weights: pretrained (download/cache; falls back to random with a warning), "
             "random (development only) or a folder holding both weight files",
    )
    parser.add_argument(
        "--allow-encoder-mismatch", action="store_true",
        help="serve a checkpoint trained on features of other encoder weights than --weights (banner warns)",
    )
    parser.add_argument("--host", default=None, help="address to listen on (default 127.0.0.1, or $GRADIO_SERVER_NAME)")
    parser.add_argument("--port", type=int, default=None, help="port (default 7860, or $GRADIO_SERVER_PORT)")
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (cuda when present; cuda:LOCAL_RANK)")
    parser.add_argument("--precision", default="auto", help=f"encoders' arithmetic: {PRECISION_CHOICES}")
    parser.add_argument("--concurrency", type=int, default=DEFAULT_CONCURRENCY, help="requests scored at once")
    parser.add_argument(
        "--threads", type=int, default=0,
        help="torch threads per process (default: CPU cores / concurrency, at least 1, so that "
             "concurrent requests do not fight over the cores)",
    )
    parser.add_argument("--max-file-size", default=DEFAULT_MAX_FILE_SIZE, help="upload limit per file, e.g. 25mb")
    parser.add_argument("--share", action="store_true", help="also open a public gradio.live link (off by default)")
    return parser


def torch_threads(requested: int, concurrency: int) -> int:
    """Intra-op threads for torch: the cores shared out between the requests that run at once."""
    if requested > 0:
        return requested
    return max(1, (os.cpu_count() or 1) // max(1, concurrency))


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Load the models once, then serve the page until interrupted."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    configure_caches()
    import torch

    from faa_core.allocator import keep_freed_memory

    keep_freed_memory()  # large tensors reuse the heap instead of new pages every request (faa_core/allocator.py)
    torch.set_num_threads(torch_threads(args.threads, args.concurrency))
    from faa_core.device import pick_device
    from faa_core.errors import FAAError

    try:
        pipeline, info = load_models(args.checkpoint, args.weights, str(pick_device(args.device)),
                                     allow_encoder_mismatch=args.allow_encoder_mismatch, precision=args.precision)
    except FAAError as exc:
        print(f"error: {exc}", file=sys.stderr)
        if Path(args.checkpoint) == DEFAULT_CHECKPOINT and not DEFAULT_CHECKPOINT.exists():
            print("The bundled checkpoint is missing: pass --checkpoint with a checkpoint folder or a "
                  "Hugging Face Hub repo id (or set FAA_CHECKPOINT).", file=sys.stderr)
        return 2
    log.info("checkpoint %s; encoder weights: %s; loaded and warmed up in %.1f s; %d torch threads, "
             "%d concurrent requests", info.checkpoint, info.weights_description, info.load_s,
             torch.get_num_threads(), args.concurrency)
    for w in info.warnings:
        log.warning("%s", w)
    serve(build_demo(pipeline, info), args.host, args.port, args.concurrency, args.max_file_size, args.share)
    return 0


if __name__ == "__main__":
    sys.exit(main())
