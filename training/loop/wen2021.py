"""Wen et al. 2021 as their public code trains it: a reweighting stage, then a main stage.

The losses and the curriculum are ``faa_core.losses.wen``; this module is the schedule around
them, as the objective table's parts (``training/loop/objectives.py``, row ``wen2021``):

* steps ``0 .. wen.reweight_steps - 1`` are the **reweighting stage**: every identity weighs 1
  until ``wen.warmup_steps``, then every ``wen.update_every`` steps the curriculum admits more
  identities (easiest first) until 90% are in; the learning rate is multiplied by
  ``wen.lr_decay`` at each of ``wen.lr_decay_steps_reweight``.
* at step ``wen.reweight_steps`` the curriculum's weights are frozen and the **main stage**
  starts from a freshly initialised model and classifier (their main stage loads only the
  weights), with a fresh optimiser state, its own learning-rate decays
  (``wen.lr_decay_steps_main``, counted from the stage's start) and a fresh best-model record:
  only main-stage models can become ``RUN/best``. Early stopping waits for the main stage.

The global loss sees the projection heads' *unnormalised* outputs (the row's
``raw_embeddings``); validation and evaluation score the normalised ones by cosine, as their
code does.
"""

from __future__ import annotations

import math
import warnings
from typing import Any, Mapping

import numpy as np
import torch

from faa_core.losses import WenCurriculum, wen2021_loss

# Wen et al.'s code's constants (config section ``wen``); training/config.py holds the defaults
CURRICULUM_KEYS = ("initial_loss", "momentum", "start_fraction", "add_fraction", "stop_fraction", "decay",
                   "warmup_steps", "update_every")


def _xavier(n: int, d: int, device: torch.device) -> torch.Tensor:
    w = torch.empty(n, d)
    torch.nn.init.xavier_uniform_(w)
    return w.to(device)


class Wen2021Parts:
    """The shared classifier (trained), the curriculum and the step count (state) of ``wen2021``."""

    def __init__(self, cfg: Mapping[str, Any], identities: np.ndarray, embed_dim: int, device: torch.device) -> None:
        self.cfg = dict(cfg["wen"])
        self.seed = int(cfg["seed"])
        self.base_lr = float(cfg["optim"]["lr"])
        n_id = int(identities.max()) + 1
        self.parameters: dict[str, torch.nn.Parameter] = {"classifier": torch.nn.Parameter(_xavier(n_id, embed_dim, device))}
        self.curriculum = WenCurriculum(n_id, **{k: self.cfg[k] for k in CURRICULUM_KEYS})
        self.step = 0
        sched = cfg.get("schedule")
        if sched and sched["max_rounds"] * sched["steps_per_round"] <= int(self.cfg["reweight_steps"]):
            warnings.warn(
                f"wen2021: the run's {sched['max_rounds'] * sched['steps_per_round']} steps end inside Wen's reweighting "
                f"stage (wen.reweight_steps={self.cfg['reweight_steps']}), so the main stage never starts; raise "
                "schedule.max_rounds or lower wen.reweight_steps", stacklevel=2)

    @property
    def stage(self) -> str:
        return "reweight" if self.step < int(self.cfg["reweight_steps"]) else "main"

    def lr(self) -> float:
        """The learning rate of the current step: decayed at each of the stage's milestones passed."""
        start = 0 if self.stage == "reweight" else int(self.cfg["reweight_steps"])
        milestones = self.cfg["lr_decay_steps_reweight" if self.stage == "reweight" else "lr_decay_steps_main"]
        passed = sum(self.step - start >= int(m) for m in milestones)
        return self.base_lr * float(self.cfg["lr_decay"]) ** passed

    def before_step(self, trainer: Any) -> None:
        """Curriculum update, the stage switch and the learning rate, before the trainer's next step."""
        if self.step == int(self.cfg["reweight_steps"]) and not self.curriculum.frozen:
            self._start_main_stage(trainer)
        if self.stage == "reweight":
            if self.curriculum.due(self.step):
                self.curriculum.update()
            trainer.state["bad_rounds"] = 0  # early stopping waits for the main stage
        for group in trainer.optim.param_groups:
            group["lr"] = self.lr()

    def _start_main_stage(self, trainer: Any) -> None:
        """Freeze the weights; a fresh model, classifier and optimiser state; forget the best so far."""
        self.curriculum.freeze()
        fork = torch.random.fork_rng(devices=[])
        with fork:
            torch.manual_seed(self.seed * 100_003 + 7)
            for module in trainer.model.modules():
                if module is not trainer.model and hasattr(module, "reset_parameters"):
                    module.reset_parameters()
            with torch.no_grad():
                trainer.model.logit_scale.fill_(trainer.model.config.init_logit_scale)
                c = self.parameters["classifier"]
                c.copy_(_xavier(c.shape[0], c.shape[1], c.device))
        trainer.optim.state.clear()
        trainer.state.update(best=-math.inf, bad_rounds=0, best_round=-1)

    def loss(self, v: torch.Tensor, f: torch.Tensor, labels: torch.Tensor, extra: Any) -> torch.Tensor:
        """One step's loss on unnormalised embeddings; the reweighting stage also feeds the curriculum."""
        weights = self.curriculum.weights().to(v.device)
        loss, per_sample = wen2021_loss(v, f, labels, extra["classifier"], sample_weight=weights)
        if self.stage == "reweight":
            self.curriculum.observe(labels.cpu(), per_sample.cpu())
        self.step += 1
        return loss

    def state_dict(self) -> dict[str, Any]:
        return {"curriculum": self.curriculum.state_dict(), "step": self.step}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.curriculum.load_state_dict(state["curriculum"])
        self.step = int(state["step"])
