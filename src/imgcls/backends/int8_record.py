"""The outcome of `imgcls export --quantize int8`'s accuracy check, kept beside the int8 file:
`auto` may run the int8 model only where it passed, and `--backend onnx-int8` only then."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from imgcls.files import write_json


@dataclass(frozen=True)
class Int8Check:
    samples: int  # test images compared
    data: str  # what they were
    top1_agreement: float  # fraction with the same top-1 class as fp32
    fp32_accuracy: float
    int8_accuracy: float
    max_accuracy_drop: float  # the threshold, in percentage points
    calibration_images: int

    @property
    def accuracy_drop_points(self) -> float:
        return (self.fp32_accuracy - self.int8_accuracy) * 100

    @property
    def passed(self) -> bool:
        return self.accuracy_drop_points <= self.max_accuracy_drop

    def describe(self) -> str:
        agreeing = round(self.top1_agreement * self.samples)
        change = self.int8_accuracy - self.fp32_accuracy
        return (f"int8 check on {self.samples} {self.data} test images: top-1 agreement with "
                f"fp32 {agreeing}/{self.samples} ({self.top1_agreement:.2%}), accuracy "
                f"{self.fp32_accuracy:.2%} fp32 -> {self.int8_accuracy:.2%} int8 "
                f"({change * 100:+.2f} points; allowed drop {self.max_accuracy_drop:g})")


def write_check(path: Path, check: Int8Check) -> None:
    write_json(path, {**asdict(check), "passed": check.passed})


def read_check(path: Path) -> Int8Check | None:
    """The recorded check, or None when there is none (or it cannot be read)."""
    if not path.is_file():
        return None
    try:
        document = json.loads(path.read_text())
        document.pop("passed", None)
        return Int8Check(**document)
    except (OSError, ValueError, TypeError):
        return None
