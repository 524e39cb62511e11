"""The training loop, top to bottom.

train() -> assemble the run -> for each epoch: train on augmented batches (saving a
recovery point every --save-every-steps, or on Ctrl-C), evaluate on val, keep the best
model, write last.pt, stop early if the metric stalls -> evaluate the best model on test.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from sklearn.metrics import f1_score
from torch import nn

from imgcls.config import TrainConfig
from imgcls.data.augment import augment_batch
from imgcls.errors import UserError
from imgcls.modelfile.rundir import RunDir, prepare_run_dir
from imgcls.predict.backends.prepare import cache_fp32_export
from imgcls.predict.inference import predict_probabilities
from imgcls.runtime import autocast, precision_name
from imgcls.training import distributed
from imgcls.training.early_stop import standard_error_key
from imgcls.training.feature_cache import cached_probabilities
from imgcls.training.head_first import fine_tunes_pretrained, keep_pretrained_statistics
from imgcls.training.outputs import cpu_copy, finish, save_best_model
from imgcls.training.pacing import (
    announce_estimate,
    measured_validation,
    plan_budget,
    replan,
)
from imgcls.training.prepared_data import report_skipped
from imgcls.training.run import (
    Position,
    Run,
    assemble,
    batch_order,
    checkpoint,
    epoch_batches,
)
from imgcls.training.settle import resolve_init_from
from imgcls.training.state import load_state, save_state
from imgcls.utils.files import append_line, write_text


def train(
    config: TrainConfig,
    *,
    overwrite: bool = False,
    show_progress: bool = True,
    console: Console | None = None,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
    started: float | None = None,
) -> Path:
    """Train a new run; returns its run directory. `on_epoch` sees each epoch's history
    record after validation (e.g. a hyperparameter search reporting and pruning: an
    exception raised there stops the run, with last.pt of the epoch before). `started`
    (time.time()) is when a --time-budget's clock started: by default, now; the command
    line passes its process's start."""
    started = started if started is not None else time.time()
    config.validate()
    # Settling starts here: the run directory is named after the model, which the --init-from
    # file may decide; build_components settles the rest (training/settle.py).
    config = resolve_init_from(config)
    info = distributed.from_environment()
    run_dir = None
    if info.is_main:
        run_dir = prepare_run_dir(config, overwrite=overwrite)
        write_text(RunDir(run_dir).config, config.to_yaml())
    # Rank 0 picks the directory (runs/x-2 when runs/x exists); every rank uses that one.
    run_dir = Path(distributed.share(str(run_dir), info))
    config = dataclasses.replace(config, output=str(run_dir))
    run = assemble(config, run_dir, _console(console, info), resume_state=None, info=info,
                   started=started)
    run.on_epoch = on_epoch
    if run.config.time_budget:
        plan_budget(run, _train_step, started)
    if info.is_main:  # what auto and the budget resolved: the file repeats this run
        _write_config(run)
    return _loop(run, show_progress and info.is_main)


def _write_config(run: Run) -> None:
    """config.yaml: the settled config; a budget's plan becomes plain epochs."""
    header = ""
    if run.budget is not None:
        header = (f"# epochs planned by --time-budget {run.budget.seconds:g}s; "
                  f"this file repeats them without a budget\n")
    resolved = dataclasses.replace(run.recorded_config, time_budget=None)
    write_text(RunDir(run.run_dir).config, header + resolved.to_yaml())


def _console(console: Console | None, info: distributed.Distributed) -> Console:
    # Other ranks train silently: one log, rank 0's.
    return console or Console(soft_wrap=True, quiet=not info.is_main)


def resume(
    run_dir: str | Path,
    *,
    epochs: int | None = None,
    show_progress: bool = True,
    console: Console | None = None,
) -> Path:
    """Continue a run from its `last.pt`; `epochs` may raise the total to extend it."""
    run_dir = Path(run_dir)
    state_file = RunDir(run_dir).state
    if not state_file.is_file():
        raise UserError(f"{run_dir} has no last.pt to resume from; pass a run directory")
    config = TrainConfig.from_yaml(RunDir(run_dir).config)
    if epochs is not None:
        config = dataclasses.replace(config, epochs=epochs)
    config.validate()
    # Before anything is written: a damaged last.pt, or one saved with other settings than
    # config.yaml, is a UserError naming the file.
    state = load_state(state_file, config)
    info = distributed.from_environment()
    if info.is_main:
        _remove_partial_writes(run_dir)
    run = assemble(config, run_dir, _console(console, info), resume_state=state, info=info)
    if info.is_main:
        # The settled config: config.yaml's own, unless an older version wrote it with settings
        # left open; the checkpoints from now on carry the settled one's fingerprint.
        write_text(RunDir(run_dir).config, run.config.to_yaml())
    return _loop(run, show_progress and info.is_main)


def _remove_partial_writes(run_dir: Path) -> None:
    # A process killed while saving leaves its own temporary file (never the real one) behind.
    for leftover in run_dir.glob(".*.tmp"):
        leftover.unlink()


def _loop(run: Run, show_progress: bool) -> Path:
    main = run.dist.is_main
    _announce(run)
    with _stop_on_ctrl_c(run):
        while run.position.epoch <= run.epochs:
            record = _train_epoch(run, show_progress)
            if main:
                validation_started = time.perf_counter()
                record.update(_validate(run))
                measured_validation(run, time.perf_counter() - validation_started)
            # Every rank takes rank 0's record, so schedule and stopping agree everywhere.
            record = distributed.share(record, run.dist)
            run.schedule.after_epoch(record)
            if main:
                _log_epoch(run, record)
            if run.on_epoch is not None:
                run.on_epoch(record)
            if run.best.update(record["epoch"], record) and main:
                run.best_weights = cpu_copy(run.eval_model)
                save_best_model(run, {run.best.metric: run.best.kept_value})
            run.position = Position(epoch=record["epoch"] + 1)
            if main:
                save_state(RunDir(run.run_dir).state, checkpoint(run))
            if run.stop_requested:
                _interrupted(run)
            if run.best.should_stop:
                run.console.print(f"early stop: no better {run.best.metric} for "
                                  f"{run.best.patience} epochs")
                break
    if main:
        if run.budget is not None:  # re-planning may have changed the epochs
            _write_config(run)
        _finish_files(run)
    distributed.finish(run.dist)
    return run.run_dir


def _finish_files(run: Run) -> None:
    finish(run)
    model_file = RunDir(run.run_dir).model
    if model_file.is_file():  # after metrics.json: the budget's plan reserves EXPORT_S for it
        note = cache_fp32_export(model_file)
        if note:
            run.console.print(note)
    if run.data.streaming:  # bad files found while streaming joined the list as they came
        report_skipped(run.data.image_set, run.run_dir, run.console)
    if run.writer is not None:
        run.writer.close()


def _announce(run: Run) -> None:
    split = run.data.split
    run.console.print(
        f"[bold]{run.config.model}[/] on {run.config.data}: "
        f"{len(split.train)} train / {len(split.val)} val / {len(split.test)} test images, "
        f"{len(run.data.image_set.class_names)} classes, "
        f"input {run.input_shape}, {run.device.type} "
        f"{precision_name(run.dtype)} -> {run.run_dir}"
    )


def _epoch_generator(config: TrainConfig, epoch: int) -> torch.Generator:
    # Each epoch's order depends only on (seed, epoch), so a resumed run sees the same order.
    return torch.Generator().manual_seed(config.seed * 100_003 + epoch)


def _train_epoch(run: Run, show_progress: bool) -> dict[str, Any]:
    config, position = run.config, run.position
    if run.frozen is None:
        run.model.train()
        if fine_tunes_pretrained(config):
            keep_pretrained_statistics(run.model)
    else:  # a frozen backbone stays in eval mode: BatchNorm keeps its running statistics
        run.frozen.train_mode(run.model)
    # Every rank draws the same order and takes its own shard of it.
    batches = distributed.shard(
        batch_order(len(run.train_labels), config.batch_size,
                    _epoch_generator(config, position.epoch), run.device, run.sample_weights),
        run.dist)
    loss_sum = torch.tensor(position.loss_sum, device=run.device)
    correct = torch.tensor(position.correct, device=run.device)
    started = time.perf_counter() - position.seconds
    pace = _Pace(position.step)
    with _progress(show_progress, run.console) as progress:
        task = progress.add_task(f"epoch {position.epoch}/{run.epochs}",
                                 total=_steps_this_epoch(run, len(batches)),
                                 completed=position.step, stats="")
        for step, (images, labels) in enumerate(epoch_batches(run, batches, position.step),
                                                start=position.step):
            if step >= _steps_this_epoch(run, len(batches)):
                break  # the run's last, partial epoch (--time-budget, fractional --epochs)
            loss, logits, labels = _train_step(run, images, labels)
            loss_sum += loss.detach() * len(labels)
            correct += (logits.argmax(dim=1) == labels).sum()
            position.step, position.seen = step + 1, position.seen + len(labels)
            # Reading the loss synchronizes the device; do it a few times a second, not per step.
            if position.step % 20 == 0 or position.step == len(batches):
                progress.update(task, completed=position.step, stats=_progress_stats(
                    loss_sum.item() / position.seen, correct.item() / position.seen,
                    position.seen, started))
                _keep_pace(run, pace, position.step, progress, task, len(batches))
            elif position.step - pace.first_step == ESTIMATE_AFTER_STEPS:
                _keep_pace(run, pace, position.step, progress, task, len(batches))
            if _recovery_point_due(run, step, _steps_this_epoch(run, len(batches))):
                _save_mid_epoch(run, loss_sum, correct, started)
    seconds = time.perf_counter() - started
    if run.budget is not None:
        run.budget.epoch_trained(position.step - pace.first_step, pace.seconds())
    # Over all ranks: the loss and accuracy of the whole epoch, the images of all processes.
    loss_total, correct_total, seen = distributed.total(
        [loss_sum.item(), float(correct.item()), float(position.seen)], run.dist)
    return {
        "epoch": position.epoch,
        "lr": run.optimizer.param_groups[0]["lr"],
        "train_loss": loss_total / max(1, seen),
        "train_acc": correct_total / max(1, seen),
        "images_per_s": seen / seconds,
        "seconds": seconds,
    }


# A run without a budget estimates its length after this many steps (the first ones are slower:
# kernels are built), and says so up front.
ESTIMATE_AFTER_STEPS = 5


class _Pace:
    """The step time this process has measured in the current epoch."""

    def __init__(self, first_step: int) -> None:
        self.first_step = first_step
        self.started = time.perf_counter()

    def seconds(self) -> float:
        return time.perf_counter() - self.started

    def step_seconds(self, step: int) -> float:
        return self.seconds() / max(1, step - self.first_step)


def _steps_this_epoch(run: Run, batches_in_epoch: int) -> int:
    before = (run.position.epoch - 1) * run.steps_per_epoch
    return max(0, min(batches_in_epoch, run.total_steps - before))


def _keep_pace(
    run: Run, pace: _Pace, step: int, progress: Progress, task: Any, batches_in_epoch: int
) -> None:
    """Re-plan a budget at the pace measured so far; without one, estimate the run once."""
    if step <= pace.first_step:
        return
    if run.budget is not None:
        steps_done = (run.position.epoch - 1) * run.steps_per_epoch + step
        if replan(run, steps_done, step - pace.first_step, pace.seconds()):
            progress.update(task, total=_steps_this_epoch(run, batches_in_epoch),
                            description=f"epoch {run.position.epoch}/{run.epochs}")
    elif (run.position.epoch == 1 and pace.first_step == 0
          and step == ESTIMATE_AFTER_STEPS and run.dist.is_main):
        step_s = pace.step_seconds(step)
        # Validation is a forward pass only: about a third of a training step per image.
        val_s = step_s / 3 * len(run.data.split.val) / run.config.batch_size
        announce_estimate(run, step_s, val_s)


def _train_step(
    run: Run, images: torch.Tensor, labels: torch.Tensor
) -> tuple[torch.Tensor, ...]:
    forward = run.forward
    if run.frozen is not None and run.frozen.cached:  # `images` are the head's cached inputs
        forward = run.frozen.head_forward(run.model)
    else:
        # Augmenting the uint8 batch moves a quarter of the bytes that a float batch would.
        images = augment_batch(run.augment, images)
        if run.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        images = run.normalizer(images)
    targets = labels
    if getattr(run.augment, "mixing", False):
        # MixUp/CutMix after normalization is the same: both are linear with weights summing to 1.
        images, targets = run.augment.mix(images, labels, len(run.data.image_set.class_names))
    with autocast(run.device, run.dtype):
        logits = forward(images)
        loss = nn.functional.cross_entropy(logits, targets, weight=run.loss_weights,
                                           label_smoothing=run.config.label_smoothing)
    run.optimizer.zero_grad(set_to_none=True)
    run.scaler.scale(loss).backward()
    if run.config.clip_grad is not None:
        run.scaler.unscale_(run.optimizer)  # clip the true gradients, not the scaled ones
        nn.utils.clip_grad_norm_(run.model.parameters(), run.config.clip_grad)
    run.scaler.step(run.optimizer)
    run.scaler.update()
    run.schedule.after_step()
    if run.ema is not None:
        run.ema.update_parameters(run.model)
    return loss, logits, labels


def _recovery_point_due(run: Run, step: int, steps_in_epoch: int) -> bool:
    if step + 1 == steps_in_epoch:
        return False  # the end of the epoch writes last.pt anyway
    every = run.config.save_every_steps
    total_steps = (run.position.epoch - 1) * run.steps_per_epoch + step + 1
    return run.stop_requested or (every is not None and total_steps % every == 0)


def _save_mid_epoch(
    run: Run, loss_sum: torch.Tensor, correct: torch.Tensor, started: float
) -> None:
    run.position.loss_sum = loss_sum.item()
    run.position.correct = int(correct.item())
    run.position.seconds = time.perf_counter() - started
    if run.dist.is_main:
        save_state(RunDir(run.run_dir).state, checkpoint(run))
    if run.stop_requested:
        _interrupted(run)


def _interrupted(run: Run) -> None:
    run.console.print(
        f"interrupted in epoch {run.position.epoch}, step {run.position.step}; state saved. "
        f"Resume with: imgcls train --resume {run.run_dir}"
    )
    raise KeyboardInterrupt


@contextlib.contextmanager
def _stop_on_ctrl_c(run: Run) -> Iterator[None]:
    """The first Ctrl-C asks the loop to save and stop after its current step; a second one
    interrupts at once."""
    # Under torchrun a graceful stop would need every rank to agree on the step; there
    # Ctrl-C interrupts as usual and --save-every-steps is the recovery point.
    if threading.current_thread() is not threading.main_thread() or run.dist.enabled:
        yield
        return

    def request_stop(signum: int, frame: Any) -> None:
        if run.stop_requested:
            raise KeyboardInterrupt
        run.stop_requested = True
        run.console.print("stopping after this step (Ctrl-C again to stop at once)")

    previous = signal.signal(signal.SIGINT, request_stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _progress(show: bool, console: Console) -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[stats]}"),
        console=console,
        transient=True,
        # Off where nobody watches (CI, a pipe): the per-epoch lines say it all there.
        disable=not (show and console.is_terminal),
    )


def _progress_stats(loss: float, accuracy: float, seen: int, started: float) -> str:
    rate = seen / max(1e-9, time.perf_counter() - started)
    return f"loss {loss:.4f}  acc {accuracy:.4f}  {rate:,.0f} img/s"


def _validate(run: Run) -> dict[str, float]:
    images, labels = run.data.subset("val")
    if len(images) == 0:
        return {"val_loss": float("nan"), "val_acc": float("nan"), "val_f1_macro": float("nan")}
    if run.frozen is not None and run.frozen.cached:  # the backbone's output is cached too
        probabilities = cached_probabilities(run, run.frozen, "val", images)
    else:
        probabilities = predict_probabilities(
            run.eval_model, run.normalizer, images, device=run.device, dtype=run.dtype,
            channels_last=run.channels_last,
        )
    predicted = probabilities.argmax(dim=1)
    losses = -probabilities.gather(1, labels.view(-1, 1)).clamp_min(1e-12).log()
    accuracy = float((predicted == labels).float().mean())
    count = len(labels)
    # Standard errors, for keeping the latest epoch within noise of the best (early_stop):
    # the loss's from its spread, accuracy's binomial; macro F1 takes accuracy's (it has no
    # closed form, and is at least as noisy).
    accuracy_se = math.sqrt(accuracy * (1 - accuracy) / count)
    return {
        "val_loss": float(losses.mean()),
        "val_acc": accuracy,
        "val_f1_macro": float(f1_score(labels, predicted, average="macro", zero_division=0)),
        standard_error_key("val_loss"): float(losses.std()) / math.sqrt(count) if count > 1
        else float("nan"),
        standard_error_key("val_acc"): accuracy_se,
        standard_error_key("val_f1_macro"): accuracy_se,
    }


def _log_epoch(run: Run, record: dict[str, Any]) -> None:
    append_line(RunDir(run.run_dir).history, json.dumps(record))
    if run.writer is not None:
        for key, value in record.items():
            if key != "epoch":
                run.writer.add_scalar(key, value, record["epoch"])
        run.writer.flush()
    run.console.print(
        f"epoch {record['epoch']:>3}/{run.epochs}  lr {record['lr']:.2e}  "
        f"train loss {record['train_loss']:.4f} acc {record['train_acc']:.4f}  "
        f"val loss {record['val_loss']:.4f} acc {record['val_acc']:.4f} "
        f"f1 {record['val_f1_macro']:.4f}  "
        f"{record['images_per_s']:,.0f} img/s  {record['seconds']:.1f}s"
    )
