"""The training loop, top to bottom.

train() -> prepare data and model -> for each epoch: train on augmented batches, evaluate
on val, keep the best model, write resume state -> evaluate the best model on test.
"""

from __future__ import annotations

import copy
import csv
import io
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from torch import nn

from imgcls.artifact import read_weights, save_model
from imgcls.config import TrainConfig
from imgcls.data.augment import augment_batch, build_augment
from imgcls.data.normalize import Normalizer
from imgcls.errors import UserError
from imgcls.evaluation.metrics import compute_metrics
from imgcls.inference import predict_probabilities
from imgcls.io import append_line, write_json, write_text
from imgcls.models import get_spec
from imgcls.training.optim import build_optimizer, build_schedule
from imgcls.training.rundir import prepare_run_dir
from imgcls.training.runtime import (
    autocast,
    pick_device,
    pick_precision,
    precision_name,
    seed_everything,
    set_threads,
)
from imgcls.training.setup import (
    PreparedData,
    architecture_of,
    build_model,
    class_counts,
    prepare_data,
    warn_if_imbalanced,
)
from imgcls.training.state import load_state, restore_rng_state, rng_state, save_state

# The metrics copied into the model file's header (the full set is in metrics.json).
HEADER_METRICS = (
    "accuracy", "top5_accuracy", "precision_macro", "recall_macro", "f1_macro",
    "precision_weighted", "recall_weighted", "f1_weighted", "num_samples",
)


@dataclass
class Best:
    """The best epoch so far by validation accuracy, and its weights (on the CPU)."""

    epoch: int = 0
    val_acc: float = -1.0
    weights: dict[str, torch.Tensor] = field(default_factory=dict)


@dataclass
class Run:
    """What the loop works on; built once by `_start`."""

    config: TrainConfig
    run_dir: Path
    console: Console
    device: torch.device
    dtype: torch.dtype | None
    data: PreparedData
    architecture: dict[str, Any]
    model: nn.Module
    normalizer: Normalizer
    augment: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler
    train_images: torch.Tensor
    train_labels: torch.Tensor
    channels_last: bool
    loss_weights: torch.Tensor | None = None  # --balance weights: per-class loss weights
    sample_weights: torch.Tensor | None = None  # --balance sampler: per-item draw weights
    start_epoch: int = 1
    best: Best = field(default_factory=Best)


def train(
    config: TrainConfig,
    *,
    overwrite: bool = False,
    show_progress: bool = True,
    console: Console | None = None,
) -> Path:
    """Train a new run; returns its run directory."""
    config.validate()
    run_dir = prepare_run_dir(config, overwrite=overwrite)
    config.output = str(run_dir)
    write_text(run_dir / "config.yaml", config.to_yaml())
    (run_dir / "history.jsonl").unlink(missing_ok=True)  # our own file from an overwritten run
    run = _start(config, run_dir, console or Console(soft_wrap=True), resume_state=None)
    return _loop(run, show_progress)


def resume(
    run_dir: str | Path,
    *,
    epochs: int | None = None,
    show_progress: bool = True,
    console: Console | None = None,
) -> Path:
    """Continue a run from its `last.pt`; `epochs` may raise the total to extend it."""
    run_dir = Path(run_dir)
    state_file = run_dir / "last.pt"
    if not state_file.is_file():
        raise UserError(f"{run_dir} has no last.pt to resume from; pass a run directory")
    config = TrainConfig.from_yaml(run_dir / "config.yaml")
    if epochs is not None:
        config.epochs = epochs
    config.validate()
    write_text(run_dir / "config.yaml", config.to_yaml())
    state = load_state(state_file)
    run = _start(config, run_dir, console or Console(soft_wrap=True), resume_state=state)
    return _loop(run, show_progress)


def _start(
    config: TrainConfig, run_dir: Path, console: Console, resume_state: dict[str, Any] | None
) -> Run:
    set_threads(config.threads)
    seed_everything(config.seed)
    device = pick_device(config.device)
    dtype = pick_precision(config.precision, device)
    data = prepare_data(config, run_dir, console, reuse_split=resume_state is not None)
    architecture = architecture_of(config, data.image_set)
    model = build_model(config, architecture, data.image_set.class_names, console).to(device)
    channels_last = config.channels_last and get_spec(config.model).channels_last
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    train_images, train_labels = data.subset("train")
    counts = class_counts(train_labels, len(data.image_set.class_names))
    warn_if_imbalanced(counts, config, console)
    optimizer = build_optimizer(model, config)
    steps_per_epoch = len(_batches(len(train_images), config.batch_size, None, device))
    run = Run(
        config=config,
        run_dir=run_dir,
        console=console,
        device=device,
        dtype=dtype,
        data=data,
        architecture=architecture,
        model=model,
        normalizer=Normalizer(data.stats).to(device),
        augment=build_augment(
            config.augment, image_size=architecture["kwargs"]["image_size"],
            hflip_ok=data.image_set.hflip_ok,
        ),
        optimizer=optimizer,
        scheduler=build_schedule(optimizer, config, steps_per_epoch),
        # Loss scaling is only needed for fp16, whose range underflows small gradients.
        scaler=torch.amp.GradScaler(device.type, enabled=dtype == torch.float16),
        train_images=train_images.to(device),
        train_labels=train_labels.to(device),
        channels_last=channels_last,
        **_balance(config.balance, counts, train_labels, device),
    )
    if resume_state is not None:
        _restore(run, resume_state)
    _announce(run)
    return run


def _balance(
    mode: str, counts: torch.Tensor, labels: torch.Tensor, device: torch.device
) -> dict[str, torch.Tensor]:
    """Inverse-frequency weights: on the loss ("weights") or on drawing items ("sampler")."""
    inverse = counts.sum() / (len(counts) * counts.clamp_min(1).double())
    if mode == "weights":
        return {"loss_weights": inverse.float().to(device)}
    if mode == "sampler":
        return {"sample_weights": inverse[labels]}
    return {}


def _announce(run: Run) -> None:
    split = run.data.split
    run.console.print(
        f"[bold]{run.config.model}[/] on {run.config.data}: "
        f"{len(split.train)} train / {len(split.val)} val / {len(split.test)} test images, "
        f"{len(run.data.image_set.class_names)} classes, "
        f"input {tuple(run.train_images.shape[1:])}, {run.device.type} "
        f"{precision_name(run.dtype)} -> {run.run_dir}"
    )


def _loop(run: Run, show_progress: bool) -> Path:
    for epoch in range(run.start_epoch, run.config.epochs + 1):
        record = _train_epoch(run, epoch, show_progress)
        record.update(_validate(run))
        _log_epoch(run, record)
        if _improved(run, record):
            run.best = Best(epoch, record["val_acc"], _cpu_copy(run.model))
            _save_model(run, metrics={"val_acc": record["val_acc"]})
        save_state(run.run_dir / "last.pt", _state(run, epoch))
    _finish(run)
    return run.run_dir


def _batches(
    count: int,
    batch_size: int,
    generator: torch.Generator | None,
    device: torch.device,
    sample_weights: torch.Tensor | None = None,
) -> list[torch.Tensor]:
    if generator is None:
        order = torch.arange(count)
    elif sample_weights is not None:  # an epoch of draws with replacement, rare classes oftener
        order = torch.multinomial(sample_weights, count, replacement=True, generator=generator)
    else:
        order = torch.randperm(count, generator=generator)
    batches = list(order.to(device).split(batch_size))
    # A batch of one breaks BatchNorm in training mode; drop such a remainder.
    if len(batches) > 1 and len(batches[-1]) == 1:
        batches.pop()
    return batches


def _epoch_generator(config: TrainConfig, epoch: int) -> torch.Generator:
    # Each epoch's order depends only on (seed, epoch), so a resumed run sees the same order.
    return torch.Generator().manual_seed(config.seed * 100_003 + epoch)


def _train_epoch(run: Run, epoch: int, show_progress: bool) -> dict[str, Any]:
    model, config = run.model, run.config
    model.train()
    batches = _batches(
        len(run.train_images), config.batch_size, _epoch_generator(config, epoch), run.device,
        run.sample_weights,
    )
    loss_sum = torch.zeros((), device=run.device)
    correct = torch.zeros((), device=run.device, dtype=torch.long)
    seen = 0
    started = time.perf_counter()
    with _progress(show_progress, run.console) as progress:
        task = progress.add_task(f"epoch {epoch}/{config.epochs}", total=len(batches), stats="")
        for step, indices in enumerate(batches, start=1):
            loss, logits, labels = _train_step(run, indices)
            loss_sum += loss.detach() * len(indices)
            correct += (logits.argmax(dim=1) == labels).sum()
            seen += len(indices)
            # Reading the loss synchronizes the device; do it a few times a second, not per step.
            if step % 20 == 0 or step == len(batches):
                progress.update(task, completed=step, stats=_progress_stats(
                    loss_sum.item() / seen, correct.item() / seen, seen, started
                ))
    seconds = time.perf_counter() - started
    return {
        "epoch": epoch,
        "lr": run.optimizer.param_groups[0]["lr"],
        "train_loss": loss_sum.item() / max(1, seen),
        "train_acc": correct.item() / max(1, seen),
        "images_per_s": seen / seconds,
        "seconds": seconds,
    }


def _train_step(run: Run, indices: torch.Tensor) -> tuple[torch.Tensor, ...]:
    # Augmenting the uint8 batch moves a quarter of the bytes that a float batch would.
    images = augment_batch(run.augment, run.train_images[indices])
    if run.channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    images = run.normalizer(images)
    labels = run.train_labels[indices]
    with autocast(run.device, run.dtype):
        logits = run.model(images)
        loss = nn.functional.cross_entropy(logits, labels, weight=run.loss_weights)
    run.optimizer.zero_grad(set_to_none=True)
    run.scaler.scale(loss).backward()
    run.scaler.step(run.optimizer)
    run.scaler.update()
    run.scheduler.step()
    return loss, logits, labels


def _progress(show: bool, console: Console) -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
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
        return {"val_loss": float("nan"), "val_acc": float("nan")}
    probabilities = predict_probabilities(
        run.model, run.normalizer, images, device=run.device, dtype=run.dtype
    )
    true_probability = probabilities.gather(1, labels.view(-1, 1)).clamp_min(1e-12)
    return {
        "val_loss": float(-true_probability.log().mean()),
        "val_acc": float((probabilities.argmax(dim=1) == labels).float().mean()),
    }


def _improved(run: Run, record: dict[str, Any]) -> bool:
    val_acc = record["val_acc"]
    if val_acc != val_acc:  # NaN: no val split, so the latest epoch is the best we know
        return True
    return val_acc > run.best.val_acc


def _log_epoch(run: Run, record: dict[str, Any]) -> None:
    append_line(run.run_dir / "history.jsonl", json.dumps(record))
    run.console.print(
        f"epoch {record['epoch']:>3}/{run.config.epochs}  lr {record['lr']:.2e}  "
        f"train loss {record['train_loss']:.4f} acc {record['train_acc']:.4f}  "
        f"val loss {record['val_loss']:.4f} acc {record['val_acc']:.4f}  "
        f"{record['images_per_s']:,.0f} img/s  {record['seconds']:.1f}s"
    )


def _cpu_copy(model: nn.Module) -> dict[str, torch.Tensor]:
    return {name: tensor.detach().to("cpu", copy=True) for name, tensor in
            model.state_dict().items()}


def _metadata(run: Run, metrics: dict[str, Any]) -> dict[str, Any]:
    _, channels, height, width = run.train_images.shape
    return {
        "architecture": run.architecture,
        "class_names": run.data.image_set.class_names,
        "input": {"channels": channels, "height": height, "width": width},
        "normalization": run.data.stats,
        "metrics": metrics,
        "training": {"config": run.config.to_dict(), "best_epoch": run.best.epoch},
        "data": {"source": run.data.image_set.source, "split_hash": run.data.split.content_hash},
    }


def _save_model(run: Run, metrics: dict[str, Any]) -> None:
    # Written from the best weights on the CPU, whatever the model holds right now.
    snapshot = copy.deepcopy(run.model).to("cpu")
    snapshot.load_state_dict(run.best.weights)
    save_model(run.run_dir / "model.safetensors", snapshot, _metadata(run, metrics))


def _state(run: Run, epoch: int) -> dict[str, Any]:
    return {
        "epoch": epoch,
        "model": run.model.state_dict(),
        "optimizer": run.optimizer.state_dict(),
        "scheduler": run.scheduler.state_dict(),
        "scaler": run.scaler.state_dict(),
        "best_epoch": run.best.epoch,
        "best_val_acc": run.best.val_acc,
        "rng": rng_state(),
    }


def _restore(run: Run, state: dict[str, Any]) -> None:
    run.model.load_state_dict(state["model"])
    run.optimizer.load_state_dict(state["optimizer"])
    run.scheduler.load_state_dict(state["scheduler"])
    run.scaler.load_state_dict(state["scaler"])
    restore_rng_state(state["rng"])
    run.start_epoch = state["epoch"] + 1
    run.best = Best(state["best_epoch"], state["best_val_acc"],
                    read_weights(run.run_dir / "model.safetensors"))


def _finish(run: Run) -> None:
    """Evaluate the best weights on test (fp32, the Predictor's path) and write the results."""
    run.model.load_state_dict(run.best.weights)
    part = "test" if len(run.data.split.test) else "val"
    images, labels = run.data.subset(part)
    if len(images) == 0:
        run.console.print("[yellow]warning:[/] no test or val images; metrics.json not written")
        return
    probabilities = predict_probabilities(run.model, run.normalizer, images, device=run.device)
    metrics = compute_metrics(labels.numpy(), probabilities.numpy(), run.data.image_set.class_names)
    metrics["split"] = part
    write_json(run.run_dir / "metrics.json", metrics)
    _write_predictions(run, part, labels, probabilities)
    header = {key: metrics[key] for key in HEADER_METRICS if key in metrics}
    _save_model(run, metrics={"split": part, "val_acc": run.best.val_acc, **header})
    run.console.print(
        f"best epoch {run.best.epoch}: {part} accuracy {metrics['accuracy']:.4f}, "
        f"macro F1 {metrics['f1_macro']:.4f} -> {run.run_dir / 'model.safetensors'}"
    )


def _write_predictions(
    run: Run, part: str, labels: torch.Tensor, probabilities: torch.Tensor
) -> None:
    names = run.data.image_set.class_names
    item_ids = run.data.image_set.item_ids
    scores, predicted = probabilities.max(dim=1)
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["item", "true", "predicted", "score"])
    for index, true, guess, score in zip(
        getattr(run.data.split, part), labels.tolist(), predicted.tolist(), scores.tolist(),
        strict=True,
    ):
        writer.writerow([item_ids[index], names[true], names[guess], f"{score:.6f}"])
    write_text(run.run_dir / f"{part}_predictions.csv", buffer.getvalue())
