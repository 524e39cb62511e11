"""A Run: everything the training loop works on, assembled once from a TrainConfig."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from imgcls.config import TrainConfig
from imgcls.data.augment import build_augment, preset
from imgcls.data.normalize import Normalizer
from imgcls.errors import UserError
from imgcls.modelfile.artifact import read_weights
from imgcls.modelfile.card import Architecture
from imgcls.modelfile.rundir import RunDir
from imgcls.runtime import RuntimeChoice, seed_everything
from imgcls.training.budget import Budget
from imgcls.training.components import build_components
from imgcls.training.distributed import Distributed, shard
from imgcls.training.early_stop import BestTracker
from imgcls.training.feature_cache import FrozenHead, cached_batches, plan
from imgcls.training.prepared_data import PreparedData, class_counts, warn_if_imbalanced
from imgcls.training.schedule import Schedule
from imgcls.training.state import restore_rng_state


@dataclass
class Position:
    """Where the loop is; a resumed run continues exactly here."""

    epoch: int = 1  # the epoch in progress, from 1
    step: int = 0  # optimizer steps already taken in it
    loss_sum: float = 0.0  # the epoch's running totals so far
    correct: int = 0
    seen: int = 0
    seconds: float = 0.0


@dataclass
class Run:
    # Settled and frozen (training/settle.py): read only. What changes while training (a
    # --time-budget's plan) lives in the fields below.
    config: TrainConfig
    run_dir: Path
    console: Console
    runtime: RuntimeChoice  # device, autocast dtype, memory format, threads
    data: PreparedData
    architecture: Architecture
    model: nn.Module  # the network being trained (its weights are what last.pt holds)
    forward: nn.Module  # what the step calls: the model, or torch.compile of it
    ema: AveragedModel | None
    normalizer: Normalizer
    augment: nn.Module
    optimizer: torch.optim.Optimizer
    schedule: Schedule
    scaler: torch.amp.GradScaler
    train_images: torch.Tensor | None  # uint8 on the device; None when the data set streams
    train_labels: torch.Tensor  # on the device
    train_indices: torch.Tensor  # item indices of the train split (what streaming decodes)
    input_shape: tuple[int, int, int]  # (C, H, W)
    steps_per_epoch: int
    loss_weights: torch.Tensor | None = None  # --balance weights: per-class loss weights
    sample_weights: torch.Tensor | None = None  # --balance sampler: per-item draw weights
    position: Position = field(default_factory=Position)
    best: BestTracker = field(default_factory=BestTracker)
    best_weights: dict[str, torch.Tensor] = field(default_factory=dict)  # on the CPU
    writer: Any = None  # TensorBoard SummaryWriter when --tensorboard
    stop_requested: bool = False  # set by Ctrl-C: save and stop after the current step
    on_epoch: Callable[[dict[str, Any]], None] | None = None  # sees each epoch's record
    dist: Distributed = field(default_factory=Distributed)  # this process's rank under torchrun
    frozen: FrozenHead | None = None  # --freeze-backbone: the head, its cached features
    budget: Budget | None = None  # --time-budget: the deadline and the plan that keeps it

    @property
    def device(self) -> torch.device:
        return self.runtime.device

    @property
    def dtype(self) -> torch.dtype | None:
        """The autocast dtype; None: fp32."""
        return self.runtime.dtype

    @property
    def channels_last(self) -> bool:
        return self.runtime.channels_last

    @property
    def total_steps(self) -> int:
        """Optimizer steps in the whole run (a --time-budget re-plans them)."""
        return self.schedule.total_steps

    @property
    def epochs(self) -> int:
        """Epochs the run trains, the last one possibly partial."""
        return -(-self.total_steps // self.steps_per_epoch)

    @property
    def recorded_config(self) -> TrainConfig:
        """What config.yaml and the model card record: the settled config, with the epochs a
        --time-budget planned (re-planned while training: the budget's, not the config's)."""
        if self.budget is None:
            return self.config
        return replace(self.config, epochs=round(self.budget.epochs, 4))

    @property
    def eval_model(self) -> nn.Module:
        """The weights that are evaluated and saved: the EMA average when it is on."""
        return self.ema.module if self.ema is not None else self.model


def assemble(
    config: TrainConfig,
    run_dir: Path,
    console: Console,
    resume_state: dict[str, Any] | None,
    info: Distributed | None = None,
    started: float | None = None,
) -> Run:
    """The run `config` describes, with its settled config as Run.config; `started`
    (time.time()) is when a --time-budget began."""
    info = info or Distributed()
    parts = build_components(config, run_dir, console, reuse_split=resume_state is not None,
                             info=info, started=started)
    config = parts.config
    data, model, device = parts.data, parts.model, parts.runtime.device
    # A streamed data set is decoded batch by batch in the loop, never held whole.
    train_images = (None if data.streaming
                    else data.image_set.images[parts.train_indices].to(device))
    counts = class_counts(parts.train_labels, len(data.image_set.class_names))
    warn_if_imbalanced(counts, config, console)
    steps_per_epoch = len(shard(
        batch_order(len(parts.train_labels), config.batch_size, None, device), info))
    run = Run(
        config=config,
        run_dir=run_dir,
        console=console,
        runtime=parts.runtime,
        data=data,
        architecture=parts.architecture,
        model=model,
        forward=_forward(model, config, info, device),
        ema=_ema(model, config),
        normalizer=parts.normalizer,
        augment=build_augment(
            preset(config.augment, hflip_ok=data.image_set.hflip_ok,
                   **config.augment_overrides()),
            image_size=parts.architecture.kwargs["image_size"],
            channels=parts.architecture.kwargs["in_channels"],
        ),
        optimizer=parts.optimizer,
        schedule=Schedule(parts.optimizer, config, steps_per_epoch),
        scaler=parts.scaler,
        train_images=train_images,
        train_labels=parts.train_labels.to(device),
        train_indices=parts.train_indices,
        input_shape=(data.image_set.channels, data.image_set.image_size,
                     data.image_set.image_size),
        steps_per_epoch=steps_per_epoch,
        best=BestTracker(config.metric, config.patience),
        writer=_tensorboard(run_dir) if config.tensorboard and info.is_main else None,
        dist=info,
        **_balance(config.balance, counts, parts.train_labels, device),
    )
    run.frozen = plan(run)
    if resume_state is not None:
        restore(run, resume_state)
    return run


def _forward(
    model: nn.Module, config: TrainConfig, info: Distributed, device: torch.device
) -> nn.Module:
    """What a step calls: the model, wrapped for data parallelism and/or compiled."""
    forward = model
    if info.enabled:
        if config.sync_bn:
            forward = nn.SyncBatchNorm.convert_sync_batchnorm(forward)
        forward = torch.nn.parallel.DistributedDataParallel(
            forward, device_ids=[device.index] if device.type == "cuda" else None)
    return torch.compile(forward) if config.compile else forward


def _ema(model: nn.Module, config: TrainConfig) -> AveragedModel | None:
    if not config.ema:
        return None
    # use_buffers: BatchNorm statistics are averaged too, so the EMA model evaluates sanely.
    return AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(config.ema_decay),
                         use_buffers=True)


def _tensorboard(run_dir: Path) -> Any:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise UserError("--tensorboard needs the tensorboard package: "
                        "pip install 'imgcls[tensorboard]'") from None
    return SummaryWriter(log_dir=str(RunDir(run_dir).tensorboard))


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


def batch_order(
    count: int,
    batch_size: int,
    generator: torch.Generator | None,
    device: torch.device,
    sample_weights: torch.Tensor | None = None,
) -> list[torch.Tensor]:
    """An epoch's batches of item indices: shuffled by `generator`, or in order without one."""
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


def epoch_batches(
    run: Run, batches: list[torch.Tensor], start: int
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """(uint8 images, labels) on the device for the epoch's batches from `start` on; with a
    frozen backbone whose features are cached, (features, labels)."""
    if run.frozen is not None and run.frozen.cached:
        yield from cached_batches(run, run.frozen, batches[start:])
        return
    if run.train_images is not None:
        for indices in batches[start:]:
            yield run.train_images[indices], run.train_labels[indices]
        return
    if start >= len(batches):
        return
    positions = torch.cat(batches[start:]).cpu()
    streamed = run.data.image_set.batches(
        run.train_indices[positions], run.config.batch_size, run.data.workers,
        pin_memory=run.device.type == "cuda")
    for images, labels in streamed:
        if len(labels) > 1:  # a bad file can leave a batch of one, which BatchNorm refuses
            yield (images.to(run.device, non_blocking=True),
                   labels.to(run.device, non_blocking=True))


def checkpoint(run: Run) -> dict[str, Any]:
    """Everything `restore` needs to continue exactly (last.pt)."""
    from imgcls.training.state import FINGERPRINT_KEY, config_fingerprint, rng_state

    state = {
        FINGERPRINT_KEY: config_fingerprint(run.config),  # resume checks config.yaml by it
        "position": asdict(run.position),
        "model": run.model.state_dict(),
        "optimizer": run.optimizer.state_dict(),
        "schedule": run.schedule.state_dict(),
        "scaler": run.scaler.state_dict(),
        "best": run.best.state_dict(),
        "rng": rng_state(),
    }
    if run.ema is not None:
        state["ema"] = run.ema.state_dict()
    return state


def restore(run: Run, state: dict[str, Any]) -> None:
    run.model.load_state_dict(state["model"])
    run.optimizer.load_state_dict(state["optimizer"])
    run.schedule.load_state_dict(state["schedule"])
    run.scaler.load_state_dict(state["scaler"])
    run.best.load_state_dict(state["best"])
    run.best.patience = run.config.patience  # the resumed config decides
    if run.ema is not None and "ema" in state:
        run.ema.load_state_dict(state["ema"])
    restore_rng_state(state["rng"])
    if run.dist.rank > 0:  # last.pt holds rank 0's generator; the others draw their own
        seed_everything(run.config.seed + run.dist.rank + 1000 * state["position"]["epoch"])
    run.position = Position(**state["position"])
    best_file = RunDir(run.run_dir).model
    if run.best.kept_epoch and best_file.is_file():
        run.best_weights = read_weights(best_file)
