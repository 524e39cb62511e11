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


def total_steps_of(config: TrainConfig, steps_per_epoch: int) -> int:
    """Steps in a run of config.epochs epochs; a fractional last epoch stops part way."""
    return max(1, round(config.epochs * steps_per_epoch))


def lr_multiplier(
    config: TrainConfig, steps_per_epoch: int, length: Callable[[], int] | None = None
) -> Callable[[int], float]:
    """The per-step multiplier. `length` gives the run's total steps when it can change while
    training (a --time-budget re-plans it); by default config.epochs decides."""
    planned = total_steps_of(config, steps_per_epoch)
    length = length or (lambda: planned)

    def warmup_steps() -> int:
        # Warmup never takes more than half of a short run; onecycle has its own rise.
        if config.sched == "onecycle":
            return 0
        return min(int(config.warmup_epochs * steps_per_epoch), length() // 2)

    def shape(step: int, warmup_steps: int) -> float:
        total_steps = max(1, length())
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
        warmup = warmup_steps()
        return (step + 1) / warmup if step < warmup else shape(step, warmup)

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
        self.total_steps = total_steps_of(config, steps_per_epoch)
        multiplier = lr_multiplier(config, steps_per_epoch, lambda: self.total_steps)
        self.warmup_steps: Callable[[], int] = multiplier.warmup_steps  # type: ignore[attr-defined]
        self.per_step = LambdaLR(optimizer, multiplier)
        self.metric = config.metric
        self.plateau = ReduceLROnPlateau(
            optimizer, mode="min" if config.metric == "val_loss" else "max",
            factor=config.decay_rate, patience=config.plateau_patience,
        ) if config.sched == "plateau" else None

    def set_total_steps(self, total_steps: int) -> None:
        """Re-plan the run's length (--time-budget); the curve continues from this step."""
        self.total_steps = total_steps
        step = self.per_step.last_epoch
        for group, base_lr in zip(self.per_step.optimizer.param_groups, self.per_step.base_lrs,
                                  strict=True):
            group["lr"] = base_lr * self.per_step.lr_lambdas[0](step)

    def after_step(self) -> None:
        # Under `plateau` the multiplier only warms up; afterwards the plateau rule owns the lr.
        if self.plateau is None or self.per_step.last_epoch < self.warmup_steps():
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
