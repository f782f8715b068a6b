"""Input components whose files reach the app undecoded.

Why: ``gr.Image`` opens every upload with Pillow in its ``preprocess`` (even
with ``type="filepath"``), so a non-image sent to the webcam slot failed
inside Gradio and the client got only "the upstream app raised an exception".
Here the file is handed on as a path and read by ``faa_core.media.load_image``
like the uploads, which turns any bad file into a message naming it.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any, Optional

import gradio as gr
from gradio import processing_utils


class WebcamImage(gr.Image):
    """``gr.Image`` (same front end) that passes the snapshot's file path on without decoding it."""

    is_template = True  # Gradio then uses the parent's front-end component ("image")

    def preprocess(self, payload: Any) -> Optional[str]:
        """The uploaded file's path; an inline ``data:`` URL is written to the upload cache first."""
        if payload is None:
            return None
        url = getattr(payload, "url", None)
        if url and url.startswith("data:"):
            try:
                data = base64.b64decode(url.split(",", 1)[1], validate=False)
            except (IndexError, ValueError, binascii.Error):
                data = b""
            return processing_utils.save_bytes_to_cache(data, "webcam-snapshot", self.GRADIO_CACHE)
        path = getattr(payload, "path", None)
        return None if path is None else str(path)
