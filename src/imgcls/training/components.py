"""Everything a run needs before its first step, set up once for training and the lr range
test alike (build_components): the runtime choices, the data (prepared_data.py) and the
config settled from it (settle.py), the network (optionally started from pretrained weights)
and its optimizer. Data preparation and settling live in their own modules; this one builds."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from torch import nn

from imgcls.config import TrainConfig
from imgcls.data.normalize import Normalizer
from imgcls.data.sources import ImageSet
from imgcls.data.stream import StreamingImageSet
from imgcls.modelfile.artifact import read_card, read_weights
from imgcls.modelfile.card import Architecture
from imgcls.models import (
    create_model,
    freeze_backbone,
    get_spec,
    load_compatible,
    load_pretrained,
)
from imgcls.runtime import (
    RuntimeChoice,
    pick_device,
    resolve,
    seed_everything,
    set_threads,
)
from imgcls.training.auto_model import AUTO
from imgcls.training.distributed import Distributed, check_sync_bn, device_for
from imgcls.training.head_first import (
    EXTRACT_BATCH,
    HEAD_FIT_IMAGES,
    discriminative_scales,
    fine_tunes_pretrained,
    fit_head,
    imagenet_stats,
)
from imgcls.training.optim import build_optimizer
from imgcls.training.prepared_data import PreparedData, prepare_data
from imgcls.training.settle import resolve_init_from, settle


@dataclass
class Components:
    """What the training loop and the lr range test both work on, set up the same way."""

    config: TrainConfig  # settled (training/settle.py): what the rest was built from
    runtime: RuntimeChoice
    data: PreparedData
    architecture: Architecture
    model: nn.Module  # on the runtime's device, in its memory format
    normalizer: Normalizer  # the train split's statistics, on the device
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    train_indices: torch.Tensor  # item indices of the train split (what streaming decodes)
    train_labels: torch.Tensor  # their labels, on the CPU


def build_components(
    config: TrainConfig, run_dir: Path, console: Console, *, reuse_split: bool = False,
    info: Distributed | None = None, started: float | None = None,
) -> Components:
    """Threads, determinism, seeds, data, the settled config (--model auto, the default
    recipe, ...: settle), the runtime choices, the network and its optimizer; the settled
    config is Components.config. `started`: when a --time-budget began (what is left of it
    picks the auto model)."""
    info = info or Distributed()
    set_threads(config.threads)
    set_determinism(config.deterministic)
    # Ranks draw different augmentations; DDP copies rank 0's initial weights to all.
    seed_everything(config.seed + info.rank)
    # Picked before the network is known: --model auto times its candidates on it.
    device = device_for(info, pick_device(config.device))
    check_sync_bn(config.sync_bn and info.enabled, device)
    config = resolve_init_from(config)  # the file may decide the images' channels and size
    if config.model != AUTO:
        get_spec(config.model)  # an unknown name fails before the data is loaded
    data = prepare_data(config, run_dir, console, reuse_split=reuse_split,
                        write_files=info.is_main)
    config = settle(config, data, device=device, console=console, started=started)
    use_pretrained_normalization(config, data)
    runtime = resolve(config, get_spec(config.model), device=device)
    architecture = architecture_of(config, data.image_set)
    model = runtime.place(build_model(config, architecture, data.image_set.class_names, console))
    normalizer = Normalizer(data.stats).to(device)
    fine_tuning = fine_tunes_pretrained(config)
    if fine_tuning and not reuse_split:  # a resumed run's head is in its state already
        fit_head(model, get_spec(config.model).head, head_fit_batches(data, config.seed),
                 normalizer, runtime, console, len(data.image_set.class_names))
    scales = (discriminative_scales(model, get_spec(config.model).head, config.lr_mult)
              if fine_tuning else None)
    train_indices = torch.as_tensor(data.split.train, dtype=torch.long)
    return Components(
        config=config, runtime=runtime, data=data, architecture=architecture, model=model,
        normalizer=normalizer,
        optimizer=build_optimizer(model, config, scales),
        # Loss scaling is only needed for fp16, whose range underflows small gradients.
        scaler=torch.amp.GradScaler(device.type, enabled=runtime.dtype == torch.float16),
        train_indices=train_indices, train_labels=data.image_set.labels[train_indices],
    )


def use_pretrained_normalization(config: TrainConfig, data: PreparedData) -> None:
    """Pretrained weights see images normalized as they were trained: ImageNet's mean and std
    instead of the train split's own, unless --normalize was given."""
    if config.pretrained_weights is None or "normalize" in config.given:
        return
    stats = imagenet_stats(config.model, data.image_set.channels)
    if stats is not None:
        data.stats = stats


def head_fit_batches(
    data: PreparedData, seed: int
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """A seeded sample of the train split, at most HEAD_FIT_IMAGES, in batches."""
    train = torch.as_tensor(data.split.train, dtype=torch.long)
    order = torch.randperm(len(train), generator=torch.Generator().manual_seed(seed))
    return data.batches(train[order[:HEAD_FIT_IMAGES]], EXTRACT_BATCH)


def set_determinism(deterministic: bool) -> None:
    if deterministic and torch.cuda.is_available():
        # cuBLAS needs a fixed workspace to be deterministic (PyTorch's reproducibility notes).
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(deterministic)
    torch.backends.cudnn.benchmark = not deterministic


def architecture_of(
    config: TrainConfig, image_set: ImageSet | StreamingImageSet
) -> Architecture:
    """The registry name and keyword arguments that rebuild this network (model file)."""
    channels, height = image_set.channels, image_set.image_size
    kwargs = {
        "num_classes": len(image_set.class_names),
        "in_channels": int(channels),
        "image_size": int(height),
        "activation": config.activation,
        "dropout": config.dropout,
        "width": config.width,
        "tta": None if config.tta == "none" else config.tta,
    }
    return Architecture(config.model, {k: v for k, v in kwargs.items() if v is not None})


def build_model(
    config: TrainConfig, architecture: Architecture, class_names: list[str], console: Console
) -> nn.Module:
    model = create_model(architecture.name, **architecture.kwargs)
    spec = get_spec(architecture.name)
    in_channels = architecture.kwargs["in_channels"]
    if config.pretrained_weights is not None:
        report = load_pretrained(model, spec, config.pretrained_weights, in_channels=in_channels)
        console.print(f"pretrained: {_describe(report)} from {config.pretrained_weights}")
    if config.init_from:
        same_classes = read_card(config.init_from).class_names == class_names
        # The head carries over only when it predicts the same classes in the same order.
        head = "" if same_classes else spec.head
        report = load_compatible(
            model, read_weights(config.init_from), head=head, in_channels=in_channels,
            flag="--init-from", source=config.init_from,
        )
        console.print(f"init from {config.init_from}: {_describe(report)}")
    if config.freeze_backbone:
        trainable = freeze_backbone(model, spec.head)
        console.print(f"backbone frozen: {trainable:,} trainable parameters left (the head)")
    return model


def _describe(report: Any) -> str:
    return (
        f"{len(report.loaded)} tensors loaded, {len(report.adapted)} adapted, "
        f"{len(report.skipped)} skipped"
    )

