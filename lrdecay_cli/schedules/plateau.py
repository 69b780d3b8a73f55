"""Decay on plateau: PyTorch's ReduceLROnPlateau, the one method driven by a metric, not the step count."""

from __future__ import annotations

import math
from typing import Literal

from pydantic import Field

from lrdecay_cli.schedules.registry import ScheduleParams, monotone, register


class PlateauParams(ScheduleParams):
    name: Literal["plateau"] = "plateau"
    interval: Literal["epoch"] = Field("epoch", description="evaluated after every epoch")
    monitor: Literal["val_loss", "val_acc", "train_loss"] = Field(
        "val_loss", description="the metric to watch; train_loss (the epoch's mean) where data.val_size is 0")
    mode: Literal["min", "max"] | None = Field(None, description="default: max for val_acc, min for the losses")
    factor: float = Field(0.1, gt=0, lt=1, description="LR multiplier on a plateau")
    patience: int = Field(10, ge=0, description="epochs without improvement that are tolerated: the LR is cut "
                                                 "at the next one, patience + 1 (PyTorch; Keras' patience is ours + 1)")
    threshold: float = Field(1e-4, ge=0, description="minimal change that counts as improvement")
    threshold_mode: Literal["rel", "abs"] = "rel"
    cooldown: int = Field(0, ge=0, description="epochs to wait after a decay before counting again")
    min_lr: float = Field(0.0, ge=0, description="lower bound on the LR")
    eps: float = Field(1e-8, ge=0, description="decays smaller than this are skipped")

    def resolved_mode(self) -> str:
        return self.mode or ("max" if self.monitor == "val_acc" else "min")


class Plateau:
    """ReduceLROnPlateau's state machine (torch/optim/lr_scheduler.py), fed one metric per epoch."""

    def __init__(self, p: PlateauParams, lr: float):
        self.p, self.mode, self.lr = p, p.resolved_mode(), lr
        self.best = math.inf if self.mode == "min" else -math.inf
        self.num_bad_epochs = self.cooldown_counter = 0

    def __call__(self, t: int) -> float:
        return self.lr

    def is_better(self, current: float) -> bool:
        p, best = self.p, self.best
        if self.mode == "min":
            return current < (best * (1 - p.threshold) if p.threshold_mode == "rel" else best - p.threshold)
        return current > (best * (p.threshold + 1) if p.threshold_mode == "rel" else best + p.threshold)

    def observe(self, metrics: dict[str, float]) -> None:
        current = float(metrics[self.p.monitor])
        if self.is_better(current):
            self.best, self.num_bad_epochs = current, 0
        else:
            self.num_bad_epochs += 1
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.num_bad_epochs = 0
        if self.num_bad_epochs > self.p.patience:
            new_lr = max(self.lr * self.p.factor, self.p.min_lr)
            if self.lr - new_lr > self.p.eps:
                self.lr = new_lr
            self.cooldown_counter, self.num_bad_epochs = self.p.cooldown, 0

    def state_dict(self) -> dict:
        return {"lr": self.lr, "best": self.best, "num_bad_epochs": self.num_bad_epochs,
                "cooldown_counter": self.cooldown_counter}

    def load_state_dict(self, state: dict) -> None:
        self.lr, self.best = state["lr"], state["best"]
        self.num_bad_epochs, self.cooldown_counter = state["num_bad_epochs"], state["cooldown_counter"]


@register(PlateauParams, "lr *= factor once patience + 1 epochs in a row bring no improvement of monitor",
          "PyTorch ReduceLROnPlateau", breaks=monotone, unchanging=True)  # it only falls, on a metric
def plateau(p: PlateauParams, lr: float, total: int) -> Plateau:
    return Plateau(p, lr)
