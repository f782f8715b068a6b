"""Tests for faa_core.encoders.voice: Fbank -> ECAPA-TDNN embedding, frame tokens and their time spans."""

from __future__ import annotations

import math

import numpy as np
import pytest
import soundfile as sf
import torch
import torch.nn.functional as F
import torchaudio

from faa_core.encoders import SAMPLE_RATE, VOICE_DIM, VOICE_TOKEN_DIM, VoiceEncoder, VoiceFeatures, resample_to_16k
from faa_core.encoders.voice import FRAMES_PER_SECOND, N_MELS
from faa_core.media import check_audio, load_audio


@pytest.fixture(scope="module")
def speech16k(speech_wav) -> torch.Tensor:
    audio = check_audio(load_audio(speech_wav))
    return resample_to_16k(audio.samples, audio.sample_rate)


@pytest.fixture(scope="module")
def speech_features(voice_encoder, speech16k) -> VoiceFeatures:
    return voice_encoder.encode(speech16k)


def _bare_encoder(token_rate: float) -> VoiceEncoder:
    """A VoiceEncoder with only ``token_rate`` set, to test pool_tokens without building networks."""
    enc = VoiceEncoder.__new__(VoiceEncoder)
    enc.token_rate = token_rate
    return enc


def test_resample_to_16k(speech_wav, speech16k):
    audio = load_audio(speech_wav)
    assert audio.sample_rate == 22050
    assert speech16k.dtype == torch.float32 and speech16k.ndim == 1
    assert abs(speech16k.numel() - len(audio.samples) * SAMPLE_RATE / 22050) <= 2
    x = np.random.default_rng(0).standard_normal(1600).astype(np.float32)
    assert torch.equal(resample_to_16k(x, SAMPLE_RATE), torch.from_numpy(x))  # 16 kHz passes as is


def test_encode_speech_shapes(speech_features, speech16k, voice_encoder):
    out = speech_features
    assert isinstance(out, VoiceFeatures)
    assert out.embedding.shape == (VOICE_DIM,) == (192,)
    assert out.embedding.dtype == torch.float32
    assert out.embedding.norm().item() == pytest.approx(1.0, abs=1e-5)
    frames = voice_encoder.features(speech16k[None]).shape[1]
    assert voice_encoder.token_rate == 4.0
    assert out.tokens.shape == (math.ceil(frames / 25), VOICE_TOKEN_DIM)
    assert torch.isfinite(out.tokens).all()
    assert out.duration_s == pytest.approx(speech16k.numel() / SAMPLE_RATE)
    assert 2.0 < out.duration_s < 8.0


def test_spans(speech_features):
    spans = speech_features.spans
    assert spans.shape == (speech_features.tokens.shape[0], 2)
    assert spans[0, 0] == 0.0
    assert np.all(spans[:, 1] > spans[:, 0])
    assert np.all(np.diff(spans[:, 0]) > 0) and np.all(np.diff(spans[:, 1]) > 0)
    np.testing.assert_allclose(spans[1:, 0], spans[:-1, 1])  # contiguous windows
    np.testing.assert_allclose(spans[:-1, 1] - spans[:-1, 0], 0.25)
    assert spans[-1, 1] == pytest.approx(speech_features.duration_s, abs=1.5 / FRAMES_PER_SECOND)


def test_features_are_mean_normalised_fbank(voice_encoder, speech16k):
    feats = voice_encoder.features(speech16k[None])
    assert feats.shape[0] == 1 and feats.shape[2] == N_MELS
    assert feats.shape[1] == pytest.approx(speech16k.numel() / SAMPLE_RATE * FRAMES_PER_SECOND, abs=2)
    torch.testing.assert_close(feats.mean(dim=1), torch.zeros(1, N_MELS), atol=1e-4, rtol=0)


def test_embedding_equals_ecapa_forward(voice_encoder, speech16k, speech_features):
    net = voice_encoder.network
    assert not net.training
    feats = voice_encoder.features(speech16k[None])
    captured = {}
    handle = net.blocks[-1].register_forward_hook(lambda m, i, o: captured.setdefault("frames", o))
    try:
        with torch.no_grad():
            ref = net(feats)  # SpeechBrain's own forward: (B, 1, 192)
    finally:
        handle.remove()
    assert ref.shape == (1, 1, VOICE_DIM)
    torch.testing.assert_close(speech_features.embedding, F.normalize(ref.reshape(1, -1), dim=1)[0], atol=1e-5, rtol=1e-4)
    frames, emb = voice_encoder.forward_features(feats)
    torch.testing.assert_close(frames, captured["frames"].transpose(1, 2), atol=1e-5, rtol=1e-4)
    assert frames.shape == (1, feats.shape[1], VOICE_TOKEN_DIM)
    # tokens are the means of consecutive 25-frame windows (the last one shorter)
    tokens = speech_features.tokens
    n = frames.shape[1]
    for i in range(tokens.shape[0]):
        window = frames[0, i * 25 : min((i + 1) * 25, n)]
        torch.testing.assert_close(tokens[i], window.mean(dim=0), atol=1e-5, rtol=1e-4)


def _with_one_then_two_threads(fn):
    """[fn() with 1 intra-op thread, fn() with 2], without gradients; the thread count is restored."""
    threads = torch.get_num_threads()
    outputs = []
    try:
        for n in (1, 2):
            torch.set_num_threads(n)
            with torch.no_grad():
                outputs.append(fn())
    finally:
        torch.set_num_threads(threads)
    return outputs


def test_pointwise_products_equal_speechbrains_convolutions(voice_encoder, speech16k):
    """The kernel-1 convolutions run as matrix products; the network's outputs equal plain Conv1d's."""
    import copy

    from faa_core.encoders.voice import PointwiseConv1d, use_pointwise_products

    net = voice_encoder.network
    converted = [m for m in net.modules() if isinstance(m, PointwiseConv1d)]
    assert len(converted) == 16  # per SE-Res2 block 2 TDNNs + 2 SE convs (x3), MFA, 2 in the pooling, the final fc
    plain = copy.deepcopy(net)
    for m in plain.modules():
        if isinstance(m, PointwiseConv1d):
            m.__class__ = torch.nn.Conv1d
    assert use_pointwise_products(plain) == 16 and use_pointwise_products(plain) == 0  # idempotent
    for m in plain.modules():
        if isinstance(m, PointwiseConv1d):
            m.__class__ = torch.nn.Conv1d
    feats = voice_encoder.features(speech16k[None])
    outputs = []
    for ref, got in _with_one_then_two_threads(lambda: (plain(feats), net(feats))):
        assert ref.shape == got.shape == (1, 1, VOICE_DIM)
        torch.testing.assert_close(got, ref, atol=1e-5, rtol=1e-5)
        outputs.append(got)
    assert torch.equal(outputs[0], outputs[1])  # the same bits with one thread and with two
    assert set(plain.state_dict()) == set(net.state_dict())


@pytest.mark.parametrize("batch", [1, 3])
def test_pointwise_product_in_bfloat16_matches_the_convolution_with_any_thread_count(batch):
    """bfloat16 1x1 convolutions run as addmm / matmul on (channels, frames): oneDNN's convolution to bf16 rounding,
    and the same bits with one thread and with two."""
    from faa_core.encoders.voice import PointwiseConv1d

    torch.manual_seed(0)
    conv = torch.nn.Conv1d(256, 128, 1).to(torch.bfloat16)
    x = torch.randn(batch, 256, 300).to(torch.bfloat16)
    ref = conv(x)
    conv.__class__ = PointwiseConv1d
    outputs = _with_one_then_two_threads(lambda: conv(x))
    got = outputs[0]
    assert got.dtype == torch.bfloat16 and got.shape == (batch, 128, 300)
    torch.testing.assert_close(got.float(), ref.float(), atol=0.02, rtol=0.01)  # two bf16 roundings of values ~0.6
    assert torch.equal(outputs[0], outputs[1])


def test_reflect_same_convolutions_equal_speechbrains_bit_for_bit(voice_encoder, speech16k):
    """Every ECAPA convolution runs without SpeechBrain's wrapper code; outputs are its own forward's, exactly."""
    import copy

    from faa_core.encoders.voice import ReflectSameConv1d, use_reflect_same_convs

    net = voice_encoder.network
    swapped = [m for m in net.modules() if isinstance(m, ReflectSameConv1d)]
    assert len(swapped) == 38  # block 0, 3 x (2 TDNNs + 7 Res2Net convs + 2 SE convs), MFA, pooling's 2, fc
    assert sum(m.kernel_size == 1 for m in swapped) == 16  # 3 x (2 TDNNs + 2 SE convs), MFA, pooling's 2, fc
    assert use_reflect_same_convs(net) == 0  # idempotent
    plain = copy.deepcopy(net)
    for m in plain.modules():
        if isinstance(m, ReflectSameConv1d):
            m.__class__ = type(m).__mro__[2]  # ECAPA's own Conv1d class
    assert not any(isinstance(m, ReflectSameConv1d) for m in plain.modules())
    feats = voice_encoder.features(speech16k[None])
    with torch.no_grad():
        assert torch.equal(net(feats), plain(feats))
        conv = net.blocks[2].res2net_block.blocks[0].conv  # kernel 3, dilation 3: 3 frames reflected each side
        assert (conv.kernel_size, conv.dilation) == (3, 3)
        x = torch.randn(1, conv.in_channels, 40)
        assert torch.equal(conv(x), type(conv).__mro__[2].forward(conv, x))
        with pytest.raises(RuntimeError):  # too short to reflect: the same error as SpeechBrain's
            conv(x[..., :3])
        short = feats[:, :5]  # 5 frames: just long enough for the widest reflection (4 frames)
        assert torch.equal(net(short), plain(short))
    assert set(plain.state_dict()) == set(net.state_dict())


@pytest.mark.parametrize("frames", [1, 7, 500])
def test_attentive_pooling_equals_speechbrains(voice_encoder, frames):
    """The rearranged pooling (utterance statistics projected once) gives SpeechBrain's pooled statistics."""
    from faa_core.encoders.voice import attentive_pooling

    asp = voice_encoder.network.asp
    x = 3 * torch.randn(2, asp.tdnn.conv.in_channels // 3, frames, generator=torch.Generator().manual_seed(frames))
    with torch.no_grad():
        ref = asp(x, lengths=None)
        got = attentive_pooling(asp, x)
    assert got.shape == ref.shape == (2, 2 * x.shape[1], 1) and got.dtype == torch.float32
    torch.testing.assert_close(got, ref, atol=1e-4, rtol=1e-4)


def test_bf16_encoder_stays_within_the_stated_tolerance(voice_encoder, speech16k, speech_features):
    """bf16 TDNN blocks (the app's choice where native): embedding within cosine 1e-4, tokens within 2 %."""
    half = VoiceEncoder(voice_encoder.weights, token_rate=voice_encoder.token_rate, precision=torch.bfloat16)
    assert half.network.blocks[0].conv.conv.weight.dtype == torch.bfloat16
    assert half.network.asp_bn.norm.weight.dtype == half.network.fc.conv.weight.dtype == torch.float32  # final layers
    got = half.encode(speech16k)
    assert got.embedding.dtype == got.tokens.dtype == torch.float32
    assert float(got.embedding @ speech_features.embedding) > 1 - 1e-4
    rel = (got.tokens - speech_features.tokens).norm() / speech_features.tokens.norm()
    assert 0 < float(rel) < 0.02  # really computed in bf16 (not equal), and close
    np.testing.assert_array_equal(got.spans, speech_features.spans)
    with pytest.raises(ValueError, match="precision"):
        VoiceEncoder(voice_encoder.weights, precision=torch.float16)


def test_encode_is_deterministic(voice_encoder, speech16k, speech_features):
    again = voice_encoder.encode(speech16k)
    assert torch.equal(again.embedding, speech_features.embedding)
    assert torch.equal(again.tokens, speech_features.tokens)


def test_encode_rejects_batched_input(voice_encoder, speech16k):
    with pytest.raises(ValueError, match="1-D"):
        voice_encoder.encode(speech16k[None])


@pytest.mark.parametrize("rate", [0, -1.0, 100.5, 1000])
def test_token_rate_validation(random_weights, rate):
    with pytest.raises(ValueError, match="token_rate"):
        VoiceEncoder(random_weights.voice, token_rate=rate)


@pytest.mark.parametrize(
    "rate, n, window",
    [(4.0, 367, 25), (4.0, 100, 25), (4.0, 10, 25), (1.0, 250, 100), (2.5, 101, 40), (100.0, 7, 1), (0.5, 150, 200)],
)
def test_pool_tokens(rate, n, window):
    frames = torch.randn(n, 6, generator=torch.Generator().manual_seed(n))
    tokens, spans = _bare_encoder(rate).pool_tokens(frames)
    count = math.ceil(n / window)
    assert tokens.shape == (count, 6) and spans.shape == (count, 2)
    for i in range(count):
        torch.testing.assert_close(tokens[i], frames[i * window : (i + 1) * window].mean(dim=0))
        assert spans[i, 0] == pytest.approx(i * window / FRAMES_PER_SECOND)
        assert spans[i, 1] == pytest.approx(min((i + 1) * window, n) / FRAMES_PER_SECOND)


def test_other_token_rate_encoder(random_weights, speech16k, speech_features):
    enc = VoiceEncoder(random_weights.voice, token_rate=2.0)
    out = enc.encode(speech16k)
    torch.testing.assert_close(out.embedding, speech_features.embedding)
    frames = enc.features(speech16k[None]).shape[1]
    assert out.tokens.shape == (math.ceil(frames / 50), VOICE_TOKEN_DIM)


def test_stereo_8k_file_goes_through_resample(tmp_path, speech16k, voice_encoder):
    x8 = torchaudio.functional.resample(speech16k, SAMPLE_RATE, 8000).numpy()
    path = tmp_path / "stereo8k.wav"
    sf.write(str(path), np.stack([x8, 0.5 * x8], axis=1), 8000, subtype="PCM_16")
    audio = check_audio(load_audio(path))
    assert audio.sample_rate == 8000 and audio.samples.ndim == 1
    np.testing.assert_allclose(audio.samples, 0.75 * x8, atol=2e-4)
    wav = resample_to_16k(audio.samples, audio.sample_rate)
    assert wav.numel() == 2 * len(x8)
    out = voice_encoder.encode(wav)
    assert out.embedding.shape == (VOICE_DIM,)
    assert out.embedding.norm().item() == pytest.approx(1.0, abs=1e-5)
    assert out.duration_s == pytest.approx(len(x8) / 8000)
    assert out.spans[-1, 1] == pytest.approx(out.duration_s, abs=1.5 / FRAMES_PER_SECOND)
    assert out.tokens.shape[0] == math.ceil(voice_encoder.features(wav[None]).shape[1] / 25)


def test_gradio_tuple_44k_stereo_goes_through_resample(voice_encoder):
    rate = 44100
    t = np.arange(int(1.5 * rate)) / rate
    tone = (0.3 * np.sin(2 * np.pi * 150 * t) * 32767).astype(np.int16)
    audio = check_audio(load_audio((rate, np.stack([tone, tone], axis=1))))
    wav = resample_to_16k(audio.samples, audio.sample_rate)
    assert abs(wav.numel() - 1.5 * SAMPLE_RATE) <= 2
    out = voice_encoder.encode(wav)
    frames = voice_encoder.features(wav[None]).shape[1]
    assert frames == 1 + wav.numel() // 160  # centred 10 ms hops: one frame more than 1.5 s x 100
    assert out.tokens.shape[0] == math.ceil(frames / 25) == 7  # 6 full windows + one of a single frame
    assert out.duration_s == pytest.approx(1.5, abs=1e-3)


def test_embed_audio_checks_and_resamples(voice_encoder, speech_wav):
    import numpy as np
    import soundfile as sf

    from faa_core.errors import SilentAudioError

    x, sr = sf.read(speech_wav, dtype="float32")
    from_file = voice_encoder.embed_audio(speech_wav)
    from_pair = voice_encoder.embed_audio((sr, np.stack([x, x], axis=1)))
    assert from_file.embedding.shape == (192,)
    assert torch.allclose(from_file.embedding, from_pair.embedding, atol=1e-5)
    with pytest.raises(SilentAudioError):
        voice_encoder.embed_audio(np.zeros(32000, np.float32), sample_rate=16000)


# --------------------------------------------------------------------------- resampling in bounded memory


@pytest.mark.parametrize("rate", [8000, 11025, 22050, 32000, 44100, 48000, 96000])
def test_common_rates_resample_exactly_as_torchaudio(rate):
    """The usual rates keep the exact polyphase resampler (results equal to before the memory bound)."""
    from faa_core.encoders.voice import resample_ratio

    x = np.random.default_rng(rate).standard_normal(rate // 2).astype(np.float32)
    expected = torchaudio.functional.resample(torch.from_numpy(x), rate, SAMPLE_RATE)
    assert torch.equal(resample_to_16k(x, rate), expected)
    g = math.gcd(rate, SAMPLE_RATE)
    assert resample_ratio(rate) == (rate // g, SAMPLE_RATE // g)


def test_any_rate_gets_a_small_kernel_within_tolerance():
    from faa_core.encoders.voice import MAX_RESAMPLE_KERNEL, resample_ratio

    worst = 0.0
    for rate in list(range(8000, 192_001, 97)) + [8001, 16001, 44101, 47999, 191_999]:
        orig, new = resample_ratio(rate)
        assert orig * new <= MAX_RESAMPLE_KERNEL * 1.01, rate
        worst = max(worst, abs((orig / new) / (rate / SAMPLE_RATE) - 1.0))
    assert worst <= 1.25e-4  # the stated tolerance on the output rate
    assert resample_ratio(8001) == (1, 2) and resample_ratio(16001) == (1, 1)


@pytest.mark.parametrize("rate", [44101, 23456])
def test_odd_rates_match_an_exact_resampler(rate):
    import scipy.signal

    t = np.arange(int(0.25 * rate)) / rate
    x = (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    y = resample_to_16k(x, rate).numpy()
    ref = scipy.signal.resample_poly(x.astype(np.float64), SAMPLE_RATE, rate)
    assert len(y) == len(ref) == 4000
    assert np.abs(y[200:-200] - ref[200:-200]).max() < 1e-3  # 3.1e-4 measured


def test_resampling_odd_rates_takes_little_memory_and_time():
    """8001 Hz took 2.1 GiB and 37 s for 2 s of audio before; 44101 Hz took 11 GiB."""
    import subprocess
    import sys

    code = (
        "import resource, time, numpy as np\n"
        "from faa_core.encoders.voice import resample_to_16k\n"
        "base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "t = time.perf_counter()\n"
        "for rate in (8001, 44101, 191999):\n"
        "    y = resample_to_16k(np.ones(16000, np.float32) * 0.1, rate)\n"
        "print(time.perf_counter() - t, (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) // 1024)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    seconds, mib = out.stdout.split()
    assert float(seconds) < 10.0 and int(mib) < 200, out.stdout + out.stderr
