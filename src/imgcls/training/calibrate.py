"""Measure what a run's steps and evaluations cost on this machine, before it trains.

The training steps run on a throwaway copy of the model and optimizer, with the random
state saved and restored around them, so measuring changes nothing the run then does.
"""

from __future__ import annotations

import copy
import dataclasses
import time
from collections.abc import Callable

import torch

from imgcls.export.onnx_file import export_available
from imgcls.predict.inference import predict_probabilities
from imgcls.training.budget import EXPORT_S, REPORT_S, Costs
from imgcls.training.optim import build_optimizer
from imgcls.training.run import Run, batch_order, epoch_batches
from imgcls.training.schedule import Schedule
from imgcls.training.state import restore_rng_state, rng_state

StepFunction = Callable[[Run, torch.Tensor, torch.Tensor], object]
# The first steps build oneDNN's kernels and fill caches: not counted.
WARMUP_STEPS = 2
# Images timed for the evaluation cost; the per-image cost is flat beyond a few batches.
EVAL_SAMPLE = 512


def measure_costs(run: Run, step: StepFunction, seconds: float) -> Costs:
    """Costs of `run`'s training step (timed for about `seconds`), validation and finish."""
    saved_rng = rng_state()
    try:
        step_s = _measure_step(run, step, seconds)
        val_s = _measure_eval(run, "val", run.dtype)
        test_s = _measure_eval(run, "test", None)  # the final test evaluation runs in fp32
    finally:
        restore_rng_state(saved_rng)
    export_s = EXPORT_S if export_available() else 0.0
    return Costs(step_s=step_s, val_s=val_s, finish_s=test_s + REPORT_S + export_s)


def _measure_step(run: Run, step: StepFunction, seconds: float) -> float:
    scratch = _scratch_run(run)
    batches = batch_order(len(run.train_labels), run.config.batch_size,
                          torch.Generator().manual_seed(0), run.device)
    timed, started, elapsed = 0, 0.0, 0.0
    for index, (images, labels) in enumerate(epoch_batches(scratch, batches, 0)):
        if index == WARMUP_STEPS:
            _synchronize(run.device)
            started = time.perf_counter()
        step(scratch, images, labels)
        if index >= WARMUP_STEPS:
            timed += 1
            _synchronize(run.device)
            elapsed = time.perf_counter() - started
            if elapsed >= seconds and timed >= 3:
                break
    if timed == 0:  # an epoch shorter than the warmup: time it whole
        return _time_whole(scratch, step, batches)
    return elapsed / timed


def _time_whole(scratch: Run, step: StepFunction, batches: list[torch.Tensor]) -> float:
    started = time.perf_counter()
    for images, labels in epoch_batches(scratch, batches, 0):
        step(scratch, images, labels)
    return (time.perf_counter() - started) / max(1, len(batches))


def _scratch_run(run: Run) -> Run:
    """The run with a copy of its model, optimizer and schedule: steps on it leave `run` as
    it was. Its EMA and writer are dropped (their cost is small beside a step)."""
    model = copy.deepcopy(run.model)
    optimizer = build_optimizer(model, run.config)
    return dataclasses.replace(
        run, model=model, forward=model, ema=None, optimizer=optimizer, writer=None,
        schedule=Schedule(optimizer, run.config, run.steps_per_epoch),
        scaler=torch.amp.GradScaler(run.device.type, enabled=run.dtype == torch.float16),
    )


def _measure_eval(run: Run, part: str, dtype: torch.dtype | None) -> float:
    """Seconds to predict every image of `part`, from a sample of them."""
    count = len(getattr(run.data.split, part))
    if count == 0 or run.data.streaming:
        # A streamed part is decoded from disk: assume a decode rate of about 500 images/s.
        return count / 500.0
    images, _ = run.data.subset(part)
    sample = images[:EVAL_SAMPLE]
    predict_probabilities(run.eval_model, run.normalizer, sample[:64], device=run.device,
                          dtype=dtype, channels_last=run.channels_last)  # warm up
    started = time.perf_counter()
    predict_probabilities(run.eval_model, run.normalizer, sample, device=run.device, dtype=dtype,
                          channels_last=run.channels_last)
    return (time.perf_counter() - started) * count / len(sample)


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
