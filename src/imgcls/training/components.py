"""Everything a run needs before its first step, set up once for training and the lr range
test alike (build_components): the runtime choices, the data with its split and statistics,
the network (optionally started from pretrained weights) and its optimizer."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from torch import nn

from imgcls.config import TrainConfig
from imgcls.data.label_fixes import LabelFixes, read_fixes
from imgcls.data.normalize import Normalizer, compute_stats
from imgcls.data.sources import ImageSet, load_source
from imgcls.data.split import Split, split_from_json, split_image_set
from imgcls.data.stream import StreamingImageSet
from imgcls.errors import UserError
from imgcls.modelfile.artifact import read_card, read_weights
from imgcls.modelfile.card import Architecture
from imgcls.modelfile.rundir import RunDir
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
from imgcls.training.settle import resolve_init_from, settle
from imgcls.utils.cpus import usable_cpus
from imgcls.utils.files import write_json, write_text

# Normalization statistics of a streamed train split come from this many of its images.
STATS_SAMPLE = 5000


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


@dataclass
class PreparedData:
    image_set: ImageSet | StreamingImageSet
    split: Split
    stats: dict[str, Any]  # normalization statistics of the train split
    workers: int = 0  # decoding processes for a streamed data set
    fixes: dict | None = None  # --relabel / --exclude as applied (LabelFixes.record)
    _decoded: dict[str, tuple[torch.Tensor, ...]] = field(default_factory=dict, repr=False)

    @property
    def streaming(self) -> bool:
        return isinstance(self.image_set, StreamingImageSet)

    def subset(self, part: str) -> tuple[torch.Tensor, torch.Tensor]:
        images, labels, _ = self.subset_with_indices(part)
        return images, labels

    def batches(
        self, indices: torch.Tensor, batch_size: int, *, pin_memory: bool = False
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """(uint8 images, labels) on the CPU for `indices`, in that order, `batch_size` at a
        time; a streamed data set decodes them batch by batch (a bad file is left out)."""
        if self.streaming:
            yield from self.image_set.batches(indices, batch_size, self.workers,
                                              pin_memory=pin_memory)
            return
        for chunk in indices.split(batch_size):
            yield self.image_set.images[chunk], self.image_set.labels[chunk]

    def subset_with_indices(self, part: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """A split's uint8 images, labels and item indices. A streamed data set decodes the
        part once (val and test are small) and leaves out files that turn out bad."""
        indices = torch.as_tensor(getattr(self.split, part), dtype=torch.long)
        if not self.streaming:
            return self.image_set.images[indices], self.image_set.labels[indices], indices
        if part not in self._decoded:
            self._decoded[part] = decode_part(self.image_set, indices, self.workers)
        return self._decoded[part]


def decode_part(
    image_set: StreamingImageSet, indices: torch.Tensor, workers: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    parts = list(image_set.batches(indices, 256, workers, with_indices=True))
    if not parts:
        empty = torch.zeros(0, image_set.channels, image_set.image_size, image_set.image_size,
                            dtype=torch.uint8)
        return empty, torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.long)
    images, labels, kept = (torch.cat(column) for column in zip(*parts, strict=True))
    return images, labels, kept


def prepare_data(
    config: TrainConfig, run_dir: Path, console: Console, *, reuse_split: bool,
    write_files: bool = True,
) -> PreparedData:
    image_set = load_source(
        config.data,
        channels=config.channels,
        image_size=config.image_size,
        data_dir=config.data_dir,
        cache_limit=None if config.cache_limit is None else int(config.cache_limit * 2**30),
    )
    if write_files:
        report_skipped(image_set, run_dir, console)
    split = _split(config, image_set, RunDir(run_dir).split, reuse_split, write_files)
    fixes = read_fixes(image_set, relabel=config.relabel, exclude=config.exclude)
    split = _apply_fixes(fixes, image_set, split, console)
    if len(split.train) == 0:
        raise UserError(f"{config.data}: the train split is empty; lower --val/--test fractions")
    workers = config.workers if config.workers is not None else usable_cpus()
    train = torch.as_tensor(split.train, dtype=torch.long)
    if isinstance(image_set, StreamingImageSet):
        console.print(f"{image_set.source} is larger than the in-memory limit: streaming it "
                      f"through {workers} decoding workers")
        sample = train[torch.randperm(len(train), generator=torch.Generator().manual_seed(0))]
        train_images = decode_part(image_set, sample[:STATS_SAMPLE], workers)[0]
    else:
        train_images = image_set.images[train]
    stats = compute_stats(train_images, config.normalize)
    return PreparedData(image_set, split, stats, workers, fixes=fixes.record or None)


def _apply_fixes(fixes: LabelFixes, image_set: ImageSet | StreamingImageSet, split: Split,
                 console: Console) -> Split:
    """--relabel and --exclude on the split made from the data as it is on disk (so the
    test split stays the one the uncorrected data gives)."""
    if not fixes.record:
        return split
    fixes.apply(image_set)
    console.print(f"label fixes, in memory only: {len(fixes.relabel)} relabeled, "
                  f"{len(fixes.exclude)} left out")
    return replace(split, train=fixes.kept(split.train), val=fixes.kept(split.val),
                   test=fixes.kept(split.test))


def _split(
    config: TrainConfig, image_set: ImageSet, split_file: Path, reuse: bool, write: bool
) -> Split:
    if reuse and split_file.exists():
        return split_from_json(json.loads(split_file.read_text()), image_set)
    if config.split_file:
        split = split_from_json(_read_split_file(config.split_file), image_set)
        if write:
            write_json(split_file, split.to_json(image_set))
        return split
    split = split_image_set(image_set, val=config.val_fraction, test=config.test_fraction,
                            seed=config.resolved_split_seed, group_by=config.group_by)
    if write:
        write_json(split_file, split.to_json(image_set))
    return split


def _read_split_file(path: str) -> dict:
    file = Path(path)
    if not file.is_file():
        raise UserError(f"--split-file {file} does not exist; write one with `imgcls data split`")
    try:
        return json.loads(file.read_text())
    except json.JSONDecodeError as error:
        raise UserError(f"--split-file {file} is not valid JSON ({error})") from None


def class_counts(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    return torch.bincount(labels, minlength=num_classes)


def warn_if_imbalanced(counts: torch.Tensor, config: TrainConfig, console: Console) -> None:
    present = counts[counts > 0]
    ratio = float(present.max() / present.min()) if len(present) else 1.0
    # Past 3:1 a plain loss visibly favours the big classes (the issue tracker's threshold).
    if ratio > 3 and config.balance == "none":
        console.print(f"[yellow]warning:[/] the train split is imbalanced ({ratio:.1f}:1 between "
                      "the largest and smallest class); consider --balance weights or sampler")


def report_skipped(
    image_set: ImageSet | StreamingImageSet, run_dir: Path, console: Console
) -> None:
    if not image_set.skipped:
        return
    listing = RunDir(run_dir).skipped
    write_text(listing, "".join(f"{item}\t{reason}\n" for item, reason in image_set.skipped))
    console.print(
        f"[yellow]warning:[/] skipped {len(image_set.skipped)} unreadable file(s); "
        f"the list is in {listing}"
    )


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
