"""The generative model of the synthetic world (overview: docs/synthetic_world.md).

Real VoxCeleb media and pretrained encoders cannot be fetched on the build
machines, so learning is shown on a world whose ground truth is known. It
produces exactly what the frozen encoders produce (a global embedding and
tokens per face and per voice item) from latent factors we control.

Latent factors
--------------
Per **identity** i:

* ``gender`` g in {m, f} (binary, many identities share it) and ``age`` a in
  ``age_levels`` ordered bands: the coarse discrete traits that the "G"
  (same-gender) lists hold fixed;
* ``continuous`` c (a few dims, N(0, 1)): weaker shared traits;
* together the **shared vector** s_i = [w_g (+-1), w_a * level(a), w_c * c],
  carried by BOTH modalities: the only cross-modal signal;
* **private** traits p_i^face, p_i^voice (N(0, 1)): each modality's own
  identity information, useless across modalities.

Per **video** v: a **nuisance** n_v (N(0, 1)) shared by the face frames and the
voice of that video (background, clothes, microphone): the same-video shortcut.

Per **item** k (a face frame/photo or an utterance) of identity i in video v:

* observed shared traits  s~_k = s_i + noise.item * eps       (the oracle's input)
* p~_k = p_i + noise.private_item * eta,  n~_k = n_v + noise.nuisance_item * zeta

Features
--------
Every modality has its own fixed random linear maps (seeded; orthonormal
columns when the dimension allows), so raw face and voice features live in
unrelated spaces and their cosine is at chance. Each latent group is scaled to
unit RMS norm (s by its prior scale, p and n by sqrt(dim)) and weighted by the
preset's ``global_mix`` / ``token_mix`` amplitudes:

* **global** (L2-normalised, like real embeddings):
  x = shared*G_s(s~ + noise.global*eps') + private*G_p p~ + nuisance*G_n n~
      + offset*mu + noise*e  — a noisier mixture of everything;
* **face tokens** on the H x W grid (row-major): every position carries
  position, private, nuisance and noise; only the fixed central **region**
  (``region_fraction`` of the grid, ``truth/face_mask.npy``) also carries
  T_s(s~ + noise.token*eps_p);
* **voice tokens**: T = round(duration * token_rate) per utterance; a random
  ``voiced_fraction`` of them (``truth/voice_items.npz``: voiced) carry
  T_s(s~ + noise.token*eps_t) and the private traits, the others a fixed
  "silence" vector; all carry the nuisance and noise.

So a model can beat the global embedding by attending to the right tokens
(averaging k informative tokens divides their extra noise by sqrt(k)), but no
model can beat the oracle that knows s~ of both items (``oracle.py``).

Variants (switches in the spec; names in ``presets.yaml``'s ``variants``)
-----------------------------------------------------------------------
Each defaults to the reference world above and can be combined with the others:

* ``maps.kind: mlp`` (variant ``nonlinear``): the component sum of a global
  (shared, private, nuisance) is replaced by a random 2-layer network of the
  concatenated latent vector z, h = tanh(gain * A z / |z|_typ + b), x = B h
  (A Gaussian, b ~ U(-1, 1), every hidden unit scaled to unit RMS, B with
  orthonormal columns when it can); tokens use their own network on the same
  per-token z. Offset, position, silence and noise are still added linearly.
  With at least as many hidden units as latent dims nothing is lost, so the
  oracle stays the ceiling, but no linear read-out recovers the traits fully.
* ``traits.gender_correlation: r`` (variant ``gender_dominant``): continuous
  trait j is r * sign_j * (+-1 gender) + sqrt(1 - r^2) * N(0, 1), with a random
  sign per trait; the oracle's prior becomes the exact mixture over gender.
* ``face.regions: N > 1`` (variant ``scattered_regions``): N separate
  rectangular blocks (``region_fraction`` of the grid in all) at random places,
  no two touching (not even diagonally); shared dim d is carried only by
  region d mod N. ``truth/face_regions.npy`` holds the region of every cell
  (-1: none), ``truth/face_region_traits.npy`` the (N, d_s) traits each carries,
  and ``truth/face_mask.npy`` their union.
* ``voice.burst: L >= 1`` (variant ``bursty``): voicing is a two-state Markov
  chain with mean voiced run L tokens and the same stationary
  ``voiced_fraction`` (first token from the stationary law), instead of
  independent tokens.
* strengths alone (variants ``nuisance_weak`` / ``nuisance_strong``,
  ``private_heavy``, ``few_strong`` / ``many_weak``): mixes, noise and
  trait counts of the reference model.

Measured with the shipped presets: oracle verification AUC about 0.90 (0.82
with same-gender negatives), raw cosine AUC about 0.5; on ``small``, a linear
map fitted with true identities reaches about 0.70, the face region's tokens
correlate 0.90 with s~ against 0.72 for the global, and the nuisance
components of a same-video face and voice have cosine 0.92 (0.0 across videos).

Determinism: identity traits, nuisances and maps come from ``seed``; item k of
a modality draws from its own generator ``(seed, modality, k, stream)``, so any
item can be regenerated alone (procedural worlds) and stored and procedural
worlds give the same features.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from training.features import ItemTable, pad_tokens

from .layout import MODALITIES, WorldLayout
from .presets import WorldSpec

MOD_CODE = {"face": 1, "voice": 2}
STREAM_LATENT, STREAM_GLOBAL, STREAM_TOKENS = 0, 1, 2
SHARED_NAMES = ("gender", "age")  # then continuous_0 .. continuous_{c-1}


def _basis(rng: np.random.Generator, n: int, k: int) -> np.ndarray:
    """(n, k) random map: orthonormal columns when k <= n, else unit-norm random columns."""
    a = rng.standard_normal((n, k))
    if k <= n:
        q, r = np.linalg.qr(a)
        return q * np.sign(np.diag(r))[None, :]
    return a / np.linalg.norm(a, axis=0, keepdims=True)


def face_region_mask(grid: tuple[int, int], fraction: float) -> np.ndarray:
    """Central block of about ``fraction`` of the grid (True = informative), shape (H, W)."""
    h, w = grid
    bh = min(h, max(1, int(round(h * math.sqrt(fraction)))))
    bw = min(w, max(1, int(round(w * math.sqrt(fraction)))))
    mask = np.zeros((h, w), dtype=bool)
    top, left = (h - bh) // 2, (w - bw) // 2
    mask[top : top + bh, left : left + bw] = True
    return mask


def face_regions(grid: tuple[int, int], fraction: float, regions: int, rng: np.random.Generator | None = None) -> np.ndarray:
    """(H, W) int map of informative regions: -1 = none, r = region r.

    Why: the informative face cells are part of a world's truth (attention
    is scored against them) and must follow the variant. One region is the
    central block of :func:`face_region_mask`; N > 1 regions are blocks of
    about ``fraction / N`` of the grid each, placed at random (``rng``) so that
    no two touch, even diagonally (ValueError when the grid cannot hold them).
    """
    h, w = grid
    out = np.full((h, w), -1, dtype=np.int64)
    if regions <= 1:
        out[face_region_mask(grid, fraction)] = 0
        return out
    if rng is None:
        raise ValueError("several face regions need a random generator for their places")
    cells = max(1, int(round(h * w * fraction / regions)))
    bh = min(h, max(1, int(round(math.sqrt(cells)))))
    bw = min(w, max(1, int(round(cells / bh))))
    taken = np.zeros((h + 2, w + 2), dtype=bool)  # padded: a block blocks its 1-cell ring
    for r in range(regions):
        spots = [(y, x) for y in range(h - bh + 1) for x in range(w - bw + 1) if not taken[y : y + bh + 2, x : x + bw + 2].any()]
        if not spots:
            raise ValueError(f"a {h}x{w} face grid cannot hold {regions} separate {bh}x{bw} regions; lower face.regions or region_fraction")
        y, x = spots[int(rng.integers(len(spots)))]
        out[y : y + bh, x : x + bw] = r
        taken[y + 1 : y + bh + 1, x + 1 : x + bw + 1] = True
    return out


def _hidden_rms(gain: float, bias: np.ndarray) -> np.ndarray:
    """RMS of tanh(gain * u + b) for u ~ N(0, 1), per bias (Gauss-Hermite quadrature)."""
    nodes, weights = np.polynomial.hermite_e.hermegauss(64)
    vals = np.tanh(gain * nodes[None, :] + bias[:, None]) ** 2
    return np.sqrt(vals @ weights / weights.sum())


@dataclass
class MLPMap:
    """A random 2-layer map z -> B tanh(gain * A z / z_scale + b) / rms (the ``nonlinear`` variant)."""

    a: np.ndarray  # (H, d_z)
    b: np.ndarray  # (H,)
    rms: np.ndarray  # (H,)
    out: np.ndarray  # (D, H)
    gain: float
    z_scale: float

    def __call__(self, z: np.ndarray) -> np.ndarray:
        """(..., d_z) -> (..., D), about as large as z."""
        h = np.tanh(self.gain * (z @ self.a.T) / self.z_scale + self.b) / self.rms
        return (h @ self.out.T) * (self.z_scale / math.sqrt(self.a.shape[0]))


@dataclass
class ModalityMaps:
    """One modality's fixed random maps (columns live in feature space)."""

    g_shared: np.ndarray  # (D, d_s)
    g_private: np.ndarray  # (D, d_p)
    g_nuisance: np.ndarray  # (D, d_n)
    g_offset: np.ndarray  # (D,)
    t_shared: np.ndarray | None  # (C, d_s)
    t_private: np.ndarray | None
    t_nuisance: np.ndarray | None
    t_extra: np.ndarray | None  # (C,) voice: the silence vector
    positions: np.ndarray | None  # (P, C) face: one vector per grid position
    g_mlp: MLPMap | None = None  # nonlinear variant: replaces g_shared/g_private/g_nuisance
    t_mlp: MLPMap | None = None

    def arrays(self, prefix: str) -> dict[str, np.ndarray]:
        out = {f"{prefix}_{k}": v for k, v in self.__dict__.items() if isinstance(v, np.ndarray)}
        for name in ("g_mlp", "t_mlp"):
            m = getattr(self, name)
            if m is not None:
                out.update({f"{prefix}_{name}_a": m.a, f"{prefix}_{name}_b": m.b, f"{prefix}_{name}_out": m.out / m.rms[None, :]})
        return out


@dataclass
class ItemLatents:
    shared: np.ndarray  # s~ (d_s,)
    private: np.ndarray
    nuisance: np.ndarray
    voiced: np.ndarray | None = None  # voice: (T,) bool
    duration: float | None = None


class LatentModel:
    """Identity traits, video nuisances and maps of one world; generates any item's features."""

    def __init__(self, spec: WorldSpec, seed: int, manifest: WorldLayout) -> None:
        self.spec = spec
        self.seed = int(seed)
        self.manifest = manifest
        t, w = spec.traits, spec.shared
        n_id = manifest.n_identities
        rng = np.random.default_rng([self.seed, 0, 1])
        self.gender = (manifest.genders == "f").astype(np.int8)  # 1 = "f"
        self.age = rng.integers(0, t.age_levels, n_id)
        self.continuous = rng.standard_normal((n_id, t.continuous))
        r = t.gender_correlation
        self.correlation_signs = np.ones(t.continuous)
        if r > 0:  # own stream: the uncorrelated world's draws stay as they were
            self.correlation_signs = np.where(np.random.default_rng([self.seed, 0, 4]).random(t.continuous) < 0.5, -1.0, 1.0)
            gsign = 2.0 * self.gender[:, None] - 1.0
            self.continuous = r * gsign * self.correlation_signs[None, :] + math.sqrt(1 - r * r) * self.continuous
        self.private = {
            "face": rng.standard_normal((n_id, t.private_face)),
            "voice": rng.standard_normal((n_id, t.private_voice)),
        }
        levels = np.arange(t.age_levels) - (t.age_levels - 1) / 2.0
        levels = levels / np.sqrt(np.mean(levels**2))  # unit RMS, so w_a is the age amplitude
        self.age_values = w.age * levels
        self.shared = np.concatenate(
            [w.gender * (2.0 * self.gender[:, None] - 1.0), self.age_values[self.age][:, None], w.continuous * self.continuous],
            axis=1,
        )
        self.shared_scale = math.sqrt(w.gender**2 + w.age**2 + t.continuous * w.continuous**2) or 1.0
        self.nuisance = np.random.default_rng([self.seed, 0, 2]).standard_normal((len(manifest.video_keys), t.nuisance))
        f = spec.face
        self.face_regions = face_regions(f.grid, f.region_fraction, f.regions, np.random.default_rng([self.seed, 0, 3]))
        self.face_mask = self.face_regions >= 0
        n_reg = max(1, f.regions)
        self.face_region_traits = (np.arange(self.shared_dim)[None, :] % n_reg) == np.arange(n_reg)[:, None]  # (N, d_s)
        flat = self.face_regions.reshape(-1)
        # (P, d_s): which shared dims each face token carries
        self.face_carries = np.where(flat[:, None] >= 0, self.face_region_traits[np.maximum(flat, 0)], False)
        self.maps = {m: self._make_maps(m) for m in MODALITIES}

    # -- fixed parts ------------------------------------------------------------------

    @property
    def shared_dim(self) -> int:
        return self.spec.traits.shared_dim

    @property
    def shared_names(self) -> list[str]:
        return list(SHARED_NAMES) + [f"continuous_{k}" for k in range(self.spec.traits.continuous)]

    def dims(self, modality: str) -> tuple[int, int]:
        m = self.spec.face if modality == "face" else self.spec.voice
        return m.global_dim, m.token_dim

    def private_dim(self, modality: str) -> int:
        return self.spec.traits.private_face if modality == "face" else self.spec.traits.private_voice

    def _make_maps(self, modality: str) -> ModalityMaps:
        rng = np.random.default_rng([self.seed, 0, 10 + MOD_CODE[modality]])
        d_s, d_p, d_n = self.shared_dim, self.private_dim(modality), self.spec.traits.nuisance
        D, C = self.dims(modality)
        g = _basis(rng, D, d_s + d_p + d_n + 1)
        cut = np.cumsum([d_s, d_p, d_n])
        gs, gp, gn, go = np.split(g, cut, axis=1)
        ts = tp = tn = te = pos = None
        if C > 0:
            t = _basis(rng, C, d_s + d_p + d_n + 1)
            ts, tp, tn, te = np.split(t, cut, axis=1)
            te = te[:, 0]
            if modality == "face":
                te = None
                P = self.spec.face.grid[0] * self.spec.face.grid[1]
                pos = rng.standard_normal((P, C))
                pos /= np.linalg.norm(pos, axis=1, keepdims=True)
        maps = ModalityMaps(gs, gp, gn, go[:, 0], ts, tp, tn, te, pos)
        if self.spec.maps.kind == "mlp":  # own stream: the linear parts above are unchanged
            mrng = np.random.default_rng([self.seed, 0, 20 + MOD_CODE[modality]])
            maps.g_mlp = self._mlp(mrng, D, d_s + d_p + d_n, self.spec.global_mix)
            if C > 0:
                maps.t_mlp = self._mlp(mrng, C, d_s + d_p + d_n, self.spec.token_mix)
        return maps

    def _mlp(self, rng: np.random.Generator, out_dim: int, d_z: int, mix: Any) -> MLPMap:
        hidden = self.spec.maps.hidden or out_dim
        gain = self.spec.maps.gain
        a = rng.standard_normal((hidden, d_z))
        b = rng.uniform(-1.0, 1.0, hidden)
        z_scale = math.sqrt(mix.shared**2 + mix.private**2 + mix.nuisance**2) or 1.0
        # |A z| / z_scale ~ N(0, 1) per unit when z has its typical size
        return MLPMap(a, b, _hidden_rms(gain, b), _basis(rng, out_dim, hidden), gain, z_scale)

    # -- per item ---------------------------------------------------------------------

    def _rng(self, modality: str, k: int, stream: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, MOD_CODE[modality], int(k), stream])

    def latents(self, modality: str, k: int) -> ItemLatents:
        """Item k's latent factors (stream 0): what its features are made from."""
        it = self.manifest.items[modality]
        i, v = int(it.identity[k]), int(it.video[k])
        nz = self.spec.noise
        rng = self._rng(modality, k, STREAM_LATENT)
        voiced = duration = None
        if modality == "voice":
            vs = self.spec.voice
            duration = float(rng.uniform(vs.duration[0], vs.duration[1]))
            T = max(1, int(round(duration * vs.token_rate)))
            if vs.burst > 0:
                voiced = _bursty(rng, T, vs.voiced_fraction, vs.burst)
            else:
                voiced = rng.random(T) < vs.voiced_fraction
            if not voiced.any():
                voiced[int(rng.integers(T))] = True
        shared = self.shared[i] + nz.item * rng.standard_normal(self.shared_dim)
        private = self.private[modality][i] + nz.private_item * rng.standard_normal(self.private_dim(modality))
        nuisance = self.nuisance[v] + nz.nuisance_item * rng.standard_normal(self.spec.traits.nuisance)
        return ItemLatents(shared, private, nuisance, voiced, duration)

    def global_vector(self, modality: str, k: int, lat: ItemLatents) -> np.ndarray:
        """L2-normalised global embedding of item k (stream 1)."""
        mp, mix = self.maps[modality], self.spec.global_mix
        rng = self._rng(modality, k, STREAM_GLOBAL)
        D = mp.g_offset.shape[0]
        s = (lat.shared + self.spec.noise.global_ * rng.standard_normal(self.shared_dim)) / self.shared_scale
        if mp.g_mlp is not None:
            z = np.concatenate([
                mix.shared * s,
                mix.private * lat.private / math.sqrt(lat.private.shape[0]),
                mix.nuisance * lat.nuisance / math.sqrt(lat.nuisance.shape[0]),
            ])
            x = mp.g_mlp(z) + mix.offset * mp.g_offset + mix.noise * rng.standard_normal(D) / math.sqrt(D)
            return x / max(float(np.linalg.norm(x)), 1e-12)
        x = (
            mix.shared * (mp.g_shared @ s)
            + mix.private * (mp.g_private @ lat.private) / math.sqrt(lat.private.shape[0])
            + mix.nuisance * (mp.g_nuisance @ lat.nuisance) / math.sqrt(lat.nuisance.shape[0])
            + mix.offset * mp.g_offset
            + mix.noise * rng.standard_normal(D) / math.sqrt(D)
        )
        return x / max(float(np.linalg.norm(x)), 1e-12)

    def token_array(self, modality: str, k: int, lat: ItemLatents) -> np.ndarray:
        """(T, C) tokens of item k (stream 2); entries are of order 1, like CNN/TDNN activations."""
        mp, mix = self.maps[modality], self.spec.token_mix
        if mp.t_shared is None:
            raise ValueError(f"{modality} has no tokens in this world (token_dim 0)")
        rng = self._rng(modality, k, STREAM_TOKENS)
        C = mp.t_shared.shape[0]
        if modality == "face":
            carries = self.face_mask.reshape(-1)
            T = carries.shape[0]
        else:
            carries = lat.voiced
            T = carries.shape[0]
        eps = rng.standard_normal((T, self.shared_dim))
        noise = rng.standard_normal((T, C))
        s = (lat.shared[None, :] + self.spec.noise.token * eps) / self.shared_scale  # (T, d_s)
        if mp.t_mlp is not None or (modality == "face" and self.spec.face.regions > 1):
            return self._token_array_general(modality, lat, s, noise, carries)
        shared = mix.shared * (s @ mp.t_shared.T) * carries[:, None]
        private = mix.private * (mp.t_private @ lat.private) / math.sqrt(lat.private.shape[0])
        nuisance = mix.nuisance * (mp.t_nuisance @ lat.nuisance) / math.sqrt(lat.nuisance.shape[0])
        t = shared + nuisance[None, :] + mix.noise * noise / math.sqrt(C)
        if modality == "face":
            t = t + private[None, :] + mix.position * mp.positions
        else:
            t = t + private[None, :] * carries[:, None] + mix.silence * np.outer(~carries, mp.t_extra)
        return (t * math.sqrt(C)).astype(np.float32)

    def _token_array_general(
        self, modality: str, lat: ItemLatents, s: np.ndarray, noise: np.ndarray, carries: np.ndarray
    ) -> np.ndarray:
        """Tokens when a variant is on: per-dim carried traits (face regions) and/or the MLP map."""
        mp, mix = self.maps[modality], self.spec.token_mix
        C = noise.shape[1]
        T = s.shape[0]
        dims = self.face_carries if modality == "face" else np.repeat(carries[:, None], self.shared_dim, axis=1)
        s = s * dims  # (T, d_s): zero where the token does not carry the trait
        p = lat.private / math.sqrt(lat.private.shape[0])
        n = lat.nuisance / math.sqrt(lat.nuisance.shape[0])
        p_on = np.ones(T) if modality == "face" else carries.astype(np.float64)
        if mp.t_mlp is not None:
            z = np.concatenate([
                mix.shared * s,
                mix.private * p_on[:, None] * p[None, :],
                np.broadcast_to(mix.nuisance * n, (T, n.shape[0])),
            ], axis=1)
            t = mp.t_mlp(z)
        else:
            t = mix.shared * (s @ mp.t_shared.T) + mix.private * np.outer(p_on, mp.t_private @ p) + mix.nuisance * (mp.t_nuisance @ n)[None, :]
        t = t + mix.noise * noise / math.sqrt(C)
        if modality == "face":
            t = t + mix.position * mp.positions
        else:
            t = t + mix.silence * np.outer(~carries, mp.t_extra)
        return (t * math.sqrt(C)).astype(np.float32)

    def generate(
        self, modality: str, indices: Sequence[int], want_global: bool = True, want_tokens: bool = True
    ) -> tuple[np.ndarray | None, list[np.ndarray] | None]:
        """Globals (n, D) float32 and/or the list of (T_k, C) token arrays of the given items."""
        D, C = self.dims(modality)
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        want_tokens = want_tokens and C > 0
        G = np.empty((idx.shape[0], D), dtype=np.float32) if want_global else None
        toks: list[np.ndarray] | None = [] if want_tokens else None
        for j, k in enumerate(idx.tolist()):
            lat = self.latents(modality, k)
            if G is not None:
                G[j] = self.global_vector(modality, k, lat)
            if toks is not None:
                toks.append(self.token_array(modality, k, lat))
        return G, toks

    # -- ground truth -------------------------------------------------------------------

    def item_truth(self, modality: str) -> dict[str, np.ndarray]:
        """Per item: identity, video, observed shared traits; voice also token counts and voiced masks."""
        it = self.manifest.items[modality]
        n = len(it)
        shared = np.empty((n, self.shared_dim), dtype=np.float32)
        counts = np.zeros(n, dtype=np.int64)
        voiced: list[np.ndarray] = []
        durations = np.zeros(n, dtype=np.float32)
        for k in range(n):
            lat = self.latents(modality, k)
            shared[k] = lat.shared
            if lat.voiced is not None:
                voiced.append(lat.voiced)
                counts[k] = lat.voiced.shape[0]
                durations[k] = lat.duration
        out = {"identity": it.identity, "video": it.video, "shared_observed": shared}
        if modality == "voice":
            offsets = np.zeros(n + 1, dtype=np.int64)
            np.cumsum(counts, out=offsets[1:])
            out["token_offsets"] = offsets
            out["voiced"] = np.concatenate(voiced) if voiced else np.zeros(0, dtype=bool)
            out["duration"] = durations
        return out

    def identity_truth(self) -> dict[str, np.ndarray]:
        m = self.manifest
        return {
            "vox_id": m.vox_ids,
            "name": m.names,
            "split": m.id_splits,
            "gender": self.gender,
            "age": self.age.astype(np.int64),
            "continuous": self.continuous.astype(np.float32),
            "shared": self.shared.astype(np.float32),
            "shared_names": np.asarray(self.shared_names),
            "private_face": self.private["face"].astype(np.float32),
            "private_voice": self.private["voice"].astype(np.float32),
        }

    def shared_prior(self) -> Any:
        """The oracle's prior of the shared vector.

        Per shared dim: ("discrete", (values, probs)) or ("gaussian", std); when
        traits correlate with gender, a ``("mixture", [(weight, per-dim list), ...])``
        pair over the two genders, whose per-dim entries may also be
        ("normal", (mean, std)).
        """
        p_f = float(self.gender.mean()) if self.gender.size else 0.5
        p_f = min(max(p_f, 1e-6), 1 - 1e-6)
        wg = self.spec.shared.gender
        levels = self.spec.traits.age_levels
        r = self.spec.traits.gender_correlation
        if r > 0:
            wc = self.spec.shared.continuous
            age = ("discrete", (self.age_values.copy(), np.full(levels, 1.0 / levels)))
            comps = []
            for weight, sign in ((1 - p_f, -1.0), (p_f, 1.0)):
                dims: list[tuple[str, Any]] = [("discrete", (np.array([sign * wg]), np.array([1.0]))), age]
                dims += [("normal", (wc * r * sign * float(c), wc * math.sqrt(1 - r * r))) for c in self.correlation_signs]
                comps.append((weight, dims))
            return ("mixture", comps)
        out: list[tuple[str, Any]] = [
            ("discrete", (np.array([-wg, wg]), np.array([1 - p_f, p_f]))),
            ("discrete", (self.age_values.copy(), np.full(levels, 1.0 / levels))),
        ]
        out += [("gaussian", self.spec.shared.continuous)] * self.spec.traits.continuous
        return out


def _bursty(rng: np.random.Generator, T: int, fraction: float, run: float) -> np.ndarray:
    """(T,) voiced mask from a two-state Markov chain: mean voiced run ``run``, stationary share ``fraction``."""
    if fraction >= 1.0:
        return np.ones(T, dtype=bool)
    leave = 1.0 / run  # voiced -> silent
    enter = min(1.0, fraction * leave / (1.0 - fraction))  # silent -> voiced, keeps the stationary share
    u = rng.random(T)
    out = np.empty(T, dtype=bool)
    state = u[0] < fraction
    out[0] = state
    for t in range(1, T):
        state = (u[t] >= leave) if state else (u[t] < enter)
        out[t] = state
    return out


class SyntheticModality(ItemTable):
    """A procedural :class:`training.features.FeatureSource`: items generated on demand."""

    def __init__(self, model: LatentModel, modality: str) -> None:
        ids, videos, identities, splits = model.manifest.item_table(modality)
        super().__init__(ids, videos, identities, splits)
        self.model = model
        self.name = modality
        self._D, self._C = model.dims(modality)

    @property
    def global_dim(self) -> int:
        return self._D

    @property
    def token_dim(self) -> int:
        return self._C

    @property
    def has_tokens(self) -> bool:
        return self._C > 0

    @property
    def token_grid(self) -> tuple[int, int] | None:
        return tuple(self.model.spec.face.grid) if self.name == "face" and self._C > 0 else None  # type: ignore[return-value]

    def __repr__(self) -> str:
        return f"SyntheticModality({self.name!r}, n={len(self)}, global_dim={self._D}, token_dim={self._C})"

    def globals(self, indices: Any) -> np.ndarray:
        G, _ = self.model.generate(self.name, self.check_indices(indices), want_tokens=False)
        assert G is not None
        return G

    def all_globals(self) -> np.ndarray:
        return self.globals(np.arange(len(self)))

    def tokens(self, indices: Any, max_tokens: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        if not self.has_tokens:
            raise ValueError(f"{self.name} features have no tokens (token_dim 0)")
        if max_tokens is not None and int(max_tokens) < 1:
            raise ValueError(f"max_tokens must be >= 1, got {max_tokens}")
        _, toks = self.model.generate(self.name, self.check_indices(indices), want_global=False)
        assert toks is not None
        return pad_tokens(toks, self._C, max_tokens)

    def token_counts(self, indices: Any = None) -> np.ndarray:
        if not self.has_tokens:
            raise ValueError(f"{self.name} features have no tokens (token_dim 0)")
        idx = np.arange(len(self)) if indices is None else self.check_indices(indices)
        if self.name == "face":
            return np.full(idx.shape[0], self.model.face_mask.size, dtype=np.int64)
        return np.array([self.model.latents("voice", int(k)).voiced.shape[0] for k in idx], dtype=np.int64)  # type: ignore[union-attr]
