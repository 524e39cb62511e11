"""--time-budget: how many steps fit in the time the user gave, measured on this machine.

The clock starts with the process (a budget covers imports and data loading too) and ends
when the run does. A plan counts what a run spends: training steps, one validation per epoch,
a little per epoch for saving, the final test evaluation and report, and the ONNX export
cached after them. The step
time is measured before training on a throwaway copy of the model, so the plan (and with it
the learning-rate schedule) is fixed before the first real step. While training, the run
re-plans when the machine turns out slower or faster than measured (shared VMs drift by
±30%), so the schedule still anneals to its end inside the budget.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass

from imgcls.config import parse_duration
from imgcls.errors import UserError

__all__ = ["Budget", "Costs", "describe_seconds", "parse_duration", "plan_steps"]

# Time a run spends per epoch besides steps and validation (last.pt, history, a best model).
EPOCH_OVERHEAD_S = 0.5
# The final report (charts, mistakes) after the test evaluation: measured 3.1-3.4 s on a
# 2-core CPU for 10 classes and 10,000 test images.
REPORT_S = 3.0
# The ONNX export a finished run caches for fast prediction (predict/backends/prepare.py), after
# metrics.json: 0.6 s for lenet5 and vgg_small at 28-32 px on one AVX512 core, with the imports.
EXPORT_S = 1.5
# Re-plan when the projected end is off the deadline by more than this fraction of the budget.
REPLAN_TOLERANCE = 0.02
# Safety margin kept free at the end: the measured costs scatter by a few percent.
MARGIN = 0.015


def process_started() -> float:
    """When this process started, on time.time()'s clock (the import of imgcls elsewhere)."""
    try:
        with open("/proc/self/stat") as stat:
            # Field 22 (starttime) in clock ticks since boot; the name in field 2 may hold spaces.
            start_ticks = int(stat.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/uptime") as uptime:
            seconds_since_boot = float(uptime.read().split()[0])
        ticks_per_second = os.sysconf("SC_CLK_TCK")
        return time.time() - seconds_since_boot + start_ticks / ticks_per_second
    except (OSError, ValueError, IndexError):
        return _IMPORTED


_IMPORTED = time.time()


@dataclass(frozen=True)
class Costs:
    """What one piece of a run costs on this machine, in seconds."""

    step_s: float  # one training step (a batch: augment, forward, backward, optimizer)
    val_s: float  # one validation pass
    finish_s: float  # the final test evaluation, model file and report


def plan_steps(
    seconds_left: float, costs: Costs, steps_per_epoch: int, steps_done: int = 0
) -> int:
    """The most steps in all (counting `steps_done`, taken already) whose remaining steps,
    validations and finish fit in `seconds_left`; each epoch, partial or whole, ends with one
    validation. 0 when not even one more step fits."""
    usable = seconds_left - costs.finish_s
    per_epoch = costs.val_s + EPOCH_OVERHEAD_S
    validated = steps_done // steps_per_epoch  # epochs already finished
    best = 0
    for epochs in range(validated + 1, validated + 100_000):
        steps = steps_done + math.floor(
            (usable - (epochs - validated) * per_epoch) / costs.step_s)
        if steps <= max(steps_done, (epochs - 1) * steps_per_epoch):
            break  # the time left would not reach into this epoch
        best = min(steps, epochs * steps_per_epoch)
    return best


@dataclass
class Budget:
    """A deadline and the plan that keeps it; `total_steps` is what the schedule follows."""

    seconds: float  # the budget the user gave
    started: float  # time.time() at the process start
    costs: Costs
    steps_per_epoch: int
    total_steps: int = 0
    # Training steps and their seconds in the epochs finished so far: the pace re-plans use
    # is over the whole run, so one slow stretch does not swing the plan.
    past_steps: int = 0
    past_seconds: float = 0.0

    def pace(self, steps: int, seconds: float) -> float:
        """Seconds per step over the run so far, with `steps` taking `seconds` in this epoch."""
        if self.past_steps + steps == 0:
            return self.costs.step_s
        return (self.past_seconds + seconds) / (self.past_steps + steps)

    def epoch_trained(self, steps: int, seconds: float) -> None:
        self.past_steps += steps
        self.past_seconds += seconds

    @property
    def deadline(self) -> float:
        return self.started + self.seconds * (1 - MARGIN)

    @property
    def epochs(self) -> float:
        return self.total_steps / self.steps_per_epoch

    def plan(self, now: float | None = None) -> int:
        left = self.deadline - (now if now is not None else time.time())
        self.total_steps = plan_steps(left, self.costs, self.steps_per_epoch)
        if self.total_steps < 1:
            spent = (now or time.time()) - self.started
            raise UserError(
                f"--time-budget {self.seconds:.0f}s is too short: {spent:.0f}s went to starting "
                f"and loading, and one step, a validation and the final evaluation need "
                f"{self.costs.step_s + self.costs.val_s + self.costs.finish_s:.0f}s more; "
                f"give a longer budget or a smaller --model")
        return self.total_steps

    def replan(self, steps_done: int, step_s: float, now: float | None = None) -> bool:
        """Fit the remaining steps to the deadline at the step time measured so far.
        Returns whether the plan changed. The last tenth of a run keeps its plan, so the
        learning rate anneals smoothly to its end."""
        if steps_done >= 0.9 * self.total_steps:
            return False
        now = now if now is not None else time.time()
        costs = Costs(step_s, self.costs.val_s, self.costs.finish_s)
        candidate = max(steps_done + 1, plan_steps(self.deadline - now, costs,
                                                   self.steps_per_epoch, steps_done))
        if abs(candidate - self.total_steps) * step_s <= REPLAN_TOLERANCE * self.seconds:
            return False
        self.costs, self.total_steps = costs, candidate
        return True


def describe_seconds(seconds: float) -> str:
    """90 -> "1 min 30 s"; 5400 -> "1 h 30 min"."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        minutes, rest = divmod(seconds, 60)
        return f"{minutes} min {rest} s" if rest else f"{minutes} min"
    hours, rest = divmod(seconds, 3600)
    return f"{hours} h {rest // 60} min"
