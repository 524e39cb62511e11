"""The data a run trains on, prepared once: the source loaded (or streamed), its split (or
--split-file), --relabel / --exclude applied after the split, the train split's normalization
statistics, and the warnings a user should see about it (imbalance, skipped files)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from rich.console import Console

from imgcls.config import TrainConfig
from imgcls.data.label_fixes import LabelFixes, read_fixes
from imgcls.data.normalize import compute_stats
from imgcls.data.sources import ImageSet, load_source
from imgcls.data.split import Split, split_from_json, split_image_set
from imgcls.data.stream import StreamingImageSet
from imgcls.errors import UserError
from imgcls.modelfile.rundir import RunDir
from imgcls.utils.cpus import usable_cpus
from imgcls.utils.files import write_json, write_text

# Normalization statistics of a streamed train split come from this many of its images.
STATS_SAMPLE = 5000


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

