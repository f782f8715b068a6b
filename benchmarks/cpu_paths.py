"""What each CPU path of the encoders buys, measured side by side in one run.

Each row switches one path on and off, everything else equal:

- mtcnn channels-last: MTCNN's nets channels-last (``ChannelsLast``) vs the default layout;
- mtcnn channels-first input: the batch handed to MTCNN as a view of
  channels-first memory (``detector_input``) vs PIL images;
- inception channels-last: InceptionResnetV1 channels-last vs the default layout;
- inception bf16: its convolutions in bfloat16 vs float32 (where bf16 is native);
- ecapa pointwise: ECAPA's kernel-1 convolutions as matrix products
  (``PointwiseConv1d``) vs the generic convolution, in float32;
- ecapa bf16: its TDNN blocks in bfloat16 vs float32 (where bf16 is native);
- ecapa pointwise bf16: the kernel-1 convolutions as ``addmm`` on (channels,
  frames) vs oneDNN's convolution, in the bf16 encoder (where bf16 is native);
- ecapa reflect-same convs: SpeechBrain's convolutions with the padding of
  kernel-1 inputs and the wrapper code skipped (``ReflectSameConv1d``) vs its
  own forward, in the encoder as the app runs it;
- ecapa pooling rearranged: ``attentive_pooling`` (utterance statistics projected
  once, attention in the encoder's precision) vs SpeechBrain's pooling module in
  float32, in the encoder as the app runs it (bf16 where native).

This script builds the encoders once, then times each stage with the path on
and off, alternating on and off every repeat so both see the same machine
load, on the pipeline benchmark's media (4 photos at 640x480, 5 s of speech).
Prints a table, then one JSON line with the p50s and ratios (off / on).

    python benchmarks/cpu_paths.py [--repeats 10] [--threads 2]
"""

from __future__ import annotations

import argparse
import copy
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from faa_core.encoders import FaceEncoder, VoiceEncoder, resample_to_16k, resolve_weights
from faa_core.device import native_bf16
from faa_core.encoders.face import _STEM, ChannelsLast, detector_input
import faa_core.encoders.voice as voice_module
from faa_core.encoders.voice import PointwiseConv1d, ReflectSameConv1d
from faa_core.encoders.voice import attentive_pooling as rearranged_pooling
from faa_core.media import load_audio
from faa_core.pipeline import MATCH_MIN_FACE_SIZE
from pipeline_latency import make_photos, make_speech


def plain_detector(mtcnn):
    """A copy of the detector whose nets run in the default (NCHW) layout."""
    out = copy.deepcopy(mtcnn)
    for name in ("pnet", "rnet", "onet"):
        net = getattr(out, name)
        inner = net.net if isinstance(net, ChannelsLast) else net
        setattr(out, name, inner.to(memory_format=torch.contiguous_format))
    return out


def plain_voice_network(net):
    """A copy of ECAPA with its kernel-1 convolutions back on the generic convolution path."""
    out = copy.deepcopy(net)
    for m in out.modules():
        if isinstance(m, PointwiseConv1d):
            m.__class__ = torch.nn.Conv1d
    return out


def speechbrain_convs_network(net):
    """A copy of ECAPA whose convolutions run SpeechBrain's own forward again."""
    out = copy.deepcopy(net)
    for m in out.modules():
        if isinstance(m, ReflectSameConv1d):
            m.__class__ = type(m).__mro__[2]  # ECAPA's own Conv1d class
    return out


def p50(times: list[float]) -> float:
    return float(np.median(times))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    weights = resolve_weights("random")
    face = FaceEncoder(weights.face, min_face_size=MATCH_MIN_FACE_SIZE)
    voice = VoiceEncoder(weights.voice)
    with tempfile.TemporaryDirectory() as tmp:
        paths, kind = make_photos(4, Path(tmp))
        images = [Image.open(p).convert("RGB") for p in paths]
        wav = Path(tmp) / "speech.wav"
        make_speech(wav, 5.0)
        speech = load_audio(wav)
    small = [face._detection_copy(im)[0] for im in images]
    crops = [f.crop for im in images for f in face.detect(im)][:4]
    batch = torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2).float().sub(127.5).div(128.0)
    feats = voice.features(resample_to_16k(speech.samples, speech.sample_rate)[None])
    fast_det, slow_det = face.detector, plain_detector(face.detector)
    slow_face = copy.deepcopy(face.network).to(memory_format=torch.contiguous_format)
    fast_voice, slow_voice = voice.network, plain_voice_network(voice.network)

    def slow_face_forward(x):  # the encoder's forward, with no channels-last conversion anywhere
        y = x.contiguous()
        for name in _STEM:
            y = getattr(slow_face, name)(y)
        y = slow_face.block8(slow_face.repeat_3(slow_face.mixed_7a(y)))
        return slow_face.last_bn(slow_face.last_linear(slow_face.avgpool_1a(y).flatten(1)))

    def voice_forward(net, encoder=voice):
        kept = encoder.network
        encoder.network = net
        try:
            return encoder.forward_features(feats)
        finally:
            encoder.network = kept

    stages = {
        "mtcnn channels-last": (lambda: fast_det.detect(small), lambda: slow_det.detect(small)),
        "mtcnn channels-first input": (lambda: fast_det.detect(detector_input(small)), lambda: fast_det.detect(small)),
        "inception channels-last": (lambda: face.forward_features(batch), lambda: slow_face_forward(batch)),
        "ecapa pointwise": (lambda: voice_forward(fast_voice), lambda: voice_forward(slow_voice)),
    }
    if native_bf16(torch.device("cpu")):
        face16 = FaceEncoder(weights.face, min_face_size=MATCH_MIN_FACE_SIZE, precision=torch.bfloat16)
        voice16 = VoiceEncoder(weights.voice, precision=torch.bfloat16)
        stages["inception bf16"] = (lambda: face16.forward_features(batch), lambda: face.forward_features(batch))
        stages["ecapa bf16"] = (lambda: voice16.forward_features(feats), lambda: voice.forward_features(feats))
        conv16 = plain_voice_network(voice16.network)
        stages["ecapa pointwise bf16"] = (lambda: voice16.forward_features(feats),
                                          lambda: voice_forward(conv16, voice16))
        app_voice = voice16
    else:
        print("this CPU has no native bf16: the bf16 rows are left out")
        app_voice = voice
    sb_convs = speechbrain_convs_network(app_voice.network)
    stages["ecapa reflect-same convs"] = (lambda: app_voice.forward_features(feats),
                                          lambda: voice_forward(sb_convs, app_voice))
    module_pooling = copy.deepcopy(app_voice.network.asp).float()

    def speechbrain_pooling_forward():
        voice_module.attentive_pooling = lambda asp, x, dtype: module_pooling(x.float(), lengths=None)
        try:
            return app_voice.forward_features(feats)
        finally:
            voice_module.attentive_pooling = rearranged_pooling

    stages["ecapa pooling rearranged"] = (lambda: app_voice.forward_features(feats), speechbrain_pooling_forward)
    times = {name: {"on": [], "off": []} for name in stages}
    with torch.inference_mode():
        for on, off in stages.values():  # warm-up
            on(), off()
        for _ in range(args.repeats):
            for name, (on, off) in stages.items():
                for label, fn in (("on", on), ("off", off)):
                    t0 = time.perf_counter()
                    fn()
                    times[name][label].append(time.perf_counter() - t0)
    print(f"encoder CPU paths, {args.repeats} repeats alternating, {args.threads} torch threads, media: {kind}")
    print(f"{'stage':>26} {'off p50 s':>10} {'on p50 s':>10} {'off/on':>7}")
    result = {}
    for name, t in times.items():
        off, on = p50(t["off"]), p50(t["on"])
        print(f"{name:>26} {off:10.4f} {on:10.4f} {off / on:7.2f}")
        result[name] = {"off_p50_s": round(off, 4), "on_p50_s": round(on, 4), "speedup": round(off / on, 3)}
    print(json.dumps({"threads": args.threads, "repeats": args.repeats, "stages": result}))


if __name__ == "__main__":
    main()
