"""Time in a run: the --time-budget plan and its re-planning, and the up-front estimate of a
run without one (so a run that will take hours says so before it starts)."""

from __future__ import annotations

import dataclasses
import time

from imgcls.training import distributed
from imgcls.training.budget import Budget, describe_seconds, parse_duration
from imgcls.training.calibrate import StepFunction, measure_costs
from imgcls.training.run import Run

# The share of a budget spent measuring the step time before training (at most 10 s).
CALIBRATION_SHARE, CALIBRATION_MAX_S = 0.02, 10.0
# A run without a budget that will take longer than this says so in yellow.
LONG_RUN_S = 30 * 60


def plan_budget(run: Run, step: StepFunction, started: float) -> None:
    """Size the run to --time-budget, whose clock started at `started` (time.time()):
    measure, plan the steps, fix the schedule to them."""
    seconds = parse_duration(run.config.time_budget or "")
    calibration = min(CALIBRATION_MAX_S, CALIBRATION_SHARE * seconds)
    costs = measure_costs(run, step, calibration)
    budget = Budget(seconds=seconds, started=started, costs=costs,
                    steps_per_epoch=run.steps_per_epoch)
    budget.plan()
    # Every rank trains the same number of steps: rank 0's plan.
    budget.total_steps = distributed.share(budget.total_steps, run.dist)
    run.budget = budget
    _apply(run)
    left = budget.deadline - time.time()
    run.console.print(
        f"time budget {describe_seconds(seconds)}: {budget.epochs:.2f} epochs "
        f"({budget.total_steps} steps of {costs.step_s * 1000:.0f} ms, "
        f"{run.config.batch_size / costs.step_s:,.0f} images/s), validation "
        f"{costs.val_s:.1f} s per epoch, final evaluation and report {costs.finish_s:.0f} s; "
        f"{describe_seconds(left)} left"
    )


def replan(run: Run, steps_done: int, epoch_steps: int, epoch_seconds: float) -> bool:
    """Re-fit the remaining steps to the deadline at the pace measured so far, this epoch's
    `epoch_steps` in `epoch_seconds` included (never under torchrun, where every rank would
    have to agree)."""
    if run.budget is None or run.dist.enabled:
        return False
    step_s = run.budget.pace(epoch_steps, epoch_seconds)
    before = run.budget.total_steps
    if not run.budget.replan(steps_done, step_s):
        return False
    _apply(run)
    run.console.print(f"re-planned: {before} -> {run.budget.total_steps} steps "
                      f"({run.budget.epochs:.2f} epochs) at {step_s * 1000:.0f} ms per step")
    return True


def measured_validation(run: Run, seconds: float) -> None:
    """Plan the remaining validations at what the last one took."""
    if run.budget is not None:
        run.budget.costs = dataclasses.replace(run.budget.costs, val_s=seconds)


def _apply(run: Run) -> None:
    assert run.budget is not None
    # The plan is the budget's; config.yaml records it as epochs (Run.recorded_config).
    run.schedule.set_total_steps(run.budget.total_steps)


def announce_estimate(run: Run, step_s: float, val_s: float) -> None:
    """One line with the expected time per epoch and in all, from the first steps' pace."""
    epoch_s = step_s * run.steps_per_epoch + val_s
    total = step_s * run.total_steps + val_s * run.epochs
    line = (f"estimated {describe_seconds(epoch_s)} per epoch, {describe_seconds(total)} in "
            f"all ({run.epochs} epochs)")
    if total > LONG_RUN_S:
        line = (f"[yellow]{line}: a long run; --time-budget 10m (or --model auto) "
                f"fits one to the time you have[/]")
    run.console.print(line)
