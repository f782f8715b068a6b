"""Voice side: 16 kHz mono -> Fbank(80) -> sentence mean normalisation -> ECAPA-TDNN.

The architecture is SpeechBrain's ``spkrec-ecapa-voxceleb`` embedding model.
Besides the 192-d speaker embedding it returns frame-level features from the
last SE-Res2 block (1024 channels, 100 frames/s), averaged over windows to
``token_rate`` tokens per second, with each token's time span: these are the
voice tokens the multimodal encoder attends over.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
import torchaudio

from ..media import check_audio, load_audio
from .weights import RANDOM_SEED, WeightFile, load_into

SAMPLE_RATE = 16_000
N_MELS = 80
VOICE_DIM = 192
VOICE_TOKEN_DIM = 1024
FRAMES_PER_SECOND = 100  # Fbank hop of 10 ms
ECAPA_CHANNELS = [1024, 1024, 1024, 1024, 3072]


@dataclass
class VoiceFeatures:
    """Encoder output for one recording."""

    embedding: torch.Tensor  # (192,), L2-normalised
    tokens: torch.Tensor  # (T, 1024)
    spans: np.ndarray  # (T, 2) start and end of each token, seconds
    duration_s: float


class PointwiseConv1d(torch.nn.Conv1d):
    """A kernel-1 Conv1d that runs as one matrix product over the frames.

    Why: ECAPA's 1x1 convolutions (every TDNN block's, and the 3072x3072
    multi-layer aggregation: most of its FLOPs) otherwise go through PyTorch's
    generic convolution path. In float32 that path's sums come out in another
    order with one thread than with two; as a matrix product the encoder's
    output is the same bit for bit whatever the thread count, so a match whose
    voice was encoded beside the photos' work (on half the threads) equals the
    same match with the photos cached (on all of them). float32 runs as
    ``linear`` on the (frames, channels) view (1.16-1.18x with one thread, about
    as fast with two); bfloat16 as ``addmm`` on the (channels, frames) layout
    the frames already have (the transposed view is slow there): 1.03-1.06x
    over oneDNN's convolution for the whole encoder with two threads, no gain
    with one, and also thread-count independent (``benchmarks/cpu_paths.py``).
    Outputs agree with Conv1d's to rounding (1e-6 with random weights in
    float32; up to 1e-4 on frame features of mean size ~28 with the released
    ones). Weights and state-dict keys are the Conv1d's.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight[:, :, 0]
        if x.dtype == torch.float32:
            return F.linear(x.transpose(1, 2), w, self.bias).transpose(1, 2)
        if x.ndim == 3 and x.shape[0] == 1 and self.bias is not None:
            return torch.addmm(self.bias[:, None], w, x[0])[None]
        y = torch.matmul(w, x)
        return y if self.bias is None else y + self.bias[:, None]


def _speechbrain_conv1d() -> type:
    from speechbrain.nnet.CNN import Conv1d

    return Conv1d


class ReflectSameConv1d(torch.nn.Module):
    """SpeechBrain's "same", reflect-padded Conv1d without the Python around the product.

    Why: its forward pads every input, kernel-1 convolutions included (a copy
    of the whole input for nothing: ECAPA has 22 of them), and recomputes the
    padding through a few helper calls on each of the encoder's 38
    convolutions. Here kernel-1 convolutions run on the input directly and the
    others on one reflect-padded copy, the same arithmetic as SpeechBrain's, so
    the outputs are equal bit for bit (tested); for the whole bf16 encoder
    1.05-1.10x with one thread, 1.02-1.07x with two (``benchmarks/cpu_paths.py``;
    the convolution that recomputed the reflected edge frames instead of
    padding, which this replaces, no longer paid with the bf16 encoder). Same
    weights and state-dict keys (the class of SpeechBrain's module is swapped
    in place). Inputs it does not handle (other padding modes, strides,
    layouts) go through SpeechBrain's own forward.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if (self.skip_transpose and not self.unsqueeze and self.padding == "same" and self.stride == 1
                and self.padding_mode == "reflect" and x.ndim == 3):
            from speechbrain.nnet.CNN import get_padding_elem

            left, right = get_padding_elem(self.in_channels, 1, self.kernel_size, self.dilation)
            return self.conv(x if left == right == 0 else F.pad(x, (left, right), mode="reflect"))
        return _speechbrain_conv1d().forward(self, x)


def use_reflect_same_convs(net: torch.nn.Module) -> int:
    """Turn every SpeechBrain Conv1d of ``net`` into a :class:`ReflectSameConv1d`; returns how many."""
    base = _speechbrain_conv1d()
    count = 0
    for m in net.modules():
        # SpeechBrain's Conv1d or a subclass that keeps its forward (ECAPA's sets skip_transpose)
        if isinstance(m, base) and not isinstance(m, ReflectSameConv1d) and type(m).forward is base.forward:
            m.__class__ = _reflect_same_class(type(m))
            count += 1
    return count


@functools.lru_cache(maxsize=None)
def _reflect_same_class(cls: type) -> type:
    """ReflectSameConv1d as a subclass of ``cls`` (SpeechBrain's Conv1d or ECAPA's), made once per class."""
    return type(cls.__name__, (ReflectSameConv1d, cls), {"__doc__": ReflectSameConv1d.__doc__})


def use_pointwise_products(net: torch.nn.Module) -> int:
    """Turn every plain kernel-1 Conv1d of ``net`` into a :class:`PointwiseConv1d`; returns how many."""
    count = 0
    for m in net.modules():
        if (type(m) is torch.nn.Conv1d and m.kernel_size == (1,) and m.stride == (1,) and m.dilation == (1,)
                and m.groups == 1 and m.padding in (0, (0,)) and m.padding_mode == "zeros"):
            m.__class__ = PointwiseConv1d
            count += 1
    return count


def attentive_pooling(asp: torch.nn.Module, x: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """ECAPA's attentive statistics pooling over all frames of ``x`` (B, C, T): (B, 2C, 1), float32.

    The same arithmetic as SpeechBrain's ``AttentiveStatisticsPooling`` with
    global context and no padding (every frame counts), rearranged: its
    attention TDNN reads the frames stacked with the utterance's mean and
    standard deviation repeated over time, so that product is split into the
    frames' part and a per-utterance constant computed once (the layer then
    costs a third of its FLOPs). The attention layers run in ``dtype`` (the module's own dtype);
    the statistics and the softmax stay float32. Equal to SpeechBrain's forward
    to float rounding in float32 (tested).
    """
    x = x.float()
    channels = x.shape[1]
    mean = x.mean(dim=2)
    std = (x - mean[..., None]).pow(2).mean(dim=2).clamp(min=asp.eps).sqrt()
    conv = asp.tdnn.conv.conv  # the kernel-1 Conv1d over [frames; mean; std]
    w = conv.weight[:, :, 0]
    context = torch.cat([mean, std], dim=1).to(w.dtype) @ w[:, channels:].T  # (B, 128), once per utterance
    if conv.bias is not None:
        context = context + conv.bias
    h = torch.matmul(w[:, :channels], x.to(dtype)) + context[..., None]
    h = asp.tdnn.norm(asp.tdnn.activation(h))
    logits = asp.conv(asp.tanh(h))
    attn = torch.softmax(logits.float(), dim=2)
    mean = (attn * x).sum(dim=2)
    std = (attn * (x - mean[..., None]).pow(2)).sum(dim=2).clamp(min=asp.eps).sqrt()
    return torch.cat([mean, std], dim=1)[..., None]


def build_voice_network(weights: WeightFile) -> torch.nn.Module:
    """ECAPA-TDNN as in spkrec-ecapa-voxceleb, with the given weights (or seeded random)."""
    from speechbrain.lobes.models.ECAPA_TDNN import ECAPA_TDNN

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(RANDOM_SEED)
        net = ECAPA_TDNN(
            N_MELS,
            channels=ECAPA_CHANNELS,
            kernel_sizes=[5, 3, 3, 3, 1],
            dilations=[1, 2, 3, 4, 1],
            attention_channels=128,
            lin_neurons=VOICE_DIM,
        )
    if weights.path is not None:
        load_into(net, weights.path, "voice")
    use_pointwise_products(net)
    use_reflect_same_convs(net)
    return net.eval().requires_grad_(False)


#: Largest (rate/g) x (16000/g) ratio resampled exactly; the sinc kernel holds about this many floats.
MAX_RESAMPLE_KERNEL = 4_000_000


def resample_ratio(sample_rate: int, target: int = SAMPLE_RATE) -> tuple[int, int]:
    """The (orig, new) pair handed to the polyphase resampler for ``sample_rate`` -> ``target``.

    Why: the sinc kernel has (rate/g) x (target/g) taps (g = gcd), which is
    tiny for the usual rates (44.1 kHz: 441 x 160) but explodes for a rate
    like 8001 Hz (8001 x 16000: 2.6 GB). When the exact pair is over
    ``MAX_RESAMPLE_KERNEL``, the closest fraction whose kernel fits is used
    instead, so the output is at ``target`` within 0.0125 % (a pitch change
    of 0.002 semitones; worst just above a simple rate, e.g. 16001 Hz) and memory stays bounded for any rate. Rates whose exact
    pair fits (8, 11.025, 16, 22.05, 32, 44.1, 48, 96 kHz, ...) are resampled
    exactly, as before.
    """
    g = math.gcd(int(sample_rate), int(target))
    orig, new = int(sample_rate) // g, int(target) // g
    if orig * new <= MAX_RESAMPLE_KERNEL:
        return orig, new
    ratio = Fraction(int(sample_rate), int(target))
    approx = ratio.limit_denominator(max(1, int(math.sqrt(MAX_RESAMPLE_KERNEL / float(ratio)))))
    return approx.numerator, approx.denominator


def resample_to_16k(samples: np.ndarray, sample_rate: int) -> torch.Tensor:
    """Mono float samples at any rate -> 1-D float32 tensor at 16 kHz, in bounded memory (see ``resample_ratio``)."""
    wav = torch.as_tensor(np.ascontiguousarray(samples), dtype=torch.float32)
    if sample_rate != SAMPLE_RATE:
        orig, new = resample_ratio(sample_rate)
        if orig != new:
            wav = torchaudio.functional.resample(wav, orig, new)
    return wav


class VoiceEncoder:
    """Frozen voice encoder. Thread-safe for concurrent calls (no state changes)."""

    def __init__(
        self,
        weights: WeightFile,
        device: torch.device | str = "cpu",
        token_rate: float = 4.0,
        precision: torch.dtype = torch.float32,
    ) -> None:
        """``precision``: the dtype of the TDNN blocks and the aggregation layer (float32 or bfloat16).

        The Fbank front end, the pooling's statistics and the final layers
        always compute in float32; outputs are float32 either way.
        Training extraction keeps float32; see ``faa_core.device.pick_precision``.
        """
        from speechbrain.lobes.features import Fbank

        if token_rate <= 0 or token_rate > FRAMES_PER_SECOND:
            raise ValueError(f"token_rate must be in (0, {FRAMES_PER_SECOND}] tokens/s, got {token_rate}")
        if precision not in (torch.float32, torch.bfloat16):
            raise ValueError(f"precision must be torch.float32 or torch.bfloat16, got {precision}")
        self.device = torch.device(device)
        self.weights = weights
        self.token_rate = token_rate
        self.precision = precision
        self.fbank = Fbank(n_mels=N_MELS, sample_rate=SAMPLE_RATE).to(self.device)
        self.network = build_voice_network(weights).to(self.device)
        self.network.blocks.to(precision)
        self.network.mfa.to(precision)
        self.network.asp.to(precision)  # its statistics stay float32 (see attentive_pooling)

    @torch.inference_mode()
    def features(self, wav16k: torch.Tensor) -> torch.Tensor:
        """(B, samples) at 16 kHz -> mean-normalised log-mel Fbank (B, frames, 80)."""
        feats = self.fbank(wav16k.to(self.device))
        return feats - feats.mean(dim=1, keepdim=True)

    def embed_audio(self, audio: Any, sample_rate: int | None = None, name: str = "the recording") -> VoiceFeatures:
        """File / bytes / (rate, array) / array + rate, any rate, mono or stereo -> checked, embedded."""
        rec = check_audio(load_audio(audio, sample_rate, name=name), name)
        return self.encode(resample_to_16k(rec.samples, rec.sample_rate))

    @torch.inference_mode()
    def encode(self, wav16k: torch.Tensor) -> VoiceFeatures:
        """Embed one 16 kHz mono recording (1-D tensor)."""
        if wav16k.ndim != 1:
            raise ValueError(f"expected a 1-D 16 kHz waveform, got shape {tuple(wav16k.shape)}")
        frames, embedding = self.forward_features(self.features(wav16k[None]))
        tokens, spans = self.pool_tokens(frames[0])
        return VoiceFeatures(
            embedding=embedding[0], tokens=tokens, spans=spans, duration_s=wav16k.numel() / SAMPLE_RATE
        )

    def forward_features(self, feats: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """ECAPA-TDNN forward keeping the last block's frames: ((B, T, 1024), (B, 192) normalised)."""
        net = self.network
        x = feats.transpose(1, 2).to(self.precision)
        outputs = []
        for i, block in enumerate(net.blocks):
            x = block(x) if i == 0 else block(x, lengths=None)
            outputs.append(x)
        frames = outputs[-1].float()
        x = net.mfa(torch.cat(outputs[1:], dim=1))
        x = net.fc(net.asp_bn(attentive_pooling(net.asp, x, self.precision))).squeeze(-1)
        return frames.transpose(1, 2), F.normalize(x, dim=1)

    def pool_tokens(self, frames: torch.Tensor) -> tuple[torch.Tensor, np.ndarray]:
        """Average (T, C) frames over windows of 1/token_rate seconds (last window may be short)."""
        window = max(1, int(round(FRAMES_PER_SECOND / self.token_rate)))
        n = frames.shape[0]
        count = -(-n // window)
        pad = count * window - n
        padded = F.pad(frames.T, (0, pad)).reshape(frames.shape[1], count, window)
        sizes = torch.full((count,), float(window))
        sizes[-1] = window - pad
        tokens = (padded.sum(-1) / sizes.to(frames.device)).T.contiguous()
        starts = np.arange(count) * window / FRAMES_PER_SECOND
        ends = np.minimum(starts + window / FRAMES_PER_SECOND, n / FRAMES_PER_SECOND)
        return tokens, np.stack([starts, ends], axis=1)
