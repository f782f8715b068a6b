"""Face side: MTCNN detection of every face, crop to 160x160, InceptionResnetV1.

Per face it gives the 512-d L2-normalised identity embedding and the 8x8x896
feature map after ``repeat_2`` (64 spatial tokens for the multimodal encoder),
plus the crop itself for display. Detection runs on a copy of the photo scaled
down to ``detect_max_side`` pixels (MTCNN's cost grows with pixels) and crops
are cut from the full-resolution original with :func:`crop_face`, the one crop
function of training extraction, the app and the CLI.

What the shrunk copy costs, measured on four press photos (1125x1612 to
2048x1991, faces of 225-1024 px): boxes found on the 640 px copy differ from
full-resolution detection by 2.4-5.0 % of the face side at most (mean
absolute crop difference 14-17 of 255), while full-resolution detection took
2-5x longer (12-20 s against 4-6 s per photo on a shared 2-core CPU). The
effect on identity embeddings could not be measured here (no pretrained
weights offline; random-weight embeddings of the two crops have cosine
1.0000, which says nothing). Both detections are MTCNN outputs at different
scales, so neither box is the truth; training and inference use the same
shrink, so their crops agree with each other.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ..errors import ImageTooThinError
from ..media import load_image
from .weights import RANDOM_SEED, WeightFile, load_into

CROP_SIZE = 160
FACE_DIM = 512
FACE_TOKEN_DIM = 896
FACE_GRID = (8, 8)

# InceptionResnetV1 stages up to and including the token layer.
_STEM = (
    "conv2d_1a", "conv2d_2a", "conv2d_2b", "maxpool_3a", "conv2d_3b",
    "conv2d_4a", "conv2d_4b", "repeat_1", "mixed_6a", "repeat_2",
)


@dataclass
class DetectedFace:
    """One face found in a photo."""

    box: np.ndarray  # (4,) x1, y1, x2, y2 in the original image's pixels
    probability: float  # MTCNN's face probability
    crop: np.ndarray  # (160, 160, 3) uint8, the encoder's input


@dataclass
class ImageDetections:
    """What :meth:`FaceEncoder.detect_batch` found in one image: its faces, or why it could not be searched."""

    faces: list[DetectedFace]
    error: Exception | None = None


@dataclass
class FaceFeatures:
    """Encoder output for N faces."""

    embeddings: torch.Tensor  # (N, 512), L2-normalised
    tokens: torch.Tensor  # (N, 64, 896), row-major over the 8x8 grid


def build_face_network(weights: WeightFile) -> torch.nn.Module:
    """InceptionResnetV1 with the given weights (or seeded random ones), in eval mode."""
    from facenet_pytorch import InceptionResnetV1

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(RANDOM_SEED)
        net = InceptionResnetV1(pretrained=None, classify=False)
    if weights.path is not None:
        # The release file also holds the 8631-way VGGFace2 classifier; it is not used.
        load_into(net, weights.path, "face", ignore_prefixes=("logits.",))
    return net.eval().requires_grad_(False).to(memory_format=torch.channels_last)


class ChannelsLast(torch.nn.Module):
    """Runs a convolutional network on channels-last (NHWC) input.

    Why: on CPU, MTCNN's convolutions and max-pools run 2-3x faster per call in
    that layout; whole detection of four photos took 1.26x less time with one
    torch thread and 1.17x with two, and InceptionResnetV1 (also channels-last)
    1.37x and 1.05x (``benchmarks/cpu_paths.py``, on and off side by side).
    Outputs equal the default layout's to float32 rounding (tested: boxes within
    1e-3 px of facenet's own MTCNN, embeddings within 1e-5). The wrapped network
    keeps its own weights under ``net``.
    """

    def __init__(self, net: torch.nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor):
        return self.net(x.contiguous(memory_format=torch.channels_last))


def build_face_detector(device: torch.device | str = "cpu", min_face_size: int = 20):
    """MTCNN with the P/R/O-net weights that ship inside facenet-pytorch, its nets run channels-last."""
    from facenet_pytorch import MTCNN

    mtcnn = MTCNN(keep_all=True, min_face_size=min_face_size, device=torch.device(device)).eval()
    for name in ("pnet", "rnet", "onet"):
        net = getattr(mtcnn, name)
        setattr(mtcnn, name, ChannelsLast(net.to(memory_format=torch.channels_last)))
    return mtcnn


def detector_input(images: Sequence[Image.Image]) -> torch.Tensor:
    """Equal-size images -> the (N, H, W, 3) uint8 batch MTCNN.detect takes, as a view of channels-first memory.

    Why: facenet-pytorch's cascade permutes its input to (N, 3, H, W) and
    converts it to float; from this view that float copy is contiguous, and the
    area resampling of its image pyramid and box crops (half of detection's
    time) ran 1.8x faster than on the channels-last copy it makes from PIL
    images. Boxes and probabilities are identical (tested).
    """
    pixels = np.stack([np.asarray(im if im.mode == "RGB" else im.convert("RGB"), dtype=np.uint8) for im in images])
    return torch.from_numpy(pixels).permute(0, 3, 1, 2).contiguous().permute(0, 2, 3, 1)


def crop_face(image: Image.Image, box: np.ndarray, size: int = CROP_SIZE, margin: float = 0.0) -> np.ndarray:
    """Cut a box (plus ``margin`` pixels of the output scale) and resize it to size x size.

    The one crop function of the project: training extraction and the app/CLI
    both cut their crops here, so a face gives the same crop in both.
    """
    x1, y1, x2, y2 = (float(v) for v in box)
    mx = margin * (x2 - x1) / (size - margin)
    my = margin * (y2 - y1) / (size - margin)
    x1, y1 = max(x1 - mx / 2, 0.0), max(y1 - my / 2, 0.0)
    x2, y2 = min(x2 + mx / 2, image.width), min(y2 + my / 2, image.height)
    # Truncated as facenet-pytorch's extract_face does, so crops equal the ones its encoder was used with.
    region = image.crop((int(x1), int(y1), int(x2), int(y2)))
    return np.asarray(region.resize((size, size), Image.BILINEAR), dtype=np.uint8)


class FaceEncoder:
    """Frozen face detector + encoder. Thread-safe for concurrent calls (no state changes)."""

    def __init__(
        self,
        weights: WeightFile,
        device: torch.device | str = "cpu",
        detect_max_side: int = 640,
        min_face_size: int = 20,
        min_face_probability: float = 0.9,
        margin: float = 0.0,
        precision: torch.dtype = torch.float32,
    ) -> None:
        """``precision``: the dtype of InceptionResnetV1's convolutions (float32 or bfloat16).

        Detection (MTCNN) and the embedding's final linear layer and batch norm
        always compute in float32: MTCNN's thresholds decide which faces exist,
        and its small convolutions gain nothing from bf16 (measured). Tokens and
        embeddings are float32 either way; see ``faa_core.device.pick_precision``.
        """
        if precision not in (torch.float32, torch.bfloat16):
            raise ValueError(f"precision must be torch.float32 or torch.bfloat16, got {precision}")
        self.precision = precision
        self.device = torch.device(device)
        self.weights = weights
        self.detect_max_side = detect_max_side
        self.min_face_probability = min_face_probability
        self.margin = margin
        self.detector = build_face_detector(self.device, min_face_size)
        self.network = build_face_network(weights).to(self.device)
        for name, module in self.network.named_children():
            if name not in ("last_linear", "last_bn"):
                module.to(precision)

    @torch.inference_mode()
    def detect(self, image: Image.Image) -> list[DetectedFace]:
        """All faces above the probability threshold, left to right."""
        small, scale = self._detection_copy(image)
        boxes, probs = self.detector.detect(detector_input([small]))
        return self._faces_from(image, boxes[0], probs[0], scale)

    def _detection_copy(self, image: Image.Image) -> tuple[Image.Image, float]:
        """The copy MTCNN sees (shrunk to ``detect_max_side``) and its scale; shared by detect and detect_batch.

        MTCNN cannot search an image whose short side is below its minimum face
        size (its pyramid is empty). For a very elongated image the shrink is
        reduced so that the short side keeps that size, as long as the copy
        stays within ``detect_max_side ** 2`` pixels; otherwise (or when the
        original is already that thin) ``ImageTooThinError`` says so.
        """
        short, long = min(image.width, image.height), max(image.width, image.height)
        need = int(getattr(self.detector, "min_face_size", 20))
        scale = min(1.0, self.detect_max_side / long)
        if round(short * scale) < need:
            scale = min(1.0, need / short)
            area = round(image.width * scale) * round(image.height * scale)
            if short < need or area > self.detect_max_side**2:
                raise ImageTooThinError(
                    f"the image ({image.width}x{image.height} pixels) is too thin to hold a face: the "
                    f"detector needs {need} px on the short side within {self.detect_max_side**2:,} "
                    "pixels; give a photo of the face"
                )
        small = image
        if scale < 1.0:
            small = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))), Image.BILINEAR)
        return small, scale

    def _faces_from(self, image: Image.Image, boxes: Any, probs: Any, scale: float) -> list[DetectedFace]:
        """MTCNN's raw boxes on the copy -> the kept faces of ``image`` with their crops, left to right."""
        if boxes is None:
            return []
        boxes = np.asarray(boxes, dtype=float).reshape(-1, 4) / scale
        probs = np.asarray(probs, dtype=float).reshape(-1)
        faces = [
            DetectedFace(box=b, probability=float(p), crop=crop_face(image, b, margin=self.margin))
            for b, p in zip(boxes, probs)
            if p >= self.min_face_probability and b[2] - b[0] >= 4 and b[3] - b[1] >= 4
        ]
        faces.sort(key=lambda f: (f.box[0], f.box[1]))
        return faces

    @torch.inference_mode()
    def detect_batch(self, images: Sequence[Image.Image]) -> list[ImageDetections]:
        """:meth:`detect` for several images, one MTCNN call per group of equal detection size.

        Why: extraction and multi-photo requests detect many images; MTCNN runs a
        same-size batch in one pass. Each image gets exactly the faces and crops
        :meth:`detect` would give it (same copy, same filtering, same crop
        function), and a failure is confined to its image: a group whose batched
        call fails is retried image by image, and each entry carries either the
        faces or the error.
        """
        out: list[ImageDetections | None] = [None] * len(images)
        groups: dict[tuple[int, int], list[tuple[int, Image.Image, float]]] = {}
        for i, image in enumerate(images):
            try:
                small, scale = self._detection_copy(image)
            except Exception as exc:  # the image's problem, not the batch's
                out[i] = ImageDetections([], exc)
                continue
            groups.setdefault(small.size, []).append((i, small, scale))
        for members in groups.values():
            raw = None
            if len(members) > 1:
                try:
                    raw = self.detector.detect(detector_input([small for _, small, _ in members]))
                except Exception:  # one image spoils the batch: fall back to one call per image below
                    raw = None
            for k, (i, _, scale) in enumerate(members):
                try:
                    if raw is None:
                        out[i] = ImageDetections(self.detect(images[i]))
                    else:
                        out[i] = ImageDetections(self._faces_from(images[i], raw[0][k], raw[1][k], scale))
                except Exception as exc:  # the image's problem, not the batch's
                    out[i] = ImageDetections([], exc)
        return [r for r in out if r is not None]

    def embed_image(self, image: Any, name: str | None = None) -> tuple[list[DetectedFace], FaceFeatures | None]:
        """Path / bytes / PIL image / array -> every face in it and their features (None if no face)."""
        faces = self.detect(load_image(image, name=name))
        return faces, (self.encode([f.crop for f in faces]) if faces else None)

    @torch.inference_mode()
    def encode(self, crops: Sequence[np.ndarray] | np.ndarray) -> FaceFeatures:
        """Embed aligned 160x160 uint8 crops in one batch."""
        batch = np.stack([np.asarray(c, dtype=np.uint8) for c in crops])
        if batch.ndim != 4 or batch.shape[1:] != (CROP_SIZE, CROP_SIZE, 3):
            raise ValueError(f"face crops must be (N, {CROP_SIZE}, {CROP_SIZE}, 3) uint8, got {batch.shape}")
        # (N, H, W, 3) -> an NCHW view of channels-last memory, the layout the network runs fastest in
        x = torch.from_numpy(batch).to(self.device).permute(0, 3, 1, 2).float()
        x = (x - 127.5) / 128.0  # facenet's fixed image standardisation
        return self.forward_features(x)

    def forward_features(self, x: torch.Tensor) -> FaceFeatures:
        """Run InceptionResnetV1 on standardised crops, keeping the repeat_2 map."""
        net = self.network
        x = x.to(self.precision).contiguous(memory_format=torch.channels_last)  # see ChannelsLast
        for name in _STEM:
            x = getattr(net, name)(x)
        tokens = x.flatten(2).transpose(1, 2).float().contiguous()  # (N, 64, 896), whatever the map's layout
        x = net.block8(net.repeat_3(net.mixed_7a(x)))
        x = net.last_bn(net.last_linear(net.avgpool_1a(x).flatten(1).float()))
        return FaceFeatures(embeddings=F.normalize(x, dim=1), tokens=tokens)
