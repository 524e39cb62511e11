"""The work behind `imgcls data check | stats | split | preview` (cli/data.py parses and
prints): check a source's files (doctor.py's scan, its JSON report, quarantine.py's moves), or
load a source, split it as training would, and compute, write or draw from it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from imgcls.errors import UserError

if TYPE_CHECKING:  # both import torch; the CLI imports this module before it needs torch
    from imgcls.data.doctor import DoctorReport
    from imgcls.data.imageset import ImageSet
    from imgcls.data.split import Split


@dataclass(frozen=True)
class Quarantined:
    moved: int  # files with errors moved out of the data
    manifest: Path  # what `imgcls data restore` moves them back by


@dataclass(frozen=True)
class DataCheck:
    """What `imgcls data check` found and did.

    `failure` is the error that stopped writing the report file or the quarantine (a folder
    refused, a file that would be overwritten): it is returned, not raised, so the caller
    shows the report, which took the whole scan to make, before raising it.
    """

    report: DoctorReport
    report_file: str | None = None  # where the JSON report was written
    quarantined: Quarantined | None = None
    nothing_to_quarantine: bool = False  # a quarantine was asked for, but no file is broken
    failure: OSError | UserError | None = None

    @property
    def exit_code(self) -> int:
        """0: no errors; 1: bad files or folders found."""
        return 1 if self.report.has_errors else 0


@dataclass(frozen=True)
class SourceRequest:
    """A folder, CSV or built-in name, loaded at these settings (None: the source's own)."""

    source: str
    data_dir: str | None = None
    channels: int | None = None
    image_size: int | None = None


@dataclass(frozen=True)
class SplitRequest:
    val: float = 0.1
    test: float = 0.1
    seed: int = 0
    group_by: str | None = None  # a file-name regex whose first group stays together


@dataclass(frozen=True)
class ChannelStats:
    """One channel of the train split, pixels scaled to 0..1."""

    mean: float
    std: float
    min: float
    max: float


@dataclass(frozen=True)
class TrainStats:
    source: str  # the image set's own name for its source
    train_images: int
    channels: list[ChannelStats]


@dataclass(frozen=True)
class SplitSizes:
    train: int
    val: int
    test: int


def check_source(source: str | Path, *, workers: int | None = None,
                 report_file: str | None = None,
                 quarantine_to: str | Path | None = None) -> DataCheck:
    """Scan every file of a folder or CSV source (doctor.scan), write the report as JSON to
    `report_file` when given, and move the broken files into `quarantine_to` when given."""
    from imgcls.data.doctor import scan
    from imgcls.data.quarantine import files_to_quarantine, quarantine
    from imgcls.utils.files import write_json

    if workers is not None and workers < 1:
        raise UserError(f"--workers must be at least 1; got {workers}")
    report = scan(source, workers=workers)
    written = None
    try:
        if report_file:
            write_json(report_file, report.to_json())
            written = report_file
        if not quarantine_to:
            return DataCheck(report, written)
        broken = files_to_quarantine(report)
        if not broken:
            return DataCheck(report, written, nothing_to_quarantine=True)
        manifest = quarantine(report, report.root, Path(quarantine_to))
    except (OSError, UserError) as error:
        return DataCheck(report, written, failure=error)
    return DataCheck(report, written, Quarantined(len(broken), manifest))


def load_and_split(source: SourceRequest, split: SplitRequest) -> tuple[ImageSet, Split]:
    """The image set and its train/val/test split, stratified as `imgcls train` makes it."""
    from imgcls.data.sources import load_source
    from imgcls.data.split import split_image_set

    image_set = load_source(source.source, channels=source.channels,
                            image_size=source.image_size, data_dir=source.data_dir)
    return image_set, split_image_set(image_set, val=split.val, test=split.test,
                                      seed=split.seed, group_by=split.group_by)


def train_split_stats(source: SourceRequest, split: SplitRequest) -> TrainStats:
    """Mean/std and min/max per channel of the train split: what normalization would use."""
    import torch

    from imgcls.data.normalize import compute_stats

    image_set, made = load_and_split(source, split)
    train = image_set.images[torch.as_tensor(made.train)]
    meanstd, minmax = compute_stats(train, "meanstd"), compute_stats(train, "minmax")
    channels = [ChannelStats(meanstd["mean"][c], meanstd["std"][c], minmax["min"][c],
                             minmax["max"][c]) for c in range(image_set.channels)]
    return TrainStats(image_set.source, len(made.train), channels)


def write_split(source: SourceRequest, split: SplitRequest, output: str | Path) -> SplitSizes:
    """The split as JSON at `output` (`imgcls train --split-file` reuses it)."""
    from imgcls.utils.files import write_json

    image_set, made = load_and_split(source, split)
    write_json(output, made.to_json(image_set))
    return SplitSizes(len(made.train), len(made.val), len(made.test))


def write_augment_preview(source: SourceRequest, preset_name: str, overrides: dict[str, Any],
                          output: str | Path, *, samples: int, variants: int,
                          seed: int) -> Path:
    """A PNG grid of `samples` images, each beside `variants` augmented versions, with the
    augmentation preset and its overridden fields as TrainConfig holds them."""
    from imgcls.data.augment import build_augment, preset
    from imgcls.data.preview import write_preview
    from imgcls.data.sources import load_source

    image_set = load_source(source.source, channels=source.channels,
                            image_size=source.image_size, data_dir=source.data_dir)
    augment = build_augment(preset(preset_name, hflip_ok=image_set.hflip_ok, **overrides),
                            image_size=image_set.image_size, channels=image_set.channels)
    return write_preview(image_set.images, augment, Path(output), samples=samples,
                         variants=variants, seed=seed)
