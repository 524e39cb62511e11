"""A Run: everything the training loop works on, assembled once from a TrainConfig."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from imgcls.artifact import read_weights
from imgcls.config import TrainConfig
from imgcls.data.augment import build_augment, preset
from imgcls.data.normalize import Normalizer
from imgcls.errors import UserError
from imgcls.models import get_spec, uses_channels_last
from imgcls.models.layers import is_small_input
from imgcls.recipes import default_recipe, load_recipe
from imgcls.training.auto_model import AUTO, resolve_auto_model
from imgcls.training.budget import Budget
from imgcls.training.distributed import Distributed, check_sync_bn, device_for, shard
from imgcls.training.early_stop import BestTracker
from imgcls.training.feature_cache import FrozenHead, cached_batches, plan
from imgcls.training.optim import build_optimizer
from imgcls.training.runtime import pick_device, pick_precision, seed_everything, set_threads
from imgcls.training.schedule import Schedule
from imgcls.training.setup import (
    PreparedData,
    architecture_of,
    build_model,
    class_counts,
    prepare_data,
    warn_if_imbalanced,
)
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
    config: TrainConfig
    run_dir: Path
    console: Console
    device: torch.device
    dtype: torch.dtype | None  # autocast dtype; None: fp32
    data: PreparedData
    architecture: dict[str, Any]
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
    channels_last: bool
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
    def total_steps(self) -> int:
        """Optimizer steps in the whole run (a --time-budget re-plans them)."""
        return self.schedule.total_steps

    @property
    def epochs(self) -> int:
        """Epochs the run trains, the last one possibly partial."""
        return -(-self.total_steps // self.steps_per_epoch)

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
) -> Run:
    info = info or Distributed()
    set_threads(config.threads)
    _set_determinism(config.deterministic)
    # Ranks draw different augmentations; DDP copies rank 0's initial weights to all.
    seed_everything(config.seed + info.rank)
    device = device_for(info, pick_device(config.device))
    check_sync_bn(config.sync_bn and info.enabled, device)
    if config.model != AUTO:
        get_spec(config.model)  # an unknown name fails before the data is loaded
    data = prepare_data(config, run_dir, console, reuse_split=resume_state is not None,
                        write_files=info.is_main)
    if config.model == AUTO:
        resolve_auto_model(config, data, device, console)
    if config.recipe is None:
        _apply_default_recipe(config, data.image_set.image_size, console)
    dtype = pick_precision(config.precision, device,
                           cpu_bf16_pays=get_spec(config.model).cpu_bf16)
    architecture = architecture_of(config, data.image_set)
    model = build_model(config, architecture, data.image_set.class_names, console).to(device)
    channels_last = uses_channels_last(config.model, config.channels_last)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    train_indices = torch.as_tensor(data.split.train, dtype=torch.long)
    train_labels = data.image_set.labels[train_indices]
    # A streamed data set is decoded batch by batch in the loop, never held whole.
    train_images = None if data.streaming else data.image_set.images[train_indices].to(device)
    counts = class_counts(train_labels, len(data.image_set.class_names))
    warn_if_imbalanced(counts, config, console)
    optimizer = build_optimizer(model, config)
    steps_per_epoch = len(shard(batch_order(len(train_labels), config.batch_size, None, device),
                                info))
    run = Run(
        config=config,
        run_dir=run_dir,
        console=console,
        device=device,
        dtype=dtype,
        data=data,
        architecture=architecture,
        model=model,
        forward=_forward(model, config, info, device),
        ema=_ema(model, config),
        normalizer=Normalizer(data.stats).to(device),
        augment=build_augment(
            preset(config.augment, hflip_ok=data.image_set.hflip_ok,
                   **config.augment_overrides()),
            image_size=architecture["kwargs"]["image_size"],
            channels=architecture["kwargs"]["in_channels"],
        ),
        optimizer=optimizer,
        schedule=Schedule(optimizer, config, steps_per_epoch),
        # Loss scaling is only needed for fp16, whose range underflows small gradients.
        scaler=torch.amp.GradScaler(device.type, enabled=dtype == torch.float16),
        train_images=train_images,
        train_labels=train_labels.to(device),
        train_indices=train_indices,
        input_shape=(data.image_set.channels, data.image_set.image_size,
                     data.image_set.image_size),
        channels_last=channels_last,
        steps_per_epoch=steps_per_epoch,
        best=BestTracker(config.metric, config.patience),
        writer=_tensorboard(run_dir) if config.tensorboard and info.is_main else None,
        dist=info,
        **_balance(config.balance, counts, train_labels, device),
    )
    run.frozen = plan(run)
    if resume_state is not None:
        restore(run, resume_state)
    return run


def _apply_default_recipe(config: TrainConfig, image_size: int, console: Console) -> None:
    """On small images, the model's measured recipe supplies the settings left open."""
    name = default_recipe(config.model) if is_small_input(image_size) else None
    config.recipe = name or "none"  # config.yaml records it; a repeat applies nothing new
    if name is None:
        return
    taken = config.apply_recipe(load_recipe(name))
    if taken:
        console.print(f"recipe {name}: {', '.join(f'{k}={getattr(config, k)}' for k in taken)}")


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


def _set_determinism(deterministic: bool) -> None:
    if deterministic and torch.cuda.is_available():
        # cuBLAS needs a fixed workspace to be deterministic (PyTorch's reproducibility notes).
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(deterministic)
    torch.backends.cudnn.benchmark = not deterministic


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
    return SummaryWriter(log_dir=str(run_dir / "tensorboard"))


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
    best_file = run.run_dir / "model.safetensors"
    if run.best.best_epoch and best_file.is_file():
        run.best_weights = read_weights(best_file)
