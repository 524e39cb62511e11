"""The outcome of `imgcls export --quantize int8`'s accuracy check, kept beside the int8 file
(`int8.json`), with the re-checks made since on CPUs of other kinds: `auto` may run the int8
model, and `--backend onnx-int8` does, only where a check passed on this CPU's kind
(int8_trust.py). Beside it, `int8.check.npz` holds the images a re-check runs on."""

from __future__ import annotations

import io
import json
import zipfile
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import BinaryIO

import numpy as np

from imgcls.utils.files import atomic_path, write_json

MIN_AGREEMENT = 0.98  # top-1 agreement with fp32 an int8 model needs by default


@dataclass(frozen=True)
class Int8Check:
    samples: int  # test images compared
    data: str  # what they were
    top1_agreement: float  # fraction with the same top-1 class as fp32
    fp32_accuracy: float
    int8_accuracy: float
    max_accuracy_drop: float  # the threshold, in percentage points
    calibration_images: int
    min_agreement: float = 0.0  # the threshold on top1_agreement (records before it: none)
    scheme: str = ""  # how it was quantized (quantize.SCHEME); "" from an earlier imgcls
    cpu_kind: str = ""  # where the int8 model ran for this check (cpus.cpu_kind); "" unknown

    @property
    def accuracy_drop_points(self) -> float:
        return (self.fp32_accuracy - self.int8_accuracy) * 100

    @property
    def passed(self) -> bool:
        return (self.accuracy_drop_points <= self.max_accuracy_drop
                and self.top1_agreement >= self.min_agreement)

    def describe(self) -> str:
        agreeing = round(self.top1_agreement * self.samples)
        change = self.int8_accuracy - self.fp32_accuracy
        where = f" on {self.cpu_kind}" if self.cpu_kind else ""
        return (f"int8 check{where} on {self.samples} {self.data} test images: top-1 agreement "
                f"with fp32 {agreeing}/{self.samples} ({self.top1_agreement:.2%}), accuracy "
                f"{self.fp32_accuracy:.2%} fp32 -> {self.int8_accuracy:.2%} int8 "
                f"({change * 100:+.2f} points; allowed drop {self.max_accuracy_drop:g}, "
                f"agreement at least {self.min_agreement:.0%})")


@dataclass(frozen=True)
class Int8Record:
    export: Int8Check  # the check `imgcls export --quantize int8` made
    rechecks: dict[str, Int8Check]  # cpu kind -> the re-check made on a CPU of that kind

    def on(self, kind: str) -> Int8Check | None:
        """The check that holds for CPUs of `kind`, if one was made there."""
        return self.export if self.export.cpu_kind == kind else self.rechecks.get(kind)


@dataclass(frozen=True)
class CheckImages:
    """What a re-check compares: test images, their labels and fp32's probabilities."""

    images: np.ndarray  # uint8 [N, C, H, W]
    labels: np.ndarray  # int [N]
    fp32: np.ndarray  # float32 [N, K], eager torch's at export


def write_check(path: Path, check: Int8Check) -> None:
    """A new export's record: the re-checks of an earlier int8 file no longer hold."""
    _write(path, Int8Record(check, {}))


def add_recheck(path: Path, check: Int8Check) -> None:
    record = read_record(path)
    if record is not None:
        _write(path, Int8Record(record.export, {**record.rechecks, check.cpu_kind: check}))


def read_record(path: Path) -> Int8Record | None:
    if not path.is_file():
        return None
    try:
        document = json.loads(path.read_text())
        rechecks = document.pop("rechecks", {})
        return Int8Record(check_from(document),
                          {kind: check_from(check) for kind, check in rechecks.items()})
    except (OSError, ValueError, TypeError, AttributeError):
        return None


def write_check_images(path: Path, images: CheckImages) -> None:
    with atomic_path(path) as temporary:
        temporary.write_bytes(pack_check_images(images))


def pack_check_images(images: CheckImages) -> bytes:
    """The images as a compressed .npz (int8.check.npz, or inside an int8 file's metadata)."""
    buffer = io.BytesIO()
    np.savez_compressed(buffer, images=images.images, labels=images.labels, fp32=images.fp32)
    return buffer.getvalue()


def read_check_images(source: Path | BinaryIO) -> CheckImages | None:
    """What pack_check_images wrote (a file, or its bytes as a stream); None: unreadable."""
    try:
        with np.load(source, allow_pickle=False) as stored:
            return CheckImages(stored["images"], stored["labels"], stored["fp32"])
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):  # cut short, damaged
        return None


def rechecked(check: Int8Check, int8: np.ndarray, stored: CheckImages, kind: str) -> Int8Check:
    """`check` made again on a CPU of `kind`: int8's probabilities `int8` on `stored`."""
    answers, fp32 = int8.argmax(1), stored.fp32.argmax(1)
    return replace(check, samples=len(stored.labels), cpu_kind=kind,
                   top1_agreement=float(np.mean(answers == fp32)),
                   fp32_accuracy=float(np.mean(fp32 == stored.labels)),
                   int8_accuracy=float(np.mean(answers == stored.labels)))


def check_from(document: dict) -> Int8Check:
    """A check read back from its JSON (fields an earlier or later imgcls wrote, ignored)."""
    names = {field.name for field in fields(Int8Check)}
    return Int8Check(**{key: value for key, value in document.items() if key in names})


def _write(path: Path, record: Int8Record) -> None:
    write_json(path, {**asdict(record.export), "passed": record.export.passed,
                      "rechecks": {kind: {**asdict(check), "passed": check.passed}
                                   for kind, check in record.rechecks.items()}})
