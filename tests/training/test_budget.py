"""--time-budget: durations, the plan, re-planning on a drifting machine, and a real run."""

from __future__ import annotations

import dataclasses
import math
import random

import pytest
import torch
import yaml

import imgcls
import imgcls.training.auto_model as auto_model
from imgcls.config import TrainConfig, parse_duration
from imgcls.errors import UserError
from imgcls.training import trainer
from imgcls.training.budget import EPOCH_OVERHEAD_S, MARGIN, Budget, Costs, plan_steps
from imgcls.training.run import Run
from imgcls.training.schedule import Schedule


@pytest.mark.parametrize(("text", "seconds"), [
    ("90s", 90), ("10m", 600), ("1h", 3600), ("1h30m", 5400), ("1.5h", 5400), ("45", 45),
    (" 2M ", 120), ("1m 30s", 90), ("5 minutes", 300), ("10min", 600), ("2hrs", 7200),
    ("1 hour 15 min", 4500), (".5h", 1800), ("1:30:00", 5400), ("90:00", 5400), ("0:45", 45),
])
def test_durations_parse(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "abc", "10x", "-5m", "0s", "m", "5 mins later", "1:2:3:4",
                                  "0:00", "10 fortnights", "1e3", "1:75x"])
def test_a_bad_duration_is_a_user_error_naming_the_flag(text: str) -> None:
    with pytest.raises(UserError, match="--time-budget"):
        parse_duration(text)
    with pytest.raises(UserError, match="--time-budget"):
        TrainConfig(time_budget=text).validate()


def _cost(steps: int, costs: Costs, steps_per_epoch: int, steps_done: int = 0) -> float:
    """What a plan of `steps` in all costs from `steps_done` on, as plan_steps counts it."""
    validations = math.ceil(steps / steps_per_epoch) - steps_done // steps_per_epoch
    return ((steps - steps_done) * costs.step_s
            + validations * (costs.val_s + EPOCH_OVERHEAD_S) + costs.finish_s)


@pytest.mark.parametrize("seed", range(20))
def test_the_plan_is_the_longest_that_fits(seed: int) -> None:
    chance = random.Random(seed)
    costs = Costs(step_s=chance.uniform(0.005, 2), val_s=chance.uniform(0, 20),
                  finish_s=chance.uniform(1, 30))
    steps_per_epoch = chance.randint(1, 500)
    left = chance.uniform(30, 4000)
    steps_done = chance.choice([0, chance.randint(0, 300)])
    steps = plan_steps(left, costs, steps_per_epoch, steps_done)
    assert steps > steps_done  # these seeds all leave room for a step; 0 is tested below
    assert _cost(steps, costs, steps_per_epoch, steps_done) <= left + 1e-9
    assert _cost(steps + 1, costs, steps_per_epoch, steps_done) > left


@pytest.mark.parametrize("steps_done", [0, 7, 10])
def test_no_plan_when_not_even_one_step_fits(steps_done: int) -> None:
    costs = Costs(step_s=0.5, val_s=4.0, finish_s=20.0)
    one_more = _cost(steps_done + 1, costs, 10, steps_done)
    assert plan_steps(one_more - 0.01, costs, 10, steps_done) == 0
    assert plan_steps(one_more, costs, 10, steps_done) == steps_done + 1


def _simulate(budget_s: float, drift: float, seed: int) -> float:
    """A run on a machine whose speed drifts by up to `drift` from what was measured:
    returns when its finish ends, on a clock that started with the process."""
    chance = random.Random(seed)
    measured = Costs(step_s=0.05, val_s=1.0, finish_s=8.0)
    now = 8.0  # imports and loading
    budget = Budget(seconds=budget_s, started=0.0, costs=measured, steps_per_epoch=420)
    budget.plan(now=now)
    speed = 1 + chance.uniform(-drift, drift)
    step, epoch_start, epoch_steps = 0, now, 0
    while step < budget.total_steps:
        step += 1
        epoch_steps += 1
        now += measured.step_s * speed
        if step % 50 == 0:  # the machine's speed wanders
            speed = min(1 + drift, max(1 - drift, speed + chance.uniform(-0.1, 0.1)))
        at_epoch_end = step % budget.steps_per_epoch == 0 or step == budget.total_steps
        if step % 20 == 0 and not at_epoch_end:  # as the trainer does
            budget.replan(step, budget.pace(epoch_steps, now - epoch_start), now=now)
        if at_epoch_end:
            budget.epoch_trained(epoch_steps, now - epoch_start)
            now += measured.val_s * speed + EPOCH_OVERHEAD_S
            epoch_start, epoch_steps = now, 0
    return now + measured.finish_s * speed


@pytest.mark.parametrize("minutes", [1, 2, 5])
@pytest.mark.parametrize("drift", [0.0, 0.3])
@pytest.mark.parametrize("seed", range(3))
def test_runs_end_within_ten_percent_of_their_budget(minutes: int, drift: float,
                                                     seed: int) -> None:
    budget_s = 60 * minutes
    ended = _simulate(budget_s, drift, seed)
    assert 0.9 * budget_s <= ended <= 1.1 * budget_s, ended


def test_a_budget_too_short_for_one_step_is_a_user_error() -> None:
    budget = Budget(seconds=10, started=0.0, costs=Costs(1.0, 3.0, 8.0), steps_per_epoch=10)
    with pytest.raises(UserError, match="too short"):
        budget.plan(now=5.0)


@pytest.mark.parametrize("sched", ["onecycle", "cosine"])
def test_a_replanned_schedule_still_anneals_to_its_end(sched: str) -> None:
    import torch

    parameter = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([parameter], lr=0.1)
    schedule = Schedule(optimizer, TrainConfig(sched=sched, epochs=10, warmup_epochs=0.5), 100)
    for _ in range(300):
        optimizer.step()
        schedule.after_step()
    peak = max(group["lr"] for group in optimizer.param_groups)
    schedule.set_total_steps(450)  # the machine turned out slower: 450 steps, not 1000
    for _ in range(149):
        optimizer.step()
        schedule.after_step()
    assert optimizer.param_groups[0]["lr"] < 0.01 * 0.1 + 1e-12
    assert peak > 0.01


@pytest.mark.slow
def test_a_budgeted_run_ends_in_time_and_writes_its_epochs(
        tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    budget_s = 25.0
    import time

    # A slow machine: --model auto settles to lenet5, which a short budget plans in epochs.
    monkeypatch.setattr(auto_model, "training_rate", lambda *args, **kwargs: 200.0)
    runs: list[Run] = []
    loop = trainer._loop
    monkeypatch.setattr(trainer, "_loop", lambda run, show: runs.append(run) or loop(run, show))
    started = time.time()
    run_dir = imgcls.train(data="digits", model="auto", time_budget=f"{budget_s:g}s",
                           precision="fp32", output=str(tmp_path / "run"), show_progress=False)
    ended = (run_dir / "metrics.json").stat().st_mtime
    assert ended - started <= budget_s * (1 + MARGIN)
    text = (run_dir / "config.yaml").read_text()
    assert text.startswith("# epochs planned by --time-budget 25s")
    config = yaml.safe_load(text)
    assert config["time_budget"] is None
    # The loop read a settled, frozen config; config.yaml is it, with the plan as epochs.
    (run,) = runs
    with pytest.raises(dataclasses.FrozenInstanceError):
        run.config.lr = 1.0  # type: ignore[misc]
    assert run.config.time_budget == "25s" and run.budget is not None
    assert config == dataclasses.replace(run.recorded_config, time_budget=None).to_dict()
    assert (config["model"], config["recipe"]) == ("lenet5", "lenet5-small-images")
    assert config["epochs"] > 0
    history = (run_dir / "history.jsonl").read_text().splitlines()
    assert len(history) == math.ceil(config["epochs"])
    # The repeat: the same epochs, no budget.
    repeated = TrainConfig.from_yaml(run_dir / "config.yaml")
    assert repeated.epochs == config["epochs"] and repeated.time_budget is None


def test_threads_default_follows_the_affinity_mask(monkeypatch: pytest.MonkeyPatch) -> None:
    # A run pinned to one core (taskset, a cpuset) must not start one thread per host core.
    from imgcls import runtime
    from imgcls.utils import cpus

    before = torch.get_num_threads()
    monkeypatch.setattr(cpus.os, "sched_getaffinity", lambda pid: {0}, raising=False)
    try:
        runtime.set_threads(None)
        assert torch.get_num_threads() == 1
        runtime.set_threads(3)
        assert torch.get_num_threads() == 3
    finally:
        torch.set_num_threads(before)
