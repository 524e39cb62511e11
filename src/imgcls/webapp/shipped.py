"""Which model the phone app ships: the int8 model where `imgcls export --quantize int8`'s own
check passes (evaluation/int8_export.py: calibrated on the training split, compared with fp32
on the test split), else fp32. int8 is about a quarter of fp32's bytes, and bytes are what a
phone downloads and caches; the check is what keeps its answers fp32's.

--quantize (web only): left out, int8 when its check passes, else fp32 saying why; `int8`,
int8 or nothing (refused as `imgcls export --quantize int8` refuses); `none`, fp32."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from imgcls.errors import UserError
from imgcls.export.int8_record import MIN_AGREEMENT


@dataclass(frozen=True)
class ShippedModel:
    precision: str  # "int8" or "fp32"
    reason: str  # why, with the check's numbers where a check ran
    onnx: Path | None  # the file to ship; None: export the model (or copy the .onnx given)
    refused: bool = False  # --quantize int8 demanded int8 and its check failed

    def describe(self) -> str:
        return f"shipping the {self.precision} model: {self.reason}"


@dataclass(frozen=True)
class Int8Request:
    """What the int8 check runs on and must meet (`imgcls export --quantize int8`'s flags)."""

    data: str | None = None  # None: the training data the model file records
    data_dir: str | None = None
    max_accuracy_drop: float = 1.0
    min_agreement: float = MIN_AGREEMENT


def choose_model(model_path: str | Path, quantize: str | None,
                 int8: Int8Request = Int8Request()) -> ShippedModel:
    """quantize: None (int8 where its check passes), "int8" or "none"."""
    if Path(model_path).suffix.lower() == ".onnx":
        if quantize == "int8":
            raise UserError("--quantize int8 needs the model.safetensors (int8 calibrates on "
                            "its training split); an .onnx file is shipped as it is")
        return ShippedModel("fp32", "an .onnx file is shipped as it is", None)
    if quantize == "none":
        return ShippedModel("fp32", "--quantize none", cached_fp32(model_path))
    return _checked_int8(model_path, demanded=quantize == "int8", int8=int8)


def cached_fp32(model_path: str | Path) -> Path | None:
    """The fp32 export the backends cache beside the model (the one int8 is quantized from):
    written once, in a fraction of torch's dynamo export time. None where no cache folder is
    writable: then the app exports the model itself."""
    from imgcls.export.cache import cache_for
    from imgcls.modelfile.artifact import model_file
    from imgcls.predict.backends.choose import fp32_onnx

    file = model_file(model_path)
    try:
        return fp32_onnx(cache_for(file), file)
    except OSError:
        return None


def _checked_int8(model_path: str | Path, *, demanded: bool,
                  int8: Int8Request) -> ShippedModel:
    """demanded: --quantize int8 (int8 or a refusal; never fp32 instead)."""
    from imgcls.evaluation.int8_export import export_int8, refusal

    try:
        check, written = export_int8(model_path, data=int8.data, data_dir=int8.data_dir,
                                     max_accuracy_drop=int8.max_accuracy_drop,
                                     min_agreement=int8.min_agreement)
    except UserError as error:
        if demanded:
            raise
        # No data to check on (none recorded, or moved): fp32 is the safe default.
        return ShippedModel("fp32", f"int8 could not be checked ({error})",
                            cached_fp32(model_path))
    accuracy = (f"on {check.samples} test images, accuracy {check.fp32_accuracy:.2%} fp32 -> "
                f"{check.int8_accuracy:.2%} int8")
    if written is None:
        reason = f"the int8 check failed: {refusal(check)} ({accuracy})"
        return ShippedModel("fp32", reason, cached_fp32(model_path), refused=demanded)
    numbers = f"top-1 agreement with fp32 {check.top1_agreement:.2%} {accuracy}"
    return ShippedModel("int8", f"its check passed ({numbers})", written)
