"""The training loop shared by every objective: rounds of (labels -> steps -> validation).

A round first fixes the labels of the training videos -- k-means on
dual-modality pooled embeddings for the unsupervised objectives, the true
identities for the supervised ones (``training/loop/objectives.py`` says which
objective is which, and everything else objective-specific) -- then takes
``steps_per_round`` optimiser steps on pairs drawn from those labels, then
validates. The best model is kept in ``RUN/best/`` (faa_core's checkpoint
format).

Resumable: after every round the whole state (model, optimiser, schedule,
counters) is written atomically to ``RUN/state.pt``, and every random draw
of a round is seeded from (seed, round), so a run killed at any moment and
restarted ends exactly where an uninterrupted run ends. A run folder is
resumed only with the config it was started with (``RUN/config.json``);
``allow_config_change`` overrides that with a warning.

Distributed (``torchrun --nproc_per_node N -m training.train ...``): the
model is wrapped in DDP, rank 0 clusters and validates and broadcasts the
labels and the validation result (so early stopping and the cluster
schedule move together on every rank), every rank takes its contiguous
slice of the same globally seeded batch (``optim.batch_size`` is the global
batch), and only rank 0 writes the run folder. Why the update equals the
single-process one is spelled out in ``training/distributed.py``.
"""

from __future__ import annotations

import json
import math
import time
import warnings
import weakref
from pathlib import Path
from typing import Any, Mapping, Optional

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from faa_core.checkpoint import default_encoders, save_checkpoint
from faa_core.clustering import ProgressiveClusterSchedule, cluster_purity, dual_modality_pooling, kmeans, nmi
from faa_core.fileio import atomic_torch_save, atomic_write_json
from faa_core.metrics import verification_auc
from faa_core.model import FAAConfig, FAAModel

from training.cli import UserError
from training.config import config_differences, resolve_config
from training.loop import distributed as dist_utils
from training.loop.data import IdentityLinked, PairBatch, PairSampler, VideoIndex, open_features
from training.loop.linear_fit import fit_linear_baseline
from training.loop.negatives import coarse_groups, draw_negatives, uses_groups
from training.loop.objectives import LOSSES, OBJECTIVES, LossInput
from training.eval.scoring import embed_items, item_tokens, score_pairs, verification_trials

_CHECK_CHUNK = 65_536  # items per finiteness check of stored features (bounded memory on any store)
# keys that only say where a run stops: a resumed run with more rounds continues the same trajectory
_STOP_KEYS = ("schedule.max_rounds",)


def model_config(cfg: dict[str, Any], voice, face) -> FAAConfig:
    """FAAConfig from the config's model section and the data's dimensions."""
    m = dict(cfg["model"])
    use_tokens = bool(m.pop("use_tokens"))
    grid = getattr(face, "token_grid", None) or (8, 8)
    return FAAConfig(
        face_dim=face.global_dim,
        voice_dim=voice.global_dim,
        face_token_dim=face.token_dim if use_tokens and face.has_tokens else 0,
        voice_token_dim=voice.token_dim if use_tokens and voice.has_tokens else 0,
        face_grid=tuple(grid),
        **m,
    )


def card_encoders(config: FAAConfig, source: Mapping[str, Any]) -> dict[str, Any]:
    """The card's ``encoders``: what the store says made its features, with the model's dimensions.

    A store written by ``training.extract`` names its encoders and weights in
    ``store.json``'s ``source``; a store or world that names none (synthetic
    worlds, imported releases) gets this package's defaults, which are the
    encoders such a checkpoint is meant to be used with.
    """
    described = source.get("encoders") if isinstance(source.get("encoders"), Mapping) else {}
    if not described:
        return default_encoders(config)
    weights = source.get("weights")
    text = weights.get("description") if isinstance(weights, Mapping) else weights
    per_side = {}
    if isinstance(text, str):  # "face: <weights>; voice: <weights>" (faa_core.encoders.weights.describe)
        for part in text.split("; "):
            side, sep, rest = part.partition(": ")
            if sep:
                per_side[side.strip()] = rest.strip()
    dims = {
        "face": {"global_dim": config.face_dim, "token_dim": config.face_token_dim},
        "voice": {"global_dim": config.voice_dim, "token_dim": config.voice_token_dim},
    }
    out: dict[str, Any] = {}
    for side, enc in described.items():
        entry = dict(enc)
        entry["weights"] = per_side.get(side, text)
        entry.update(dims.get(side, {}))
        if side in dims and not dims[side]["token_dim"]:  # a global-only model uses no token layer
            entry.update({k: None for k in ("token_layer", "token_rate_per_s") if k in entry})
        out[side] = entry
    if "face" in out and config.face_token_dim:
        out["face"]["token_grid"] = list(config.face_grid)
    return out


def _read_json(path: Path) -> dict[str, Any]:
    """A data folder's metadata file, or one line naming it and the fix."""
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise UserError(f"{path}: not a text file; it is damaged (rewrite it, e.g. re-run what made the folder)") from None
    except json.JSONDecodeError as exc:
        raise UserError(f"{path}: invalid JSON ({exc.msg} at line {exc.lineno}); it is damaged or half written "
                        "(re-run what made the folder)") from None
    if not isinstance(meta, dict):
        raise UserError(f"{path}: expected a JSON object, got {type(meta).__name__} (re-run what made the folder)")
    return meta


class _StepModule(torch.nn.Module):
    """Everything trainable, with one step's forward as ``forward``.

    DDP synchronises gradients only for a forward that goes through its
    wrapper, and a step uses several entry points of the model (heads,
    logit scale, match head) plus the extra parameters. The trainer's
    method is held weakly: a trainer -> DDP -> trainer cycle would leave
    the DDP reducer to the garbage collector, possibly after the process
    group is gone, which can abort the process at exit.
    """

    def __init__(self, model: FAAModel, extra: torch.nn.ParameterDict, forward: Any) -> None:
        super().__init__()
        self.model, self.extra = model, extra
        self._forward = weakref.WeakMethod(forward)

    def forward(self, *args: Any) -> Any:
        fn = self._forward()
        if fn is None:
            raise RuntimeError("the trainer of this DDP step module is gone")
        return fn(*args)


class Trainer:
    def __init__(
        self, cfg: dict[str, Any], data_dir: str | Path, run_dir: str | Path, progress: bool = True,
        device: str | torch.device = "cpu", allow_config_change: bool = False,
    ) -> None:
        cfg = resolve_config(cfg)  # complete and checked, whoever built it
        self.cfg = cfg
        self.objective = OBJECTIVES[cfg["objective"]]
        # the model and the step's tensors live here; sampling, clustering and the RNG streams stay on the CPU,
        # so a run's pairs and negatives do not depend on the device
        self.device = torch.device(device)
        self.data_dir = Path(data_dir)
        self.run = Path(run_dir)
        if self.run.exists() and not self.run.is_dir():
            raise UserError(f"run folder {self.run} is a file; give a folder (a new one, or a run to resume)")
        self.world, self.rank = dist_utils.world_size(), dist_utils.rank()
        self.main = self.rank == 0
        # the rows of the global batch this rank embeds (all of them in one process)
        b = dist_utils.per_rank_batch(int(cfg["optim"]["batch_size"]), self.world)
        self.shard = (self.rank * b, (self.rank + 1) * b)
        if self.main:
            self.run.mkdir(parents=True, exist_ok=True)
        self.progress = progress and self.main
        self._open_data()
        if cfg["data"]["link"] == "identity":  # faces without videos (VGGFace1 photos): link the modalities by person
            self.index = VideoIndex(IdentityLinked(self.voice), IdentityLinked(self.face), "train")
        else:
            self.index = VideoIndex(self.voice, self.face, "train")
        self.identity = self.index.identity_codes()
        if self.objective.supervised and (self.identity < 0).any():
            raise UserError(f"objective {self.objective.name} needs identities for every training video; "
                            f"{int((self.identity < 0).sum())} of {len(self.identity)} in {self.data_dir} have none "
                            "(use an unsupervised objective: faa or sl)")

        torch.manual_seed(cfg["seed"])
        self.model = FAAModel(model_config(cfg, self.voice, self.face)).to(self.device)
        self.parts = self.objective.parts(cfg, self.identity, self.model.config.embed_dim, self.device)
        self.video_groups: Optional[np.ndarray] = None  # coarse group per training video (pairs.negatives=group*)
        self.voice_item_video = np.full(len(self.voice), -1, dtype=np.int64)  # voice item -> its training video
        self.voice_item_video[self.index.voice_video_items] = self.index.voice_video
        self.extra = torch.nn.ParameterDict(self.parts.parameters)
        params = list(self.model.parameters()) + list(self.extra.parameters())
        o = cfg["optim"]
        if o["name"] == "sgd":
            self.optim = torch.optim.SGD(params, lr=o["lr"], momentum=o["momentum"], weight_decay=o["weight_decay"])
        else:
            self.optim = torch.optim.Adam(params, lr=o["lr"], weight_decay=o["weight_decay"])

        c = cfg["clustering"]
        n_videos = len(self.index)
        start = max(2, min(n_videos, int(round(c["start_fraction"] * n_videos))))
        minimum = max(2, min(start, int(round(c["min_fraction"] * n_videos))))
        self.schedule = ProgressiveClusterSchedule(
            start=start, factor=c["factor"], minimum=minimum, patience=c["patience"], fixed=c["fixed"],
        )
        v = cfg["validation"]
        self.val = verification_trials(self.voice, self.face, "val", v["trials"], seed=cfg["seed"] + 7919)
        self.state = {"round": 0, "step": 0, "best": -math.inf, "bad_rounds": 0, "done": False, "best_round": -1}
        self._resume(allow_config_change)
        self._ddp: Optional[torch.nn.parallel.DistributedDataParallel] = None
        self._gather_group: Any = None
        if self.world > 1:
            self._setup_ddp()

    # -- data --------------------------------------------------------------------
    def _open_data(self) -> None:
        """Open the feature sources; a damaged metadata file or a NaN feature is named here, before any training."""
        d = self.data_dir
        if not d.is_dir():
            raise UserError(f"data folder {d} does not exist (give a feature store or a synthetic world folder)")
        self.world_meta = _read_json(d / "world.json") if (d / "world.json").is_file() else {}
        self.store_source: dict[str, Any] = {}
        if (d / "store.json").is_file():
            meta = _read_json(d / "store.json")
            if not isinstance(meta.get("modalities"), dict):
                raise UserError(f"{d / 'store.json'}: no 'modalities' mapping, so not a feature store "
                                "(re-run the extraction that made it)")
            source = meta.get("source")
            self.store_source = dict(source) if isinstance(source, dict) else {}
        src = open_features(d)
        self.voice, self.face = src["voice"], src["face"]
        for name, source in (("voice", self.voice), ("face", self.face)):
            self._check_stored_globals(name, source)

    def _check_stored_globals(self, modality: str, source: Any) -> None:
        """Every global vector of a stored source is finite (one pass over the memory-mapped shards)."""
        from training.features import ModalityFeatures

        if not isinstance(source, ModalityFeatures):  # procedural worlds compute features; nothing stored to damage
            return
        for lo in range(0, len(source), _CHECK_CHUNK):
            g = source.globals(np.arange(lo, min(lo + _CHECK_CHUNK, len(source))))
            bad = np.flatnonzero(~np.isfinite(g).all(axis=1))
            if len(bad):
                raise UserError(self._nonfinite_message(modality, source, lo + int(bad[0]), "global vector"))

    def _nonfinite_message(self, modality: str, source: Any, item: int, what: str) -> str:
        return (f"{modality} item {str(source.ids[item])!r} in {self.data_dir} has NaN/inf values in its {what}; "
                "re-extract it or remove it from the store")

    def _find_nonfinite(self, items: Mapping[str, np.ndarray], tokens: bool) -> Optional[str]:
        """The first item among ``items`` (modality -> item indices) with a NaN/inf global vector or token."""
        for modality, idx in items.items():
            source = self.voice if modality == "voice" else self.face
            idx = np.unique(np.asarray(idx))
            g = source.globals(idx)
            bad = np.flatnonzero(~np.isfinite(g).all(axis=1))
            if len(bad):
                return self._nonfinite_message(modality, source, int(idx[bad[0]]), "global vector")
            if tokens and source.has_tokens:
                tok, _ = source.tokens(idx)
                bad = np.flatnonzero(~np.isfinite(tok).reshape(len(idx), -1).all(axis=1))
                if len(bad):
                    return self._nonfinite_message(modality, source, int(idx[bad[0]]), "tokens")
        return None

    def _nonfinite_loss(self, batch: PairBatch, rnd: int) -> UserError:
        """Why a step's loss is NaN/inf: a damaged item of the batch, or training that diverged."""
        found = self._find_nonfinite({"voice": batch.voice_items, "face": batch.face_items}, tokens=self.uses_fvm)
        if found:
            return UserError(found)
        return UserError(f"the loss became NaN/inf at round {rnd} (step {self.state['step']}) with finite features: "
                         f"training diverged; lower optim.lr (now {self.cfg['optim']['lr']})")

    def _setup_ddp(self) -> None:
        """Wrap the trainable modules in DDP, once every rank has loaded the same state."""
        dist_utils.barrier()  # no rank starts a round (nor rank 0 rewrites state.pt) before all have resumed
        self._gather_group = dist_utils.new_group()
        # parameters a step's loss does not reach must be declared, or DDP waits for their gradients
        all_used = self.uses_fvm and LOSSES[self.cfg["loss"]["fvc"]].uses_logit_scale
        self._ddp = torch.nn.parallel.DistributedDataParallel(
            _StepModule(self.model, self.extra, self._forward_sharded),
            broadcast_buffers=False, find_unused_parameters=not all_used,
            device_ids=[self.device.index] if self.device.type == "cuda" else None,
        )

    def close(self) -> None:
        """Drop the DDP wrapper (its reducer talks to the process group) before torch.distributed is torn down."""
        self._ddp = None
        self._gather_group = None

    # -- state ---------------------------------------------------------------
    @property
    def state_path(self) -> Path:
        return self.run / "state.pt"

    def _check_same_config(self, allow_change: bool, resumed_round: int) -> None:
        """Resume only with the config the run was started with (RUN/config.json), unless allowed."""
        path = self.run / "config.json"
        if not path.is_file():
            raise UserError(f"{self.run} holds state.pt but no config.json, so what it was trained with is unknown; "
                            "use a new --out folder")
        saved = _read_json(path)
        diff = [d for d in config_differences(saved, self.cfg) if d.split(":")[0] not in _STOP_KEYS]
        if not diff:
            if self.main and saved != self.cfg:  # only where it stops changed: record the new end
                atomic_write_json(path, self.cfg)
            return
        listed = "; ".join(diff[:12]) + (f"; and {len(diff) - 12} more" if len(diff) > 12 else "")
        if not allow_change:
            raise UserError(f"{self.run} was started with another config ({listed}); resume with the same config, "
                            "use a new --out folder, or pass --allow-config-change")
        warnings.warn(f"resuming {self.run} with a changed config: {listed}", stacklevel=3)
        if self.main:
            with open(self.run / "config_changes.jsonl", "a") as fh:  # what changed, and from which round
                fh.write(json.dumps({"round": resumed_round, "changes": diff}) + "\n")
            atomic_write_json(path, self.cfg)

    def _resume(self, allow_config_change: bool = False) -> None:
        """Load state.pt if there is one (every rank loads the same file); only rank 0 touches the log."""
        if not self.state_path.is_file():
            if self.main:
                (self.run / "metrics.jsonl").unlink(missing_ok=True)
                atomic_write_json(self.run / "config.json", self.cfg)
            return
        saved = torch.load(self.state_path, map_location="cpu", weights_only=True)
        self._check_same_config(allow_config_change, saved["state"]["round"])  # before a differing model is loaded
        self.model.load_state_dict(saved["model"])
        self.extra.load_state_dict(saved["extra"])
        self.optim.load_state_dict(saved["optim"])
        self.schedule.load_state_dict(saved["schedule"])
        self.parts.load_state_dict(saved.get("objective", {}))
        self.state = saved["state"]
        # drop log lines of a round that was cut off
        log = self.run / "metrics.jsonl"
        if self.main and log.is_file():
            keep = []
            for line in log.read_text().splitlines():
                try:
                    if json.loads(line)["round"] < self.state["round"]:
                        keep.append(line)
                except (ValueError, KeyError):  # a line cut off by the kill
                    continue
            log.write_text("".join(k + "\n" for k in keep))

    def _save_state(self) -> None:
        saved = {
            "model": self.model.state_dict(),
            "extra": self.extra.state_dict(),
            "optim": self.optim.state_dict(),
            "schedule": self.schedule.state_dict(),
            "objective": self.parts.state_dict(),
            "state": self.state,
        }
        atomic_torch_save(saved, self.state_path)

    # -- labels ----------------------------------------------------------------
    def round_labels(self, rnd: int) -> tuple[np.ndarray, dict[str, Any]]:
        """Labels of the training videos for this round, and clustering statistics."""
        if self.objective.supervised:
            return self.identity, {"clusters": int(self.identity.max()) + 1}
        self.model.eval()
        idx, c = self.index, self.cfg["clustering"]
        pooled_by_space = []
        if c["space"] in ("input", "both"):  # the frozen encoders' features, as the pseudo-labels of round 0 see them
            v_emb = np.asarray(self.voice.globals(idx.voice_video_items), dtype=np.float32)
            f_emb = np.asarray(self.face.globals(idx.face_video_items), dtype=np.float32)
            pooled_by_space.append(dual_modality_pooling(v_emb, idx.voice_video, f_emb, idx.face_video))
        if c["space"] in ("learned", "both"):
            v_emb = embed_items(self.model, self.voice, idx.voice_video_items, "voice").cpu().numpy()
            f_emb = embed_items(self.model, self.face, idx.face_video_items, "face").cpu().numpy()
            pooled_by_space.append(dual_modality_pooling(v_emb, idx.voice_video, f_emb, idx.face_video))
        # "both": the two pooled vectors side by side; each has norm sqrt(2) (two unit halves), so the
        # frozen features and the current embeddings weigh equally in the k-means distance
        keys = pooled_by_space[0][0]
        pooled = np.concatenate([p for _, p in pooled_by_space], axis=1)
        k = self.schedule.current()
        result = kmeans(pooled, k, niter=c["niter"], seed=self.cfg["seed"] * 1000 + rnd)
        labels = np.full(len(idx), -1, dtype=np.int64)
        labels[np.asarray(keys, dtype=np.int64)] = result.labels
        stats: dict[str, Any] = {"clusters": int(k)}
        known = self.identity >= 0
        if known.any():
            stats["purity"] = float(cluster_purity(labels[known], self.identity[known]))
            stats["nmi"] = float(nmi(labels[known], self.identity[known]))
        return labels, stats

    # -- one step ----------------------------------------------------------------
    def _to_device(self, features: Any) -> torch.Tensor:
        return torch.from_numpy(np.asarray(features, dtype=np.float32)).to(self.device)

    @property
    def uses_fvm(self) -> bool:
        """Whether the match head is trained (FVM) -- and so whether fusion scores validation.

        The objective's row says whether it can be (``trains_fvm``); ``loss.fvm``
        (resolved from that row unless set) turns it off for the ablation.
        """
        return self.objective.trains_fvm and bool(self.cfg["loss"]["fvm"])

    def step(self, batch: PairBatch, gen: torch.Generator, rnd: int) -> dict[str, float]:
        """One optimiser step on ``batch``; the logged values (whole-step values, or this rank's shares under DDP)."""
        before_step = getattr(self.parts, "before_step", None)  # e.g. Wen 2021's stages and learning rates
        if before_step is not None:
            before_step(self)
        if self._ddp is not None:
            loss, out = self._ddp(batch, gen, rnd)
        else:
            loss, out = self._forward_sharded(batch, gen, rnd)
        if not torch.isfinite(loss):
            raise self._nonfinite_loss(batch, rnd)
        self.optim.zero_grad(set_to_none=True)
        loss.backward()
        self.optim.step()
        return out

    def _batch_loss(
        self, v_emb: torch.Tensor, f_emb: torch.Tensor, labels: torch.Tensor, rnd: int
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """The objective's batch-global loss (its row's, or the one ``loss.fvc`` picks) on the whole batch."""
        spec = LOSSES[self.cfg["loss"]["fvc"]]
        loss = spec.fn(v_emb, f_emb, labels, LossInput(self.model, self.cfg["loss"], self.extra, self.parts, rnd))
        return loss, {spec.log: float(loss.detach())}

    def _hard_negatives(self, batch: PairBatch, v_emb, f_emb, labels, gen) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(a negative face per voice, its validity, a negative voice per face, its validity): ``pairs.negatives``."""
        p = self.cfg["pairs"]
        with torch.no_grad():
            sim = self.model.logit_scale.exp().clamp(max=100.0) * v_emb @ f_emb.T
            sim, labels = sim.cpu(), labels.cpu()  # drawn with the CPU generator: the same on any device
            groups = None
            if uses_groups(p["negatives"]):
                groups = torch.from_numpy(self.video_groups[self.voice_item_video[batch.voice_items]])
            return draw_negatives(p["negatives"], sim, labels, gen, groups=groups, group_share=p["group_share"])

    def _forward_sharded(self, batch: PairBatch, gen: torch.Generator, rnd: int) -> tuple[torch.Tensor, dict[str, float]]:
        """This rank's loss to back-propagate, ``G + W * M_r`` (see ``training/distributed.py``), and its logged shares.

        ``batch`` is the global batch (every rank drew the same one); the rank
        embeds its rows ``self.shard`` and gathers the others' with gradient,
        so ``G``, the objective's batch-global loss, is computed on the whole
        batch on every rank. In one process the shard is the whole batch,
        ``W = 1`` and this is the plain step's loss.
        """
        w, (lo, hi), model = self.world, self._rows(batch), self.model
        vg = self._to_device(self.voice.globals(batch.voice_items[lo:hi]))
        fg = self._to_device(self.face.globals(batch.face_items[lo:hi]))
        if self.objective.raw_embeddings:  # the heads' outputs before L2 normalisation (Wen's classifier)
            v_emb, f_emb = model.heads.shared(model.heads.voice_in(vg)), model.heads.shared(model.heads.face_in(fg))
        else:
            v_emb, f_emb = model.embed_voice(vg), model.embed_face(fg)
        if w > 1:
            v_emb = dist_utils.all_gather_cat(v_emb, self._gather_group)
            f_emb = dist_utils.all_gather_cat(f_emb, self._gather_group)
        labels = torch.from_numpy(batch.labels).to(self.device)
        loss, out = self._batch_loss(v_emb, f_emb, labels, rnd)
        out = {k: v / w for k, v in out.items()}
        if self.uses_fvm:
            share = self._fvm(batch, v_emb, f_emb, labels, gen)
            out["fvm"] = float(share.detach())
            loss = loss + (w * self.cfg["loss"]["fvm_weight"]) * share
        out["loss"] = float(loss.detach()) / w  # G / W + weight * M_r: the ranks' values add up to the step's
        return loss, out

    def _rows(self, batch: PairBatch) -> tuple[int, int]:
        """The rows of ``batch`` this rank embeds and anchors FVM pairs on (all of them in one process)."""
        return self.shard if self.world > 1 else (0, len(batch.labels))

    def _fvm(self, batch: PairBatch, v_emb, f_emb, labels, gen) -> torch.Tensor:
        """This rank's part of the FVM loss: its pairs' cross-entropy sum over the global pair count.

        The pairs of a step: each voice with its positive face, each voice with
        a hard negative face, each face with a hard negative voice. Every rank
        draws the same hard negatives from the global similarity matrix with
        the same generator, so every rank knows every pair; it scores those
        anchored on its rows (all rows in one process, where the share is the
        mean over all pairs). Tokens are loaded once per distinct item the rank
        touches and the encoder gathers them per pair.
        """
        model, mc, (lo, hi) = self.model, self.model.config, self._rows(batch)
        neg_f, ok_f, neg_v, ok_v = self._hard_negatives(batch, v_emb, f_emb, labels, gen)
        n = len(labels)
        total = n + int(ok_f.sum()) + int(ok_v.sum())
        mine = torch.zeros(n, dtype=torch.bool)
        mine[lo:hi] = True
        own = torch.arange(lo, hi)
        voices_with_neg = torch.nonzero(ok_f & mine).squeeze(1)
        faces_with_neg = torch.nonzero(ok_v & mine).squeeze(1)
        rows_v = torch.cat([own, voices_with_neg, neg_v[faces_with_neg]])
        rows_f = torch.cat([own, neg_f[voices_with_neg], faces_with_neg])
        uv, inv_v = torch.unique(rows_v, return_inverse=True)
        uf, inv_f = torch.unique(rows_f, return_inverse=True)
        vt, vm = item_tokens(self.voice, batch.voice_items[uv.numpy()], mc.voice_token_dim > 0, self.device)
        ft, _ = item_tokens(self.face, batch.face_items[uf.numpy()], mc.face_token_dim > 0, self.device)
        dev = self.device
        logits = model.match(
            None, None, vt, ft, vm, voice_emb=v_emb[rows_v.to(dev)], face_emb=f_emb[rows_f.to(dev)],
            voice_rows=inv_v.to(dev) if vt is not None else None, face_rows=inv_f.to(dev) if ft is not None else None,
        ).logits
        n_pos = hi - lo
        target = torch.cat([torch.ones(n_pos, dtype=torch.long), torch.zeros(len(rows_v) - n_pos, dtype=torch.long)]).to(dev)
        return F.cross_entropy(logits, target, reduction="sum") / total

    # -- validation ------------------------------------------------------------
    def validate(self) -> dict[str, float]:
        """Validation AUCs: cosine always, and the configured scoring when the match head is trained."""
        vs, fs, labels = self.val
        out = {}
        scorings = {"cosine"} | ({self.cfg["validation"]["scoring"]} if self.uses_fvm else set())
        for s in sorted(scorings):
            scores = score_pairs(self.model, self.voice, self.face, vs, fs, s)
            if not np.isfinite(scores).all():
                found = self._find_nonfinite({"voice": vs, "face": fs}, tokens=s != "cosine")
                raise UserError(found or f"validation scores ({s}) are NaN/inf with finite features: training "
                                f"diverged; lower optim.lr (now {self.cfg['optim']['lr']})")
            out[f"val_auc_{s}"] = float(verification_auc(scores, labels))
        key = self.cfg["validation"]["scoring"] if self.uses_fvm else "cosine"
        out["val_auc"] = out[f"val_auc_{key}"]
        return out
    # -- the loop --------------------------------------------------------------
    def train(self) -> dict[str, Any]:
        cfg, sched = self.cfg, self.cfg["schedule"]
        seed = cfg["seed"]
        while not self.state["done"] and self.state["round"] < sched["max_rounds"]:
            rnd = self.state["round"]
            t0 = time.perf_counter()
            # the batch sampler and the hard-negative generator are the same on every rank (one global
            # batch); the global torch RNG (dropout) gets an independent stream per rank
            torch.manual_seed(dist_utils.rank_seed(seed * 100_003 + rnd, self.rank))
            rng = np.random.default_rng([seed, rnd])
            gen = torch.Generator().manual_seed(seed * 100_003 + rnd)
            labels, stats = dist_utils.on_main_then_broadcast(lambda: self.round_labels(rnd))
            steps = sched["steps_per_round"]
            if self.objective.fitted:  # closed form on this round's labels, then validate once
                stats.update(fit_linear_baseline(self.model, self.voice, self.face, self.index, labels, cfg))
                steps = 0
                self.state["done"] = True
            if self.uses_fvm and uses_groups(cfg["pairs"]["negatives"]):
                self.video_groups = dist_utils.on_main_then_broadcast(lambda: coarse_groups(
                    self.model, self.voice, self.face, self.index, cfg["pairs"]["groups"], seed * 1000 + rnd + 17))
            sampler = PairSampler(self.index, labels, bool(cfg["pairs"]["diverse_positives"]))
            self.model.train()
            sums: dict[str, float] = {}
            bar = tqdm(range(steps), desc=f"round {rnd}", disable=not self.progress, leave=False)
            for _ in bar:
                out = self.step(sampler.sample(cfg["optim"]["batch_size"], rng), gen, rnd)
                for k, v in out.items():
                    sums[k] = sums.get(k, 0.0) + v
                self.state["step"] += 1
            # anchors alone in their label have no diverse positive: skipped (counted), or paired in-video
            stats = {**stats, "singleton_videos": int(sampler.singleton_videos),
                     "same_video_pairs": int(sampler.same_video_pairs)}
            sums = dist_utils.all_reduce_sums(sums)  # the ranks' shares add up to each step's values
            # rank 0 validates; every rank gets its result, so all take the same early-stopping decision
            val = dist_utils.on_main_then_broadcast(self.validate)
            improved = val["val_auc"] > self.state["best"]
            if improved:
                self.state.update(best=val["val_auc"], bad_rounds=0, best_round=rnd)
                if self.main:
                    self._save_best(val)
            else:
                self.state["bad_rounds"] += 1
            if not self.objective.supervised:
                self.schedule.step(val["val_auc"])
            record = {
                "round": rnd, "step": self.state["step"], **stats,
                **{k: v / max(steps, 1) for k, v in sums.items()}, **val,
                "logit_scale": self.model.logit_scale.exp().item(), "improved": improved,
                "seconds": round(time.perf_counter() - t0, 3),
            }
            if self.main:
                with open(self.run / "metrics.jsonl", "a") as fh:
                    fh.write(json.dumps(record) + "\n")
            if self.progress:
                tqdm.write(
                    f"round {rnd}: loss {record.get('loss', 0):.4f} val_auc {val['val_auc']:.4f} "
                    f"clusters {stats['clusters']}" + (f" purity {stats['purity']:.3f}" if "purity" in stats else "")
                )
            self.state["round"] = rnd + 1
            if self.state["bad_rounds"] >= sched["patience"]:
                self.state["done"] = True
            if self.main:
                self._save_state()
        # max_rounds=0: the untrained model is the result
        if dist_utils.on_main_then_broadcast(lambda: not (self.run / "best").is_dir()):
            val = dist_utils.on_main_then_broadcast(self.validate)
            self.state["best"] = val["val_auc"]
            if self.main:
                self._save_best(val)
        summary = {"best_val_auc": self.state["best"], "best_round": self.state["best_round"],
                   "rounds": self.state["round"], "steps": self.state["step"]}
        if not self.main:
            return summary
        (self.run / "summary.json").write_text(json.dumps(summary, indent=2))
        from training.loop.plots import plot_training

        if (self.run / "metrics.jsonl").is_file():
            plot_training(self.run / "metrics.jsonl", self.run / "plots")
        return summary

    def _save_best(self, val: dict[str, float]) -> None:
        source = self.store_source
        # synthetic: a generated world (world.json, truth/), a store its generator marks synthetic, or features of
        # random encoder weights (they teach nothing about people): the card must warn
        random_features = bool(source.get("random_weights"))
        synthetic = (bool(self.world_meta) or (self.data_dir / "truth").is_dir() or source.get("synthetic") is True
                     or random_features)
        trained_on = {
            "data": str(self.data_dir),
            "synthetic": synthetic,
            "objective": self.objective.name,
            "train_videos": len(self.index),
            "round": self.state["round"],
            "step": self.state["step"],
            "config": self.cfg,
        }
        if self.world_meta:
            trained_on["world"] = {k: self.world_meta[k] for k in ("preset", "seed") if k in self.world_meta}
        if random_features:
            trained_on["random_encoder_features"] = True
        if source.get("weights"):  # an extracted store says which encoder weights made its features
            trained_on["feature_weights"] = source["weights"]
        save_checkpoint(
            self.run / "best", self.model, trained_on=trained_on,
            evaluation={"validation": val},
            encoders=card_encoders(self.model.config, source),
        )
