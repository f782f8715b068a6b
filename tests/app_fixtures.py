"""Helpers shared by the demo's tests: a free port and the app served in-process on 127.0.0.1."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import app


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def random_pipeline(checkpoint: Path, face_encoder, voice_encoder, random_weights) -> Any:
    """A pipeline on the test checkpoint with the session's random-weight encoders."""
    from faa_core.checkpoint import load_checkpoint
    from faa_core.pipeline import MatchPipeline

    model, card = load_checkpoint(checkpoint)
    return MatchPipeline(model, card, face_encoder, voice_encoder, random_weights, str(checkpoint))


def start_app(pipeline: Any, checkpoint: Path, **serve_kwargs: Any) -> tuple[Any, str]:
    """Build the demo page for ``pipeline`` and serve it without blocking: (demo, url)."""
    demo = app.build_demo(pipeline, app.describe_models(pipeline, str(checkpoint), "random"))
    url = app.serve(demo, host="127.0.0.1", port=free_port(), block=False, quiet=True, **serve_kwargs)
    return demo, url
