"""ImageSet: a whole data set decoded in memory, whatever source it came from."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

SPLIT_NAMES = ("train", "val", "test")


@dataclass(eq=False)  # tensors don't compare to one bool
class ImageSet:
    images: torch.Tensor  # uint8 [N, C, H, W], H == W == size
    labels: torch.Tensor  # int64 [N], index into class_names
    # sorted for folders and CSVs (numerically when every name is an integer);
    # built-in data sets keep their official label order
    class_names: list[str]
    # stable id per item: path relative to the source root for files, "digits/17",
    # "fashion-mnist/train/123"
    item_ids: list[str]
    # per item "train"/"val"/"test" when the source itself splits, else None
    preset_split: list[str] | None
    source: str  # the --data string, normalized (absolute path for folders and CSVs)
    hflip_ok: bool  # whether a mirror image is still the same class (not so for digits)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (item, reason) left out

    def __post_init__(self) -> None:
        count = len(self.images)
        lengths = {
            "labels": len(self.labels),
            "item_ids": len(self.item_ids),
            "preset_split": count if self.preset_split is None else len(self.preset_split),
        }
        wrong = {name: length for name, length in lengths.items() if length != count}
        if wrong:
            raise ValueError(f"ImageSet has {count} images but lengths {wrong}")
        if self.images.dtype != torch.uint8 or self.images.ndim != 4:
            raise ValueError(f"images must be uint8 [N,C,H,W], got {self.images.dtype} "
                             f"{tuple(self.images.shape)}")

    @property
    def channels(self) -> int:
        return int(self.images.shape[1])

    @property
    def image_size(self) -> int:
        return int(self.images.shape[-1])

    def __len__(self) -> int:
        return len(self.images)
