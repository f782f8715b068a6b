"""Test media made on the fly: drawn faces MTCNN detects, a speech recording, a blank photo.

Nothing here is downloaded. The drawn face is a simple cartoon (skin ellipse,
hair, eyes with pupils, eyebrows, nose, mouth) that facenet-pytorch's MTCNN,
whose weights ship inside the package, detects with probability > 0.95.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw

BACKGROUND = (90, 120, 160)
SKIN = (224, 180, 150)
SKIN_DARKER = (190, 140, 110)
SPEECH_TEXT = "The quick brown fox jumps over the lazy dog near the river bank"
SPEECH_RATE = 22050


def draw_face(size: int = 400, skin: Sequence[int] = SKIN, background: Sequence[int] = BACKGROUND) -> Image.Image:
    """A size x size RGB drawing of a face (coordinates designed for 400 px, scaled by size/400)."""
    s = size / 400.0

    def sc(*v: float) -> list[float]:
        return [x * s for x in v]

    skin = tuple(skin)
    img = Image.new("RGB", (size, size), tuple(background))
    d = ImageDraw.Draw(img)
    d.ellipse(sc(100, 60, 300, 330), fill=skin)
    d.ellipse(sc(80, 40, 320, 150), fill=(60, 40, 30))  # hair
    d.ellipse(sc(100, 90, 300, 330), fill=skin)
    for cx in (160, 240):
        d.ellipse(sc(cx - 22, 165, cx + 22, 190), fill=(255, 255, 255))
        d.ellipse(sc(cx - 9, 168, cx + 9, 187), fill=(40, 30, 20))
        d.line(sc(cx - 25, 150, cx + 25, 145), fill=(50, 35, 25), width=max(1, round(6 * s)))
    d.polygon([tuple(sc(200, 190)), tuple(sc(185, 245)), tuple(sc(215, 245))], fill=(200, 150, 120))
    d.ellipse(sc(165, 265, 235, 290), fill=(170, 80, 80))  # mouth
    return img


def face_photo(width: int = 640, height: int = 480, face_size: int = 300) -> Image.Image:
    """One drawn face pasted in the middle of a width x height canvas."""
    canvas = Image.new("RGB", (width, height), BACKGROUND)
    canvas.paste(draw_face(face_size), ((width - face_size) // 2, (height - face_size) // 2))
    return canvas


def group_photo(skins: Sequence[Sequence[int]] = (SKIN, SKIN_DARKER), face_size: int = 300, gap: int = 120) -> Image.Image:
    """Several drawn faces side by side (at least 800 px wide for two faces)."""
    n = len(skins)
    width = max(800, n * face_size + (n + 1) * gap)
    height = face_size + 100
    canvas = Image.new("RGB", (width, height), BACKGROUND)
    step = (width - n * face_size) // (n + 1)
    for i, skin in enumerate(skins):
        canvas.paste(draw_face(face_size, skin=skin), (step + i * (face_size + step), 50))
    return canvas


def blank_photo(width: int = 640, height: int = 480) -> Image.Image:
    """A colour gradient with a few shapes and no face."""
    yy, xx = np.mgrid[:height, :width]
    arr = np.zeros((height, width, 3), np.uint8)
    arr[..., 0] = (xx * 255 // width).astype(np.uint8)
    arr[..., 1] = (yy * 255 // height).astype(np.uint8)
    arr[..., 2] = 128
    img = Image.fromarray(arr)
    d = ImageDraw.Draw(img)
    d.rectangle([100, 100, 200, 300], fill=(255, 0, 0))
    d.ellipse([400, 100, 550, 250], fill=(0, 200, 0))
    d.line([0, 470, 639, 300], fill=(20, 20, 20), width=5)
    return img


def synthetic_voice(seconds: float = 3.0, rate: int = SPEECH_RATE, f0: float = 130.0) -> np.ndarray:
    """A voiced-like signal: harmonics of a gliding f0 with syllable-rate amplitude modulation."""
    t = np.arange(int(seconds * rate)) / rate
    pitch = f0 * (1.0 + 0.1 * np.sin(2 * np.pi * 0.7 * t))
    phase = 2 * np.pi * np.cumsum(pitch) / rate
    x = sum(np.sin(k * phase) / k for k in range(1, 12))
    envelope = 0.5 * (1 + np.sin(2 * np.pi * 4.0 * t)) ** 2 / 4 + 0.05
    x = x * envelope
    return (0.5 * x / np.abs(x).max()).astype(np.float32)


def write_speech(path: Path, text: str = SPEECH_TEXT) -> Path:
    """A ~3.7 s espeak-ng recording (22050 Hz mono), or a synthetic voiced signal without espeak-ng."""
    exe = shutil.which("espeak-ng")
    if exe:
        try:
            subprocess.run([exe, "-w", str(path), text], check=True, capture_output=True, timeout=60)
            if path.is_file() and path.stat().st_size > 1000:
                return path
        except (subprocess.SubprocessError, OSError):
            pass
    import soundfile as sf

    sf.write(str(path), synthetic_voice(), SPEECH_RATE, subtype="PCM_16")
    return path
