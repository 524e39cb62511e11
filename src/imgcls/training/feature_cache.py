"""Frozen backbones train on cached features.

With --freeze-backbone the backbone computes the same function every epoch: its weights are
fixed and it runs in eval mode (models.pretrained.train_head_only). When the pixels do not
change either (no augmentation), its output for each train image is computed once, the first
time an epoch asks for it, and the head trains on that from then on: an epoch costs a few
matrix products instead of a pass through the network. Validation images get the same
treatment. The features are what the head receives, caught by a forward pre-hook on the head
module: one mechanism for every family. The head is the model's own module, trained in
place, so the model file, test metrics and prediction need nothing special.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from imgcls.config import AUGMENT_FLAGS, TrainConfig
from imgcls.data.stream import default_cache_limit
from imgcls.modelfile.rundir import RunDir
from imgcls.models import get_spec
from imgcls.models.pretrained import dropout_before_head, train_head_only
from imgcls.runtime import autocast

if TYPE_CHECKING:  # run.py imports this module: the type is for annotations only
    from imgcls.training.run import Run

# Images per forward pass when computing features: inference needs far less memory than the
# training step that --batch-size was chosen for.
EXTRACT_BATCH = 256

# A head step below this many multiply-adds runs on one CPU thread: its operations are too
# small to share, and with more threads each waits for all of them. Measured on a shared
# 2-core VM while another process trained: a 512 -> 10 head step at batch 128 took 0.6 ms on
# one thread and 16-95 ms on two.
SMALL_HEAD_MACS = 2**25
Features = torch.Tensor | np.ndarray  # [N, F...]: on the device, or a float32 disk memmap


@dataclass
class FrozenHead:
    """The trained part of a model whose backbone is frozen, and the features it trains on.
    Modules are kept by name, so the same plan serves a copy of the model (a throwaway copy
    that times steps, an EMA copy that is evaluated)."""

    head_name: str  # the registry's head Linear ("fc", "classifier.6"), trained in place
    dropout_name: str | None  # a Dropout feeding the head: it stays on over cached features
    cached: bool  # whether the head trains on cached features (no augmentation)
    train_features: Features | None = None  # by train-split position, filled on first use
    kept: torch.Tensor | None = None  # bool [N]: positions a streamed data set could decode
    split_features: dict[str, torch.Tensor] = field(default_factory=dict)  # "val" -> [views, n, F]

    def trained_modules(self, model: nn.Module) -> list[nn.Module]:
        names = [self.head_name] if self.dropout_name is None else [self.dropout_name,
                                                                     self.head_name]
        return [model.get_submodule(name) for name in names]

    def train_mode(self, model: nn.Module) -> None:
        train_head_only(model, self.trained_modules(model))

    def head_forward(self, model: nn.Module) -> nn.Module:
        """What `model` computes from the head's input on: its dropout (if any), its head."""
        return nn.Sequential(*self.trained_modules(model))


def plan(run: Run) -> FrozenHead | None:
    """The frozen head of a --freeze-backbone run (None without it); says why when its
    features cannot be cached."""
    if not run.config.freeze_backbone:
        return None
    head_name = get_spec(run.architecture.name).head
    reason = why_not_cached(run.config, run.augment, run.dist.enabled)
    if reason is not None:
        run.console.print(f"features not cached: {reason}")
    return FrozenHead(head_name=head_name,
                      dropout_name=dropout_before_head(run.model, head_name, run.input_shape),
                      cached=reason is None)


def why_not_cached(config: TrainConfig, augment: nn.Module, distributed: bool) -> str | None:
    if not isinstance(augment, nn.Identity):  # build_augment's no-op: preset none, no overrides
        flags = [f"--{name.replace('_', '-')}" for name in AUGMENT_FLAGS
                 if getattr(config, name) not in (None, 0, "none")]
        also = f" without {' '.join(flags)}" if flags else ""
        return (f"augmentation changes the pixels every epoch; pass --augment none{also} "
                "to cache them")
    if distributed:
        return "under torchrun the head trains through DistributedDataParallel on images"
    return None


def cached_batches(
    run: Run, frozen: FrozenHead, batches: list[torch.Tensor]
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """(features, labels) on the device for an epoch's batches of train-split positions; the
    features are computed by the first call."""
    if frozen.train_features is None:
        _cache_train_features(run, frozen)
    features = frozen.train_features
    # The steps run while this generator waits for the next batch: on one thread, if small.
    with _threads_for_head(run, features):
        for positions in batches:
            if frozen.kept is not None:  # leave out images a streamed set could not decode
                positions = positions[frozen.kept[positions]]
            if len(positions):
                yield _rows(features, positions, run.device), run.train_labels[positions]


def cached_probabilities(run: Run, frozen: FrozenHead, part: str,
                         images: torch.Tensor) -> torch.Tensor:
    """Softmax probabilities [n, K] on the CPU of a fixed split's uint8 `images` (val), by the
    evaluated model's head over features cached on first use: what predict_probabilities
    gives, without running the backbone again."""
    if part not in frozen.split_features:
        run.model.eval()
        chunks = [_head_inputs(run, frozen, chunk.to(run.device))
                  for chunk in images.split(EXTRACT_BATCH)]
        # [views, n, F...]: one view per pass the model makes (two under --tta hflip)
        frozen.split_features[part] = torch.stack(
            [torch.cat(view) for view in zip(*chunks, strict=True)])
        frozen.train_mode(run.model)
    views = frozen.split_features[part]
    head = run.eval_model.get_submodule(frozen.head_name)  # the EMA's copy under --ema
    outputs = []
    with _threads_for_head(run, views[0]), torch.no_grad(), autocast(run.device, run.dtype):
        for chunk in views.split(EXTRACT_BATCH, dim=1):
            # the mean of the views' logits, as models.flip_tta averages them
            logits = torch.stack([head(view).float() for view in chunk]).mean(dim=0)
            outputs.append(logits.softmax(dim=1).cpu())
    return torch.cat(outputs)


@contextmanager
def _threads_for_head(run: Run, features: Features) -> Iterator[None]:
    """One CPU thread while a small head runs (see SMALL_HEAD_MACS), then as before."""
    threads = torch.get_num_threads()
    classes = len(run.data.image_set.class_names)
    # A training step's multiply-adds: forward and backward are three such products.
    macs = 3 * run.config.batch_size * math.prod(features.shape[1:]) * classes
    if macs < SMALL_HEAD_MACS:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _cache_train_features(run: Run, frozen: FrozenHead) -> None:
    started = time.perf_counter()
    count = len(run.train_labels)
    kept = torch.zeros(count, dtype=torch.bool, device=run.device)
    features: Features | None = None
    run.model.eval()
    # The head in train mode (a Linear computes the same in both) keeps --tta hflip's mirror
    # pass off: the head trains on the images as they are.
    run.model.get_submodule(frozen.head_name).train()
    for positions, images in _train_images(run):
        (batch,) = _head_inputs(run, frozen, images)
        if features is None:
            features = _allocate(run, (count, *batch.shape[1:]))
        _store(features, positions, batch)
        kept[positions] = True
    frozen.train_mode(run.model)
    if features is None:  # nothing decoded: an empty table keeps the epoch loop simple
        features = torch.zeros(count, 1, device=run.device)
    frozen.train_features = features
    frozen.kept = None if bool(kept.all()) else kept
    where = "in memory" if isinstance(features, torch.Tensor) else "on disk"
    values = math.prod(features.shape[1:])
    run.console.print(
        f"features cached: {int(kept.sum()):,} train images x {values:,} values, {where}, "
        f"in {time.perf_counter() - started:.1f}s; the head trains on them"
    )


def _train_images(run: Run) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """(train-split positions, uint8 images) on the device, every train image once."""
    count = len(run.train_labels)
    if run.train_images is not None:
        for positions in torch.arange(count, device=run.device).split(EXTRACT_BATCH):
            yield positions, run.train_images[positions]
        return
    # A streamed set yields the item indices it decoded; map them back to positions.
    position_of = torch.full((int(run.train_indices.max()) + 1,), -1, dtype=torch.long)
    position_of[run.train_indices] = torch.arange(count)
    streamed = run.data.image_set.batches(run.train_indices, EXTRACT_BATCH, run.data.workers,
                                          with_indices=True)
    for images, _, indices in streamed:
        yield position_of[indices].to(run.device), images.to(run.device)


def _head_inputs(run: Run, frozen: FrozenHead, images: torch.Tensor) -> list[torch.Tensor]:
    """The head's float32 input for uint8 `images`, prepared as the training step does (same
    memory format, normalization and precision), through the model in its current mode: one
    per pass the model makes, two (the images', their mirrors') when --tta hflip averages."""
    caught: list[torch.Tensor] = []
    head = run.model.get_submodule(frozen.head_name)
    handle = head.register_forward_pre_hook(lambda module, args: caught.append(args[0]))
    if run.channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    try:
        with torch.no_grad(), autocast(run.device, run.dtype):
            run.model(run.normalizer(images))
    finally:
        handle.remove()
    # float32 holds bf16/fp16 activations exactly; autocast casts them back for the head.
    return [inputs.float() for inputs in caught]


def _allocate(run: Run, shape: tuple[int, ...]) -> Features:
    """In memory on the device when the features fit the --cache-limit budget (default a
    quarter of RAM), else a float32 memmap in the run directory."""
    size = 4 * math.prod(shape)
    limit = (default_cache_limit() if run.config.cache_limit is None
             else int(run.config.cache_limit * 2**30))
    if size <= limit:
        return torch.empty(shape, dtype=torch.float32, device=run.device)
    path = RunDir(run.run_dir).feature_spill
    mapped = np.memmap(path, dtype=np.float32, mode="w+", shape=shape)
    try:
        path.unlink()  # the mapping lives on; the disk space goes back when it closes
    except OSError:  # Windows keeps mapped files; the next resume removes the leftover
        pass
    return mapped


def _store(features: Features, positions: torch.Tensor, batch: torch.Tensor) -> None:
    if isinstance(features, torch.Tensor):
        features[positions] = batch
    else:
        features[positions.cpu().numpy()] = batch.cpu().numpy()


def _rows(features: Features, positions: torch.Tensor, device: torch.device) -> torch.Tensor:
    if isinstance(features, torch.Tensor):
        return features[positions]
    return torch.from_numpy(features[positions.cpu().numpy()]).to(device, non_blocking=True)
