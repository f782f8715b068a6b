"""faa_core: the FAA ("Fuse after Align") voice-face association library.

Encoders, the FAA model, losses, metrics, checkpoint I/O and the inference
pipeline. It never imports gradio or the ``training`` package.
"""

__version__ = "0.1.0"
