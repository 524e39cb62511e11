"""The learning-rate range test (Leslie Smith 2015; fastai's `lr_find`).

A fresh model trains for `steps` mini-batches while the learning rate grows exponentially
from `min_lr` to `max_lr`; the loss falls, flattens, then blows up. The suggestion is the
learning rate where the smoothed loss falls fastest. The model is thrown away afterwards.
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from torch import nn

from imgcls.config import TrainConfig
from imgcls.errors import UserError
from imgcls.tools.common import csv_text, new_figure, save_figure
from imgcls.training.components import Components, build_components
from imgcls.utils.files import write_json, write_text

# Weight of the past in the loss's moving average. fastai's 0.98 averages over ~50 steps,
# half of a 100-step test, and so drags the curve (and the suggestion) toward larger rates;
# 0.9 (~10 steps) still smooths batch-to-batch noise.
SMOOTHING = 0.9
# Stop once the smoothed loss is this many times its best: past here it only diverges
# (fastai's threshold).
DIVERGENCE = 4.0
# The first steps' average rests on a few batches only; the suggestion ignores them.
SKIP_START_FRACTION = 0.1


@dataclass
class Suggestion:
    lr: float
    rule: str  # "steepest" or "minimum/10"
    steepest_lr: float | None  # steepest descent of the smoothed loss, where there is one
    minimum_lr: float  # the learning rate at the smoothed loss's minimum


@dataclass
class LrFindResult:
    lrs: list[float]
    losses: list[float]  # raw mini-batch losses
    smoothed: list[float]  # debiased exponential moving average of `losses`
    suggested_lr: float
    rule: str  # which rule gave `suggested_lr`
    minimum_lr: float
    steepest_lr: float | None
    stopped_early: bool  # the loss diverged before `steps` steps
    plot_path: Path | None


def find_lr(
    config: TrainConfig,
    *,
    min_lr: float = 1e-7,
    max_lr: float = 10.0,
    steps: int = 100,
    output: Path | None = None,
    console: Console | None = None,
) -> LrFindResult:
    """Run the range test for `config`'s data, model and optimizer (augmentation off).

    With `output`, writes lr_find.png (loss against lr, suggestion marked), lr_find.csv
    (lr, loss, smoothed per step) and lr_find.json (the suggestion) there.
    """
    _check_range(min_lr, max_lr, steps)
    config.validate()
    test_config = replace(config, lr=min_lr, augment="none")
    console = console or Console(soft_wrap=True)
    with tempfile.TemporaryDirectory(prefix="imgcls-lr-find-") as scratch:
        # prepare_data writes split.json (and skipped.txt) into its run directory.
        curve, stopped_early = _range_test(
            test_config, min_lr, max_lr, steps, Path(output or scratch), console
        )
    if len(curve.lrs) < 2:
        raise UserError(f"the loss diverged at the first step (lr {min_lr:g}); "
                        "pass a smaller --min-lr")
    suggestion = suggest_lr(curve.lrs, curve.smoothed)
    result = LrFindResult(
        lrs=curve.lrs, losses=curve.losses, smoothed=curve.smoothed, suggested_lr=suggestion.lr,
        rule=suggestion.rule, minimum_lr=suggestion.minimum_lr,
        steepest_lr=suggestion.steepest_lr, stopped_early=stopped_early, plot_path=None,
    )
    if output is not None:
        result.plot_path = _write_outputs(result, config, Path(output))
    return result


def _check_range(min_lr: float, max_lr: float, steps: int) -> None:
    if not 0 < min_lr < max_lr:
        raise UserError(f"--min-lr and --max-lr need 0 < min < max; got {min_lr:g} and "
                        f"{max_lr:g}, e.g. --min-lr 1e-7 --max-lr 10")
    if steps < 10:
        raise UserError(f"--steps must be at least 10 to draw a curve; got {steps}")


def lr_schedule(min_lr: float, max_lr: float, steps: int) -> np.ndarray:
    """`steps` learning rates from min_lr to max_lr, evenly spaced on a log scale."""
    return np.geomspace(min_lr, max_lr, steps)


def _range_test(
    config: TrainConfig, min_lr: float, max_lr: float, steps: int, run_dir: Path,
    console: Console,
) -> tuple[Curve, bool]:
    """Train with a growing lr; returns the curve and whether it stopped early because
    the loss diverged. Set up as training is (build_components): the same runtime, data,
    recipe, network and optimizer; --deterministic holds and a streamed data set streams."""
    run_dir.mkdir(parents=True, exist_ok=True)
    parts = build_components(config, run_dir, console)
    config = parts.config  # settled: --model auto resolved, the recipe applied
    runtime, model, optimizer, scaler = parts.runtime, parts.model, parts.optimizer, parts.scaler
    model.train()
    console.print(f"lr range test: {config.model} on {config.data}, {steps} steps of "
                  f"{config.batch_size} images, lr {min_lr:g} -> {max_lr:g}, "
                  f"{runtime.device.type} {runtime.precision}")
    batches = _random_batches(parts, config.batch_size, config.seed)
    curve = Curve()
    for lr, (images, labels) in zip(lr_schedule(min_lr, max_lr, steps).tolist(), batches,
                                    strict=False):
        for group in optimizer.param_groups:
            group["lr"] = lr
        batch = runtime.layout(parts.normalizer(images.to(runtime.device)))
        with runtime.autocast():
            loss = nn.functional.cross_entropy(model(batch), labels.to(runtime.device))
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        value = loss.item()
        if not math.isfinite(value):
            return curve, True
        curve.add(lr, value)
        if curve.smoothed[-1] > DIVERGENCE * min(curve.smoothed):
            return curve, True
    return curve, False


def _random_batches(
    parts: Components, batch_size: int, seed: int
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Shuffled passes over the train split, forever (until a pass yields nothing); only
    full batches (a short last batch would show up as a spike in the loss)."""
    generator = torch.Generator().manual_seed(seed)
    count = len(parts.train_indices)
    size = min(batch_size, count)
    while True:
        order = parts.train_indices[torch.randperm(count, generator=generator)]
        yielded = False
        for images, labels in parts.data.batches(order, size):
            if len(labels) == size:
                yielded = True
                yield images, labels
        if not yielded:  # every file of a streamed split turned out bad
            return


@dataclass
class Curve:
    """Learning rates, raw losses and their debiased exponential moving average, step by
    step (debiased as Adam does, so early values are not pulled toward the 0 it starts
    from)."""

    lrs: list[float] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    smoothed: list[float] = field(default_factory=list)
    beta: float = SMOOTHING
    _average: float = 0.0

    def add(self, lr: float, loss: float) -> None:
        self.lrs.append(lr)
        self.losses.append(loss)
        self._average = self.beta * self._average + (1 - self.beta) * loss
        self.smoothed.append(self._average / (1 - self.beta ** len(self.losses)))


def suggest_lr(lrs: list[float], smoothed: list[float]) -> Suggestion:
    """The learning rate where the smoothed loss falls fastest per decade of lr, searched
    before the loss's minimum (fastai's `steep`); when the curve never falls there, a
    tenth of the lr at the minimum (fastai's `minimum`).

    Steepest first: there a step makes the most progress while the lr is still well below
    the point where training turns unstable. The lr at the minimum is already on the edge
    of divergence, hence the conventional tenth of it as the fallback.
    """
    log_lrs = np.log10(np.asarray(lrs))
    values = np.asarray(smoothed)
    lowest = int(values.argmin())
    minimum_lr = float(lrs[lowest])
    skip = int(len(values) * SKIP_START_FRACTION)
    steepest_lr = None
    if lowest - skip >= 2:
        slopes = np.gradient(values, log_lrs)[skip : lowest + 1]
        steepest = int(slopes.argmin())
        if slopes[steepest] < 0:
            steepest_lr = float(lrs[skip + steepest])
    if steepest_lr is not None:
        return Suggestion(steepest_lr, "steepest", steepest_lr, minimum_lr)
    # Not below the test's own range: a curve that only rises says min_lr is already high.
    fallback = max(minimum_lr / 10, float(lrs[0]))
    return Suggestion(fallback, "minimum/10", None, minimum_lr)


def _write_outputs(result: LrFindResult, config: TrainConfig, output: Path) -> Path:
    output.mkdir(parents=True, exist_ok=True)
    columns = ("lr", "loss", "smoothed")
    rows = ({name: f"{value:.6g}" for name, value in zip(columns, values, strict=True)}
            for values in zip(result.lrs, result.losses, result.smoothed, strict=True))
    write_text(output / "lr_find.csv", csv_text(columns, rows))
    write_json(output / "lr_find.json", {
        "suggested_lr": result.suggested_lr,
        "rule": result.rule,
        "steepest_lr": result.steepest_lr,
        "minimum_lr": result.minimum_lr,
        "steps_run": len(result.lrs),
        "stopped_early": result.stopped_early,
        "smoothing": SMOOTHING,
        "config": config.to_dict(),
    })
    plot_path = output / "lr_find.png"
    _plot(result, config, plot_path)
    return plot_path


def _plot(result: LrFindResult, config: TrainConfig, path: Path) -> None:
    figure = new_figure()
    axes = figure.axes[0]
    axes.plot(result.lrs, result.losses, color="0.75", linewidth=1, label="loss (batch)")
    axes.plot(result.lrs, result.smoothed, color="C0", linewidth=2, label="loss (smoothed)")
    suggested_loss = float(np.interp(np.log10(result.suggested_lr), np.log10(result.lrs),
                                     result.smoothed))
    axes.axvline(result.suggested_lr, color="C3", linestyle="--", linewidth=1)
    axes.plot([result.suggested_lr], [suggested_loss], "o", color="C3",
              label=f"suggested lr {result.suggested_lr:.2e} ({result.rule})")
    axes.set_xscale("log")
    # Divergence can reach huge losses; keep the interesting part (below ~2x the start).
    top = max(result.smoothed[0], min(result.smoothed)) * 2
    axes.set_ylim(bottom=0, top=min(max(result.losses), top))
    axes.set_xlabel("learning rate (log scale)")
    axes.set_ylabel("training loss")
    axes.set_title(f"lr range test: {config.model} on {config.data}, {config.optimizer}, "
                   f"batch {config.batch_size}")
    axes.grid(True, which="both", alpha=0.3)
    axes.legend()
    save_figure(figure, path)
