"""A tiny fake VoxCeleb1 world on disk: wav tree, VGGFace1 photos, face-track frames, protocols.

Made of generated media only (synthetic voiced signals, one espeak-ng recording
when available, drawn faces), with deliberate problems that prepare and
extract must report: a corrupt wav, a too-short wav, a silent wav, a corrupt
jpg, a truncated jpg (passes ``Image.verify``, fails decoding), a photo without
a face, stray files, identities outside the protocol and list items absent
from the trees.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
from PIL import Image

from media_fixtures import blank_photo, face_photo, synthetic_voice, write_speech

# voice_id, VGGFace1 name, gender, nationality, Wen split
IDENTITIES = [
    ("id10001", "Alice_Able", "f", "USA", "train"),
    ("id10002", "Bob_Baker", "m", "UK", "train"),
    ("id10003", "Carol_Cole", "f", "India", "test"),
    ("id10004", "Dan_Dale", "m", "Norway", "val"),
]
SET_NONE = ("id10005", "Eve_Eden", "f", "USA", "train")  # Set=none in Wen's CSV: not in the protocol
OUTSIDE = ("id10099", "Zed_Zane")  # in the trees, in no protocol file
NAGRANI_SET = {"train": 1, "val": 2, "test": 4}


@dataclass
class FakeWorld:
    root: Path
    voices: Path
    vggface1: Path
    frames_parent: Path  # holds unzippedFaces/
    wen: Path
    nagrani: Path


def _wav(path: Path, x: np.ndarray, rate: int = 16000) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), x, rate, subtype="PCM_16")


def _jpg(path: Path, img: Image.Image) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, "JPEG", quality=92)


def build_world(root: Path) -> FakeWorld:
    """Write the whole fake world under ``root`` (about 0.5 s)."""
    voices = root / "vox1" / "wav"
    # --- voices: idXXXXX/<video>/<segment>.wav
    _wav(voices / "id10001/vidA1/00001.wav", synthetic_voice(2.0, 16000, 120.0))
    (voices / "id10001/vidA2").mkdir(parents=True)
    write_speech(voices / "id10001/vidA2/00001.wav")  # 22050 Hz espeak-ng speech when installed
    _wav(voices / "id10002/vidB1/00001.wav", synthetic_voice(2.5, 16000, 180.0))
    _wav(voices / "id10002/vidB1/00002.wav", synthetic_voice(0.5, 16000, 180.0))  # too short
    _wav(voices / "id10003/vidC1/00001.wav", synthetic_voice(2.0, 16000, 210.0))  # same length as A1
    (voices / "id10003/vidC1/00002.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEgarbage" * 10)  # corrupt
    _wav(voices / "id10004/vidD1/00001.wav", np.zeros(32000, np.float32))  # silent: fails only at extraction
    _wav(voices / "id10005/vidE1/00001.wav", synthetic_voice(2.0, 16000, 150.0))  # Set=none identity
    _wav(voices / "id10099/vidZ1/00001.wav", synthetic_voice(2.0, 16000, 100.0))  # outside
    (voices / "id10001/stray.txt").write_text("not media")
    (voices / "id10001/vidA1/notes.txt").write_text("not audio")

    # --- VGGFace1 photos: <Name>/<file>.jpg (160x160 face crops)
    vgg = root / "vggface1"
    _jpg(vgg / "Alice_Able/00000001.jpg", face_photo(160, 160, 110))
    _jpg(vgg / "Alice_Able/00000002.jpg", face_photo(160, 160, 104))
    _jpg(vgg / "Bob_Baker/00000001.jpg", face_photo(160, 160, 116))
    _jpg(vgg / "Carol_Cole/00000001.jpg", blank_photo(160, 160))  # no face: centre-crop fallback
    (vgg / "Carol_Cole/00000002.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not a jpeg")  # corrupt
    buf = io.BytesIO()
    face_photo(160, 160, 110).save(buf, "JPEG")
    (vgg / "Dan_Dale").mkdir(parents=True)
    (vgg / "Dan_Dale/00000001.jpg").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])  # truncated
    _jpg(vgg / "Zed_Zane/00000001.jpg", face_photo(160, 160, 110))  # outside

    # --- VoxCeleb1 face-track frames: unzippedFaces/<Name>/1.6/<video>/<frame>.jpg
    frames = root / "frames" / "unzippedFaces"
    _jpg(frames / "Alice_Able/1.6/vidA1/0000100.jpg", face_photo(150, 150, 100))
    _jpg(frames / "Alice_Able/1.6/vidA2/0000200.jpg", face_photo(176, 176, 120))
    _jpg(frames / "Bob_Baker/1.6/vidB1/0000100.jpg", face_photo(146, 146, 100))
    _jpg(frames / "Carol_Cole/1.6/vidC1/0000100.jpg", face_photo(146, 146, 100))
    _jpg(frames / "Dan_Dale/1.6/vidD1/0000100.jpg", face_photo(146, 146, 100))

    # --- Wen 2021 protocol (identity CSVs with CRLF like the originals, one verification list)
    wen = root / "protocols" / "wen2021"
    wen.mkdir(parents=True)
    for split in ("train", "val", "test"):
        lines = ["VoxCeleb1_ID,VGGFace1_ID,Gender,Nationality,Set"]
        lines += [f"{v},{n},{g},{c},dev" for v, n, g, c, s in IDENTITIES if s == split]
        if split == "train":
            v, n, g, c, _ = SET_NONE
            lines.append(f"{v},{n},{g},{c},none")
        (wen / f"vox1_{split}.csv").write_bytes(("\r\n".join(lines) + "\r\n").encode())
    (wen / "verify_v2f_test.txt").write_text(
        "id10003/vidC1/00001.wav Carol_Cole/00000001.jpg\n"
        "id10003/vidC1/00009.wav Carol_Cole/00000009.jpg\n"  # both absent from the trees
        "id10003/vidC1/00002.wav Dan_Dale/00000001.jpg\n"  # corrupt voice
        "id10001/vidA1/00001.wav Carol_Cole/00000002.jpg\n"  # corrupt face
    )

    # --- Nagrani 2018 protocol (tab-separated meta, splits, one veriflist in the old path forms)
    nag = root / "protocols" / "nagrani2018"
    (nag / "veriflist").mkdir(parents=True)
    meta = ["VoxCeleb1 ID\tVGGFace1 ID\tGender\tNationality\tSet"]
    meta += [f"{v}\t{n}\t{g}\t{c}\tdev" for v, n, g, c, _ in IDENTITIES]
    (nag / "vox1_meta.csv").write_text("\n".join(meta) + "\n")
    (nag / "identity_splits.txt").write_text("".join(f"{n} {NAGRANI_SET[s]} \n" for _, n, _, _, s in IDENTITIES))
    (nag / "veriflist" / "veriflist_test_random_unseenunheard.txt").write_text(
        "id,voice-speaker-id,face-speaker-id,label,voice-path,face-path\n"
        "1,3,3,1,Carol_Cole/vidC1_0000001.wav,Carol_Cole/vidC1/0000100.jpg\n"
        "2,3,4,0,Carol_Cole/vidC1_0000001.wav,Dan_Dale/vidD9/0000100.jpg\n"  # absent frame
    )
    return FakeWorld(root, voices, vgg, frames.parent, wen, nag)
