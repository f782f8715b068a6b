"""The "Learn how FAA works" tab: train on a synthetic world live, watch it learn, break it with a switch.

Presentation only. ``training.learn`` checks the choice, runs the training in
a separate process and measures everything; this module turns its progress
into pictures and text. The training event has its own concurrency group
(one training at a time, the others wait in the queue with their position
shown) so that the Match tab keeps answering while a run trains.

API: ``/learn`` with ``(world, method, switches, seed)``, ``switches`` being
the names of the switches turned OFF; a generator whose outputs end with a
JSON summary (the final one has the test numbers, a bad choice an "error").
"""

from __future__ import annotations

import logging
from typing import Any, Iterator, Optional

import gradio as gr

from .learn_figures import attention_maps, embedding_projection, run_overlay, training_curves
from .learn_text import (
    ATTENTION_TEXT,
    CURVES_TEXT,
    LEARN_INTRO,
    OVERLAY_TEXT,
    PROJECTION_TEXT,
    REAL_DATA_TEXT,
    TABLE_TEXT,
    learn_error_markdown,
    learn_status_markdown,
    test_table_markdown,
)

log = logging.getLogger("faa_app.learn")
LEARN_TAB_TITLE = "Learn how FAA works"
LEARN_CONCURRENCY_ID = "learn"
GENERIC_LEARN_ERROR = "Something went wrong on the server while training (the details were logged). Please try again."


def _outputs(status: str, curves: Any, projection: Any, attention: Any, table: str, overlay: Any, summary: dict) -> tuple:
    return status, curves, projection, attention, table, overlay, summary


def learn_views(runner: Any, world: Any, method: Any, switches: Any, seed: Any, session: str = "") -> Iterator[tuple]:
    """Everything the tab shows, one tuple of outputs per change of the run (the last one final).

    Never raises: a bad choice becomes one message and ``{"error": ...}``;
    anything unexpected is logged and reported the same way.
    """
    from training.learn import ChoiceError, make_job

    try:
        job = make_job(world, method, switches, seed)
    except ChoiceError as exc:
        yield _outputs(learn_error_markdown(str(exc)), None, None, None, "", gr.skip(), {"error": str(exc)})
        return
    except Exception:
        log.exception("could not prepare the learn run %r", (world, method, switches, seed))
        yield _outputs(learn_error_markdown(GENERIC_LEARN_ERROR), None, None, None, "", gr.skip(), {"error": GENERIC_LEARN_ERROR})
        return
    drawn_rounds = -1
    first = True
    try:
        for p in runner.stream(job, session):
            start = p.start or {}
            status = learn_status_markdown(job.label, p.phase, p.elapsed, p.rounds, p.max_rounds, start, p.message, job.notes)
            curves: Any = gr.skip()
            if len(p.rounds) != drawn_rounds or p.finished or first:
                drawn_rounds = len(p.rounds)
                curves = training_curves(p.rounds, p.max_rounds, start.get("oracle_val_auc"), start.get("untrained_val_auc"),
                                         start.get("probe") if isinstance(start.get("probe"), (int, float)) else None,
                                         title=job.label)
            projection: Any = gr.skip()
            attention: Any = gr.skip()
            table, overlay = "", gr.skip()
            if first:
                projection, attention = embedding_projection(None, None), attention_maps([], (1, 1))
                overlay = run_overlay(runner.history(session))
                first = False
            if p.result is not None:
                r = p.result
                projection = embedding_projection(r["projection"]["before"], r["projection"]["after"])
                attention = attention_maps(r["attention"], r["face_grid"])
                table = test_table_markdown(r["test"], r["oracle_test"], r["val_auc"], r["oracle_val_auc"], r["untrained_val_auc"])
                overlay = run_overlay(runner.history(session)[-2:])
            elif p.finished:
                table = f"*No test numbers: the run {p.phase} before the end.*"
            yield _outputs(status, curves, projection, attention, table, overlay, p.summary())
    except Exception:
        log.exception("the learn run %s failed", job.label)
        yield _outputs(learn_error_markdown(GENERIC_LEARN_ERROR), gr.skip(), gr.skip(), gr.skip(), "", gr.skip(),
                       {"error": GENERIC_LEARN_ERROR, "world": job.world, "method": job.method})


def add_learn_tab(demo: Any, tabs: Any = None, runner: Optional[Any] = None) -> Any:
    """Add the tab to a Blocks page (inside ``tabs`` when given); returns the training event."""
    from training.learn import default_runner, method_names, settings, switch_names, world_names

    runner = runner if runner is not None else default_runner()
    runner.warm()  # the first visitor's training starts without waiting for imports
    worlds = world_names()
    default_world = settings()["worlds"].get("default")

    def learn(world: Any, method: Any, switches: Any, seed: Any, request: gr.Request) -> Iterator[tuple]:
        yield from learn_views(runner, world, method, switches, seed, getattr(request, "session_hash", "") or "")

    def stop(request: gr.Request) -> str:
        stopped = runner.stop(getattr(request, "session_hash", "") or "")
        return "**⏹️ Stopping…**" if stopped else "*Nothing of yours is training right now.*"

    def refresh_worlds() -> Any:
        return gr.Dropdown(choices=world_names())

    with demo:
        with tabs if tabs is not None else gr.Tabs():
            with gr.Tab(LEARN_TAB_TITLE, id="learn", elem_id="faa-learn-tab"):
                gr.Markdown(LEARN_INTRO)
                with gr.Row():
                    world = gr.Dropdown(worlds, value=default_world if default_world in worlds else (worlds or [None])[0],
                                        allow_custom_value=True, label="World (synthetic people)", elem_id="faa-learn-world")
                    method = gr.Dropdown(method_names(), value=method_names()[0], allow_custom_value=True,
                                         label="Method", elem_id="faa-learn-method")
                    switches = gr.Dropdown(switch_names(), value=[], multiselect=True, allow_custom_value=True,
                                           label="Switches turned OFF (FAA only; empty = the full method)",
                                           elem_id="faa-learn-switches")
                    seed = gr.Number(value=0, label="Training seed", elem_id="faa-learn-seed")
                with gr.Row():
                    train = gr.Button("Train", variant="primary", elem_id="faa-learn-run")
                    stop_button = gr.Button("Stop", variant="stop", elem_id="faa-learn-stop")
                status = gr.Markdown(elem_id="faa-learn-status")
                curves = gr.Image(label="Training curves", type="numpy", format="png", interactive=False,
                                  elem_id="faa-learn-curves")
                gr.Markdown(CURVES_TEXT)
                projection = gr.Image(label="Voice and face embeddings before and after alignment (PCA)", type="numpy",
                                      format="png", interactive=False, elem_id="faa-learn-projection")
                gr.Markdown(PROJECTION_TEXT)
                attention = gr.Image(label="Attention of the match head on test pairs, against the truth", type="numpy",
                                     format="png", interactive=False, elem_id="faa-learn-attention")
                gr.Markdown(ATTENTION_TEXT)
                gr.Markdown(TABLE_TEXT)
                table = gr.Markdown(elem_id="faa-learn-table")
                overlay = gr.Image(label="This run and your previous one", type="numpy", format="png", interactive=False,
                                   elem_id="faa-learn-overlay")
                gr.Markdown(OVERLAY_TEXT)
                gr.Markdown(REAL_DATA_TEXT)
                with gr.Accordion("Run as JSON", open=False):
                    summary = gr.JSON(elem_id="faa-learn-json")
        event = train.click(
            learn, inputs=[world, method, switches, seed],
            outputs=[status, curves, projection, attention, table, overlay, summary],
            api_name="learn", concurrency_limit=1, concurrency_id=LEARN_CONCURRENCY_ID,
        )
        stop_button.click(stop, inputs=None, outputs=[status], api_name="learn_stop", queue=False)
        demo.load(refresh_worlds, inputs=None, outputs=[world], api_visibility="private", queue=False)
    return event
