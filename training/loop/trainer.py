"""The training loop shared by every objective: rounds of (labels -> steps -> validation).

A round first fixes the labels of the training videos -- k-means on
dual-modality pooled embeddings for the unsupervised objectives (``faa``,
``sl``), the true identities for the supervised ones (``faa_supervised``,
``wen2021``) -- then takes ``steps_per_round`` optimiser steps on pairs drawn
from those labels, then validates. The best model is kept in ``RUN/best/``
(faa_core's checkpoint format).

Resumable: after every round the whole state (model, optimiser, schedule,
counters) is written atomically to ``RUN/state.pt``, and every random draw
of a round is seeded from (seed, round), so a run killed at any moment and
restarted ends exactly where an uninterrupted run ends.

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
import weakref
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from faa_core.checkpoint import default_encoders, save_checkpoint
from faa_core.fileio import atomic_torch_save
from faa_core.clustering import ProgressiveClusterSchedule, cluster_purity, dual_modality_pooling, kmeans, nmi
from faa_core.losses import (
    IdentityReweighter,
    fvc_infonce,
    fvc_multi_similarity,
    fvm_loss,
    sample_hard_negatives,
    wen_two_level_loss,
)
from faa_core.metrics import verification_auc
from faa_core.model import FAAConfig, FAAModel

from training.loop import distributed as dist_utils
from training.loop.data import IdentityLinked, PairBatch, PairSampler, VideoIndex, open_features
from training.eval.scoring import embed_items, item_tokens, score_pairs, verification_trials

UNSUPERVISED = ("faa", "sl")


def model_config(cfg: dict[str, Any], voice, face) -> FAAConfig:
    """FAAConfig from the config's model section and the data's dimensions."""
    m = dict(cfg["model"])
    use_tokens = bool(m.pop("use_tokens", True))
    grid = getattr(face, "token_grid", None) or (8, 8)
    return FAAConfig(
        face_dim=face.global_dim,
        voice_dim=voice.global_dim,
        face_token_dim=face.token_dim if use_tokens and face.has_tokens else 0,
        voice_token_dim=voice.token_dim if use_tokens and voice.has_tokens else 0,
        face_grid=tuple(grid),
        **m,
    )


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
        device: str | torch.device = "cpu",
    ) -> None:
        self.cfg = cfg
        # the model and the step's tensors live here; sampling, clustering and the RNG streams stay on the CPU,
        # so a run's pairs and negatives do not depend on the device
        self.device = torch.device(device)
        self.data_dir = Path(data_dir)
        self.run = Path(run_dir)
        self.world, self.rank = dist_utils.world_size(), dist_utils.rank()
        self.main = self.rank == 0
        # the rows of the global batch this rank embeds (all of them in one process)
        b = dist_utils.per_rank_batch(int(cfg["optim"]["batch_size"]), self.world)
        self.shard = (self.rank * b, (self.rank + 1) * b)
        if self.main:
            self.run.mkdir(parents=True, exist_ok=True)
        self.progress = progress and self.main
        self.objective = cfg["objective"]
        src = open_features(data_dir)
        self.voice, self.face = src["voice"], src["face"]
        link = cfg.get("data", {}).get("link", "video")
        if link == "identity":  # faces without videos (VGGFace1 photos): link the modalities by person
            if self.objective in UNSUPERVISED:
                raise ValueError(f"data.link=identity uses identity labels; objective {self.objective} is unsupervised "
                                 "(use faa_supervised or wen2021, or face-track frames that share videos)")
            self.index = VideoIndex(IdentityLinked(self.voice), IdentityLinked(self.face), "train")
        elif link == "video":
            self.index = VideoIndex(self.voice, self.face, "train")
        else:
            raise ValueError(f"data.link must be video or identity, got {link!r}")
        self.identity = self.index.identity_codes()
        if self.objective not in UNSUPERVISED and (self.identity < 0).any():
            raise ValueError(f"objective {self.objective} needs identities for every training video")

        torch.manual_seed(cfg["seed"])
        self.model = FAAModel(model_config(cfg, self.voice, self.face)).to(self.device)
        self.extra = torch.nn.ParameterDict()
        if self.objective == "wen2021":
            n_id = int(self.identity.max()) + 1
            w = torch.randn(n_id, self.model.config.embed_dim) * 0.01
            self.extra["classifier"] = torch.nn.Parameter(w.to(self.device))
            self.reweighter = IdentityReweighter(n_id, drop_fraction=cfg["loss"]["reweight_drop_fraction"])
        params = list(self.model.parameters()) + list(self.extra.parameters())
        o = cfg["optim"]
        if o["name"] == "sgd":
            self.optim = torch.optim.SGD(params, lr=o["lr"], momentum=o["momentum"], weight_decay=o["weight_decay"])
        else:
            self.optim = torch.optim.Adam(params, lr=o["lr"], weight_decay=o["weight_decay"])

        c = cfg.get("clustering", {})
        n_videos = len(self.index)
        start = max(2, min(n_videos, int(round(c.get("start_fraction", 0.5) * n_videos))))
        minimum = max(2, min(start, int(round(c.get("min_fraction", 0.02) * n_videos))))
        self.schedule = ProgressiveClusterSchedule(
            start=start, factor=c.get("factor", 0.8), minimum=minimum,
            patience=c.get("patience", 2), fixed=bool(c.get("fixed", False)),
        )
        v = cfg["validation"]
        self.val = verification_trials(self.voice, self.face, "val", v["trials"], seed=cfg["seed"] + 7919)
        self.state = {"round": 0, "step": 0, "best": -math.inf, "bad_rounds": 0, "done": False, "best_round": -1}
        self._resume()
        self._ddp: Optional[torch.nn.parallel.DistributedDataParallel] = None
        self._gather_group: Any = None
        if self.world > 1:
            self._setup_ddp()

    def _setup_ddp(self) -> None:
        """Wrap the trainable modules in DDP, once every rank has loaded the same state."""
        dist_utils.barrier()  # no rank starts a round (nor rank 0 rewrites state.pt) before all have resumed
        self._gather_group = dist_utils.new_group()
        # parameters a step's loss does not reach must be declared, or DDP waits for their gradients
        all_used = self.uses_fvm and self.cfg["loss"]["fvc"] == "infonce"
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

    def _resume(self) -> None:
        """Load state.pt if there is one (every rank loads the same file); only rank 0 touches the log."""
        if not self.state_path.is_file():
            if self.main:
                (self.run / "metrics.jsonl").unlink(missing_ok=True)
                (self.run / "config.json").write_text(json.dumps(self.cfg, indent=2))
            return
        saved = torch.load(self.state_path, map_location="cpu", weights_only=True)
        self.model.load_state_dict(saved["model"])
        self.extra.load_state_dict(saved["extra"])
        self.optim.load_state_dict(saved["optim"])
        self.schedule.load_state_dict(saved["schedule"])
        if self.objective == "wen2021":
            self.reweighter.load_state_dict(saved["reweighter"])
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
            "state": self.state,
        }
        if self.objective == "wen2021":
            saved["reweighter"] = self.reweighter.state_dict()
        atomic_torch_save(saved, self.state_path)

    # -- labels ----------------------------------------------------------------
    def round_labels(self, rnd: int) -> tuple[np.ndarray, dict[str, Any]]:
        """Labels of the training videos for this round, and clustering statistics."""
        if self.objective not in UNSUPERVISED:
            return self.identity, {"clusters": int(self.identity.max()) + 1}
        self.model.eval()
        idx = self.index
        space = self.cfg["clustering"].get("space", "learned")
        if space == "input":  # the frozen encoders' features, as the pseudo-labels of round 0 see them
            v_emb = np.asarray(self.voice.globals(idx.voice_video_items), dtype=np.float32)
            f_emb = np.asarray(self.face.globals(idx.face_video_items), dtype=np.float32)
        else:
            v_emb = embed_items(self.model, self.voice, idx.voice_video_items, "voice").cpu().numpy()
            f_emb = embed_items(self.model, self.face, idx.face_video_items, "face").cpu().numpy()
        keys, pooled = dual_modality_pooling(v_emb, idx.voice_video, f_emb, idx.face_video)
        k = self.schedule.current()
        result = kmeans(pooled, k, niter=self.cfg["clustering"].get("niter", 20), seed=self.cfg["seed"] * 1000 + rnd)
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
        """Whether a step also trains the match head (FVM) on top of the contrastive loss."""
        return bool(self.cfg["loss"].get("fvm")) and self.objective not in ("sl", "wen2021")

    def step(self, batch, gen: torch.Generator, rnd: int) -> dict[str, float]:
        if self._ddp is not None:
            return self._step_sharded(batch, gen, rnd)
        model, loss_cfg = self.model, self.cfg["loss"]
        vg = self._to_device(self.voice.globals(batch.voice_items))
        fg = self._to_device(self.face.globals(batch.face_items))
        labels = torch.from_numpy(batch.labels).to(self.device)
        v_emb, f_emb = model.embed_voice(vg), model.embed_face(fg)
        loss, out = self._batch_loss(v_emb, f_emb, labels, rnd)
        if self.uses_fvm:
            fvm = self._fvm(batch, v_emb, f_emb, labels, gen)
            loss = loss + loss_cfg["fvm_weight"] * fvm
            out["fvm"] = float(fvm.detach())
        self.optim.zero_grad(set_to_none=True)
        loss.backward()
        self.optim.step()
        out["loss"] = float(loss.detach())
        return out

    def _batch_loss(
        self, v_emb: torch.Tensor, f_emb: torch.Tensor, labels: torch.Tensor, rnd: int
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """The objective's batch-global loss (FVC or Wen's) on the whole batch's embeddings."""
        model, loss_cfg = self.model, self.cfg["loss"]
        out: dict[str, float] = {}
        if self.objective == "wen2021":
            weights = None
            if rnd >= loss_cfg["reweight_start_round"]:
                weights = self.reweighter.weights().to(self.device)
            loss = wen_two_level_loss(
                v_emb, f_emb, labels, torch.nn.functional.normalize(self.extra["classifier"], dim=1),
                sample_weight=weights, local_weight=loss_cfg["wen_local_weight"], scale=loss_cfg["wen_scale"],
            )
            with torch.no_grad():
                w = torch.nn.functional.normalize(self.extra["classifier"], dim=1)
                ce = lambda e: torch.nn.functional.cross_entropy(loss_cfg["wen_scale"] * e @ w.T, labels, reduction="none")
                self.reweighter.update(labels.cpu(), ((ce(v_emb) + ce(f_emb)) / 2).cpu())
            out["wen"] = float(loss.detach())
        elif loss_cfg["fvc"] == "multi_similarity":
            loss = fvc_multi_similarity(
                v_emb, f_emb, labels, loss_cfg["ms_alpha"], loss_cfg["ms_beta"], loss_cfg["ms_base"]
            )
            out["fvc"] = float(loss.detach())
        else:
            loss = fvc_infonce(v_emb, f_emb, labels, model.logit_scale)
            out["fvc"] = float(loss.detach())
        return loss, out

    def _hard_negatives(self, v_emb, f_emb, labels, gen) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(a negative face per voice, its validity, a negative voice per face, its validity)."""
        with torch.no_grad():
            if self.cfg["pairs"]["hard_negatives"]:
                sim = self.model.logit_scale.exp().clamp(max=100.0) * v_emb @ f_emb.T
            else:
                sim = torch.zeros(len(labels), len(labels))
            sim, labels = sim.cpu(), labels.cpu()  # drawn with the CPU generator: the same on any device
            neg_f, ok_f = sample_hard_negatives(sim, labels, gen)
            neg_v, ok_v = sample_hard_negatives(sim.T, labels, gen)
        return neg_f, ok_f, neg_v, ok_v

    def _fvm(self, batch, v_emb, f_emb, labels, gen) -> torch.Tensor:
        model, mc = self.model, self.model.config
        neg_f, ok_f, neg_v, ok_v = self._hard_negatives(v_emb, f_emb, labels, gen)
        vt, vm = item_tokens(self.voice, batch.voice_items, mc.voice_token_dim > 0, self.device)
        ft, _ = item_tokens(self.face, batch.face_items, mc.face_token_dim > 0, self.device)

        # voices: their positive face, a hard negative face; faces: a hard negative voice.
        # Tokens stay one per batch item; the encoder projects them once and gathers rows.
        rows_v = torch.cat([torch.arange(len(labels)), torch.nonzero(ok_f).squeeze(1), neg_v[ok_v]]).to(self.device)
        rows_f = torch.cat([torch.arange(len(labels)), neg_f[ok_f], torch.nonzero(ok_v).squeeze(1)]).to(self.device)
        logits = model.match(
            None, None, vt, ft, vm, voice_emb=v_emb[rows_v], face_emb=f_emb[rows_f],
            voice_rows=rows_v if vt is not None else None, face_rows=rows_f if ft is not None else None,
        ).logits
        n = len(labels)
        return fvm_loss(logits[:n], logits[n:])

    # -- one step, distributed ---------------------------------------------------
    def _step_sharded(self, batch: PairBatch, gen: torch.Generator, rnd: int) -> dict[str, float]:
        """One DDP step; the returned values are this rank's *shares* (they sum over ranks to the step's)."""
        assert self._ddp is not None
        loss, out = self._ddp(batch, gen, rnd)
        self.optim.zero_grad(set_to_none=True)
        loss.backward()
        self.optim.step()
        return out

    def _forward_sharded(self, batch: PairBatch, gen: torch.Generator, rnd: int) -> tuple[torch.Tensor, dict[str, float]]:
        """This rank's loss to back-propagate, ``G + W * M_r`` (see ``training/distributed.py``).

        ``batch`` is the global batch (every rank drew the same one); the rank
        embeds its rows ``self.shard`` and gathers the others' with gradient,
        so ``G``, the objective's batch-global loss, is computed on the whole
        batch on every rank.
        """
        w, (lo, hi), model = self.world, self.shard, self.model
        vg = self._to_device(self.voice.globals(batch.voice_items[lo:hi]))
        fg = self._to_device(self.face.globals(batch.face_items[lo:hi]))
        v_emb = dist_utils.all_gather_cat(model.embed_voice(vg), self._gather_group)
        f_emb = dist_utils.all_gather_cat(model.embed_face(fg), self._gather_group)
        labels = torch.from_numpy(batch.labels).to(self.device)
        loss, out = self._batch_loss(v_emb, f_emb, labels, rnd)
        out = {k: v / w for k, v in out.items()}
        out["loss"] = float(loss.detach()) / w
        if self.uses_fvm:
            share = self._fvm_share(batch, v_emb, f_emb, labels, gen)
            weight = self.cfg["loss"]["fvm_weight"]
            out["fvm"] = float(share.detach())
            out["loss"] += weight * out["fvm"]
            loss = loss + (w * weight) * share
        return loss, out

    def _fvm_share(self, batch: PairBatch, v_emb, f_emb, labels, gen) -> torch.Tensor:
        """This rank's part of the FVM loss: its pairs' cross-entropy sum over the global pair count.

        Every rank draws the same hard negatives from the global similarity
        matrix with the same generator, so every rank knows every pair; it
        scores those anchored on its slice (its positives, a negative face for
        each of its voices, a negative voice for each of its faces). The
        shares sum over ranks to the single-process mean.
        """
        model, mc, (lo, hi) = self.model, self.model.config, self.shard
        neg_f, ok_f, neg_v, ok_v = self._hard_negatives(v_emb, f_emb, labels, gen)
        n = len(labels)
        total = n + int(ok_f.sum()) + int(ok_v.sum())
        mine = torch.zeros(n, dtype=torch.bool)
        mine[lo:hi] = True
        own = torch.arange(lo, hi)
        voices_with_neg = torch.nonzero(ok_f & mine).squeeze(1)
        faces_with_neg = torch.nonzero(ok_v & mine).squeeze(1)
        rows_v = torch.cat([own, voices_with_neg, neg_v[faces_with_neg]])
        rows_f = torch.cat([own, neg_f[voices_with_neg], faces_with_neg])
        # tokens once per distinct item this rank touches; the encoder gathers them per pair
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
        vs, fs, labels = self.val
        out = {}
        scorings = {"cosine"} | ({self.cfg["validation"]["scoring"]} if self.model_uses_fusion else set())
        for s in sorted(scorings):
            out[f"val_auc_{s}"] = float(verification_auc(score_pairs(self.model, self.voice, self.face, vs, fs, s), labels))
        key = self.cfg["validation"]["scoring"] if self.model_uses_fusion else "cosine"
        out["val_auc"] = out[f"val_auc_{key}"]
        return out

    @property
    def model_uses_fusion(self) -> bool:
        return bool(self.cfg["loss"].get("fvm")) and self.objective in ("faa", "faa_supervised")

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
            sampler = PairSampler(self.index, labels, bool(cfg["pairs"]["diverse_positives"]))
            self.model.train()
            sums: dict[str, float] = {}
            bar = tqdm(range(sched["steps_per_round"]), desc=f"round {rnd}", disable=not self.progress, leave=False)
            for _ in bar:
                out = self.step(sampler.sample(cfg["optim"]["batch_size"], rng), gen, rnd)
                for k, v in out.items():
                    sums[k] = sums.get(k, 0.0) + v
                self.state["step"] += 1
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
            if self.objective in UNSUPERVISED:
                self.schedule.step(val["val_auc"])
            record = {
                "round": rnd, "step": self.state["step"], **stats,
                **{k: v / sched["steps_per_round"] for k, v in sums.items()}, **val,
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
        meta = {}
        meta_path = self.data_dir / "world.json"
        if meta_path.is_file():
            meta = json.loads(meta_path.read_text())
        trained_on = {
            "data": str(self.data_dir),
            "synthetic": bool(meta) or (self.data_dir / "truth").is_dir(),
            "objective": self.objective,
            "train_videos": len(self.index),
            "round": self.state["round"],
            "step": self.state["step"],
            "config": self.cfg,
        }
        if meta:
            trained_on["world"] = {k: meta[k] for k in ("preset", "seed") if k in meta}
        store_meta = self.data_dir / "store.json"
        if store_meta.is_file():  # an extracted store says which encoder weights made its features
            source = json.loads(store_meta.read_text()).get("source") or {}
            if source.get("random_weights"):
                # features of random encoders teach nothing about people: the card must warn like synthetic data
                trained_on.update(synthetic=True, random_encoder_features=True)
            if source.get("weights"):
                trained_on["feature_weights"] = source["weights"]
        save_checkpoint(
            self.run / "best", self.model, trained_on=trained_on,
            evaluation={"validation": val},
            encoders=default_encoders(self.model.config),
        )
