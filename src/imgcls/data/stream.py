"""Folders too large to decode into memory: each batch is decoded when it is needed.

A StreamingImageSet carries an ImageSet's metadata, but its `images` is a torch Dataset
that decodes one file on request (the same `decode_file` as the in-memory path, so the same
pixels), and `batches()` yields uint8 batches in the caller's order through DataLoader
worker processes. Shuffling, augmentation and normalization stay with the caller, on the
training device, as for an in-memory set.

Bad files: a file that fails to decode while streaming is left out of its batch (which is
yielded one image smaller; a batch with no good image is not yielded at all), recorded once
in `skipped` as (item id, reason), and left out of every later call's batches. Nothing
raises for a bad file.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import torch
from torch.utils.data import DataLoader

from imgcls.data.decode import DecodeAttempts, collate_attempts, decode_file
from imgcls.data.file_index import FileIndex

_MEMORY_FRACTION = 4  # decode in memory up to 1/4 of RAM: leaves room for the model & copies
_FALLBACK_RAM = 8 << 30  # when the OS won't say how much memory there is


def default_cache_limit() -> int:
    """Bytes of decoded images kept in memory at most: a quarter of physical RAM."""
    try:
        total = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):  # not POSIX, or the name is unknown
        total = _FALLBACK_RAM
    return total // _MEMORY_FRACTION


def decoded_bytes(count: int, channels: int, size: int) -> int:
    """Bytes that `count` images take decoded: uint8 [count, channels, size, size]."""
    return count * channels * size * size


class FileImages(DecodeAttempts):
    """The files of a source as a map-style Dataset: item i -> uint8 [C, size, size].

    Unlike DecodeAttempts, `self[i]` raises BadImageError for a bad file. `shape` is what
    the decoded tensor's would be, for code that reads (N, C, H, W) from
    `image_set.images.shape`.
    """

    def __getitem__(self, index: int) -> torch.Tensor:  # type: ignore[override]
        return decode_file(self.paths[index], channels=self.channels, size=self.size)

    @property
    def shape(self) -> torch.Size:
        return torch.Size((len(self.paths), self.channels, self.size, self.size))


@dataclass(eq=False)
class StreamingImageSet:
    """An ImageSet whose images are decoded batch by batch (see the module docstring)."""

    images: FileImages
    labels: torch.Tensor  # int64 [N], index into class_names
    class_names: list[str]
    item_ids: list[str]
    preset_split: list[str] | None
    source: str
    hflip_ok: bool
    # (item, reason): grows as bad files turn up while streaming
    skipped: list[tuple[str, str]] = field(default_factory=list)
    _bad: set[int] = field(default_factory=set, repr=False)

    @property
    def channels(self) -> int:
        return self.images.channels

    @property
    def image_size(self) -> int:
        return self.images.size

    def __len__(self) -> int:
        return len(self.images)

    def batches(
        self,
        indices: torch.Tensor | Sequence[int],
        batch_size: int,
        workers: int = 0,
        *,
        pin_memory: bool = False,
        with_indices: bool = False,
    ) -> Iterator[tuple[torch.Tensor, ...]]:
        """Yield (uint8 images [B, C, H, W], int64 labels [B]) for `indices`, in that order,
        `batch_size` at a time, decoded by `workers` processes (0: in this process).

        with_indices=True adds a third element, the int64 indices of the images yielded
        (they differ from the requested ones only where a bad file was left out).
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        wanted = torch.as_tensor(indices).tolist()
        order = [index for index in wanted if index not in self._bad]
        chunks = [order[start : start + batch_size] for start in range(0, len(order), batch_size)]
        attempts = DecodeAttempts(self.images.paths, channels=self.channels,
                                  size=self.image_size)
        loader = DataLoader(attempts, batch_sampler=chunks, num_workers=workers,
                            collate_fn=collate_attempts, pin_memory=pin_memory)
        for images, kept, bad in loader:
            self._record_bad(bad)
            if images is None:
                continue
            labels = self.labels[kept]
            yield (images, labels, kept) if with_indices else (images, labels)

    def _record_bad(self, bad: list[tuple[int, str]]) -> None:
        for index, reason in bad:
            if index not in self._bad:
                self._bad.add(index)
                self.skipped.append((self.item_ids[index], reason))


def streaming_set(index: FileIndex, *, channels: int, size: int) -> StreamingImageSet:
    """The files of `index` as a StreamingImageSet; no pixel is decoded here."""
    return StreamingImageSet(
        images=FileImages(index.paths, channels=channels, size=size),
        labels=torch.tensor(index.labels, dtype=torch.int64),
        class_names=index.class_names,
        item_ids=index.item_ids,
        preset_split=index.preset_split,
        source=index.source,
        hflip_ok=True,  # photos, as for an in-memory folder
    )
