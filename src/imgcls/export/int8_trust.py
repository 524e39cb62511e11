"""Whether a model file's int8 export may answer on this CPU.

An int8 check holds for the kind of CPU it ran on (cpus.cpu_kind): onnxruntime's integer
kernels differ by instruction set, and an export checked on a VNNI machine once answered 6.7
points worse on an AVX2 one. So on a CPU of another kind the int8 model is re-checked once, on
the test images stored at export (int8.check.npz: a few hundred, about a second), against the
same thresholds, and the outcome is recorded beside the export's (int8.json). Where no check
passed for this kind, the caller predicts in fp32 and says why in one line. Torch-free.
"""

from __future__ import annotations

from dataclasses import dataclass

from imgcls.errors import UserError
from imgcls.export.cache import BackendCache
from imgcls.export.int8_record import (
    Int8Check,
    Int8Record,
    add_recheck,
    read_check_images,
    read_record,
    rechecked,
)
from imgcls.export.session import OnnxRunner
from imgcls.utils.cpus import cpu_kind


@dataclass(frozen=True)
class Int8Verdict:
    usable: bool
    reason: str  # one line: why it is refused here, or that it was re-checked here ("" else)


def int8_verdict(cache: BackendCache, *, threads: int) -> Int8Verdict:
    """Whether the int8 export of `cache` may run on this CPU (re-checking it here if needed).
    Raises UserError when there is no int8 export, or its export check failed."""
    record = read_record(cache.path("int8.json"))
    if record is not None and not record.export.passed:
        raise UserError(f"the int8 model failed its accuracy check: {record.export.describe()}")
    if record is None or not cache.path("int8.onnx").is_file():
        raise UserError("no int8 model for this model file yet: run `imgcls export MODEL "
                        "--quantize int8` first")
    kind = cpu_kind()
    check = record.on(kind)
    checked_now = check is None
    if check is None:
        check = recheck(cache, record, kind, threads=threads)
        if check is None:
            return Int8Verdict(False, _unverifiable(record, kind))
        add_recheck(cache.path("int8.json"), check)
    if not check.passed:
        return Int8Verdict(False, _refusal(check, record))
    note = (f"int8 model re-checked on this CPU ({kind}): {check.describe()}"
            if checked_now else "")
    return Int8Verdict(True, note)


def recheck(cache: BackendCache, record: Int8Record, kind: str, *,
            threads: int) -> Int8Check | None:
    """The export's check made again here on its stored images (None: none were stored)."""
    stored = read_check_images(cache.path("int8.check.npz"))
    if stored is None or len(stored.labels) == 0:
        return None
    runner = OnnxRunner(cache.path("int8.onnx"), threads=threads,
                        broken_hint="export it again with `imgcls export MODEL --quantize int8`")
    return rechecked(record.export, runner.probabilities(stored.images), stored, kind)


def _refusal(check: Int8Check, record: Int8Record) -> str:
    checked = record.export.cpu_kind or "an unrecorded CPU"
    return (f"int8 model refused on this CPU, predicting in fp32: {check.describe()} "
            f"(exported and checked on {checked}); `imgcls export MODEL --quantize int8` "
            "here checks it again")


def _unverifiable(record: Int8Record, kind: str) -> str:
    checked = record.export.cpu_kind or "an unrecorded CPU (an earlier imgcls)"
    return (f"int8 model refused on this CPU ({kind}), predicting in fp32: it was checked on "
            f"{checked} and has no stored check images to re-check it here; run `imgcls "
            "export MODEL --quantize int8` again")
