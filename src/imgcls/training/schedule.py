"""The learning-rate schedule: a per-step multiplier (warmup, then the chosen shape), and for
`plateau` a reduction on a stalled validation metric.

The multiplier is a pure function of the step and the run's total length, so extending a
run (`--resume RUN --epochs M`) continues the curve recomputed for M epochs from the step
it reached, instead of starting a new warmup.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch.optim.lr_scheduler import LambdaLR, ReduceLROnPlateau

from imgcls.config import TrainConfig

# OneCycle's shape, as torch.optim.lr_scheduler.OneCycleLR's defaults: 30% rising from
# max/25, then falling to max/25e4, both along a cosine.
ONECYCLE_RISE, ONECYCLE_START, ONECYCLE_END = 0.3, 1 / 25, 1 / 25e4


def lr_multiplier(config: TrainConfig, steps_per_epoch: int) -> Callable[[int], float]:
    total_steps = max(1, config.epochs * steps_per_epoch)
    # Warmup never takes more than half of a short run; onecycle has its own rise.
    warmup_steps = 0 if config.sched == "onecycle" else min(
        int(config.warmup_epochs * steps_per_epoch), total_steps // 2)

    def shape(step: int) -> float:
        epoch = step / steps_per_epoch
        progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        if config.sched == "cosine":
            return 0.5 * (1 + math.cos(math.pi * progress))
        if config.sched == "step":
            return config.decay_rate ** math.floor(epoch / config.decay_epochs)
        if config.sched == "multistep":
            return config.decay_rate ** sum(epoch >= m for m in config.decay_milestones)
        if config.sched == "onecycle":
            return _onecycle(min(1.0, step / total_steps))
        return 1.0  # constant, plateau (its reductions act on the optimizer directly)

    def multiplier(step: int) -> float:
        return (step + 1) / warmup_steps if step < warmup_steps else shape(step)

    multiplier.warmup_steps = warmup_steps  # type: ignore[attr-defined]
    return multiplier


def _onecycle(fraction: float) -> float:
    if fraction < ONECYCLE_RISE:
        return _cosine_between(ONECYCLE_START, 1.0, fraction / ONECYCLE_RISE)
    return _cosine_between(1.0, ONECYCLE_END, (fraction - ONECYCLE_RISE) / (1 - ONECYCLE_RISE))


def _cosine_between(start: float, end: float, fraction: float) -> float:
    return end + (start - end) * 0.5 * (1 + math.cos(math.pi * fraction))


class Schedule:
    """Steps the learning rate: `after_step` every optimizer step, `after_epoch` with the
    validation metrics once an epoch."""

    def __init__(
        self, optimizer: torch.optim.Optimizer, config: TrainConfig, steps_per_epoch: int
    ) -> None:
        multiplier = lr_multiplier(config, steps_per_epoch)
        self.warmup_steps: int = multiplier.warmup_steps  # type: ignore[attr-defined]
        self.per_step = LambdaLR(optimizer, multiplier)
        self.metric = config.metric
        self.plateau = ReduceLROnPlateau(
            optimizer, mode="min" if config.metric == "val_loss" else "max",
            factor=config.decay_rate, patience=config.plateau_patience,
        ) if config.sched == "plateau" else None

    def after_step(self) -> None:
        # Under `plateau` the multiplier only warms up; afterwards the plateau rule owns the lr.
        if self.plateau is None or self.per_step.last_epoch < self.warmup_steps:
            self.per_step.step()

    def after_epoch(self, record: dict[str, float]) -> None:
        value = record.get(self.metric, float("nan"))
        if self.plateau is not None and value == value:  # no val split: nothing to watch
            self.plateau.step(value)

    def state_dict(self) -> dict[str, Any]:
        state = {"per_step": self.per_step.state_dict()}
        if self.plateau is not None:
            state["plateau"] = self.plateau.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.per_step.load_state_dict(state["per_step"])
        if self.plateau is not None and "plateau" in state:
            self.plateau.load_state_dict(state["plateau"])
