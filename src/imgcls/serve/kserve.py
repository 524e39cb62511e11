"""The KServe v2 / Open Inference Protocol's tensors: request -> images, results -> answer.

One input per request, either
  BYTES [N] (or [N, 1]): encoded image files (JSON `data`: base64 strings), or
  FP32 / UINT8 [N, C, H, W]: pixels 0..255 at the model's input format; the model's
  normalization is applied by the server, as for uploaded images.
Outputs: `probabilities` FP32 [N, K] and `labels` BYTES [N] (the top-1 class names, or
`unknown` for none of the model's classes), and for a model with a trust record (or a request
whose `parameters.reject_below` sets a threshold) `familiarity` FP32 [N] and `unknown` BOOL
[N] (prediction.py says what they mean).
Triton's binary tensor extension is supported both ways (what tritonclient sends by
default): the JSON header's length in `Inference-Header-Content-Length`, tensors after it.

The JSON is parsed by pydantic (its Rust parser refuses nesting deeper than 200 levels, so
no input can exhaust Python's stack) into the models below; every malformed request is a
400 `invalid_tensor` naming the bad field, more images than the queue holds a 413.
"""

from __future__ import annotations

import base64
import binascii
import math
import re
import struct
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, NonNegativeInt, TypeAdapter, ValidationError

from imgcls.serve.errors import ApiError

HEADER_LENGTH = "inference-header-content-length"
PIXEL_TYPES = {"FP32": np.float32, "UINT8": np.uint8}
OUTPUTS = ("probabilities", "labels")
TRUST_OUTPUTS = ("familiarity", "unknown")  # offered always, answered unasked with a trust record
# A length within a body of at most --max-upload-mb: a few digits. Thousands of them would
# make int() itself fail (Python refuses to parse over 4300 digits).
_LENGTH = re.compile(r"[0-9]{1,15}")


class _Schema(BaseModel):
    # strict: "3" is not a shape, true is not a number. Fields beyond these are allowed
    # (the protocol's extensions and clients' own parameters) and ignored.
    model_config = ConfigDict(strict=True, extra="allow")


class TensorParameters(_Schema):
    binary_data_size: NonNegativeInt | None = None


class InputTensor(_Schema):
    name: str = "input"
    shape: list[NonNegativeInt] = Field(max_length=8)
    datatype: str
    parameters: TensorParameters | None = None
    data: list[Any] | None = None  # checked against the datatype by _BASE64 / _NUMBERS


class OutputParameters(_Schema):
    binary_data: bool | None = None


class RequestedOutput(_Schema):
    name: str
    parameters: OutputParameters | None = None


class RequestParameters(_Schema):
    binary_data_output: bool | None = None
    reject_below: str | float | None = None  # a familiarity, "card" or "off"


class InferenceRequestDocument(_Schema):
    id: str | None = None
    parameters: RequestParameters | None = None
    inputs: list[InputTensor] = Field(min_length=1, max_length=1)
    outputs: list[RequestedOutput] | None = None


class OutputTensor(BaseModel):
    name: str
    datatype: str
    shape: list[int]
    data: list[Any] | None = None
    parameters: dict[str, int] | None = None


class InferenceResponse(BaseModel):
    # The protocol's own field names. pydantic before 2.10 reserves the whole "model_" prefix
    # and warns about both fields on import, on stderr before the server's first line.
    model_config = ConfigDict(protected_namespaces=())

    model_name: str
    model_version: str
    id: str | None = None
    outputs: list[OutputTensor]


# BYTES `data`: [N] strings, or [N, 1] sent nested. Numbers: flat, or nested by dimension.
_BASE64 = TypeAdapter(list[str] | list[list[str]], config=ConfigDict(strict=True))
_NUMBERS = TypeAdapter(list[float] | list[list[float]] | list[list[list[float]]]
                       | list[list[list[list[float]]]], config=ConfigDict(strict=True))


@dataclass
class InferRequest:
    id: str | None
    input_name: str
    encoded: list[bytes] | None  # BYTES: one encoded image file each
    pixels: np.ndarray | None  # FP32/UINT8 [N, C, H, W]
    outputs: dict[str, bool]  # requested output -> binary?
    reject_below: str | float | None = None


def parse_request(body: bytes, header_length: str | None, chw: tuple[int, int, int],
                  max_images: int, *, trusted: bool = False) -> InferRequest:
    """An inference request's body -> what to run; ApiError for anything malformed, before
    any image is decoded."""
    document, binary = _split_body(body, header_length)
    tensor = document.inputs[0]
    _check_count(tensor.shape[0] if tensor.shape else 0, max_images)
    raw = _binary_data(tensor, binary)
    reject_below = document.parameters.reject_below if document.parameters else None
    outputs = _outputs(document, trusted or reject_below not in (None, "card", "off"))
    if tensor.datatype == "BYTES":
        encoded = _bytes_elements(tensor, raw, max_images)
        return InferRequest(document.id, tensor.name, encoded, None, outputs, reject_below)
    if tensor.datatype in PIXEL_TYPES:
        pixels = _pixels(tensor, raw, chw)
        return InferRequest(document.id, tensor.name, None, pixels, outputs, reject_below)
    raise _bad(f"input datatype {tensor.datatype[:40]!r} is not BYTES, FP32 or UINT8")


def _split_body(body: bytes, header_length: str | None
                ) -> tuple[InferenceRequestDocument, bytes]:
    if not body:
        raise ApiError(400, "empty_body", "the request body is empty")
    json_size = _json_size(header_length, len(body))
    try:
        document = InferenceRequestDocument.model_validate_json(body[:json_size])
    except ValidationError as error:
        raise _bad(f"not an inference request: {_problems(error)}") from None
    return document, body[json_size:]


def _json_size(header_length: str | None, body_size: int) -> int:
    if header_length is None:
        return body_size
    if not _LENGTH.fullmatch(header_length) or int(header_length) > body_size:
        raise ApiError(400, "invalid_header_length",
                       f"Inference-Header-Content-Length {header_length[:20]!r} is not a "
                       f"length (1 to 15 digits) within the {body_size}-byte body")
    return int(header_length)


def _problems(error: ValidationError, most: int = 5) -> str:
    """pydantic's errors as `inputs.0.shape.1: Input should be ...`, without the values."""
    problems = [f"{'.'.join(str(part) for part in item['loc']) or 'body'}: {item['msg']}"
                for item in error.errors(include_url=False)[:most]]
    more = error.error_count() - len(problems)
    return "; ".join(problems) + (f" (and {more} more)" if more > 0 else "")


def _check_count(images: int, max_images: int) -> None:
    if images > max_images:
        raise ApiError(413, "too_many_images",
                       f"the request holds {images} images; at most {max_images} per "
                       "request (--max-queue): split it")


def _binary_data(tensor: InputTensor, binary: bytes) -> bytes | None:
    size = tensor.parameters.binary_data_size if tensor.parameters else None
    if size is None:
        if binary:
            raise _bad(f"{len(binary)} bytes follow the JSON header, but the input has no "
                       "`binary_data_size`")
        return None
    if size != len(binary):
        raise _bad(f"binary_data_size {size} does not match the {len(binary)} bytes sent")
    return binary


def _bytes_elements(tensor: InputTensor, raw: bytes | None, max_images: int) -> list[bytes]:
    shape = tensor.shape
    if len(shape) not in (1, 2) or (len(shape) == 2 and shape[1] != 1) or shape[0] < 1:
        raise _bad(f"a BYTES input has shape [N] or [N, 1], N >= 1; got {shape}")
    if raw is not None:
        elements = _unpack_bytes(raw, shape[0])
    else:
        elements = _base64_list(tensor.data, max_images)
    if len(elements) != shape[0]:
        raise _bad(f"shape {shape} says {shape[0]} images; {len(elements)} were sent")
    return elements


def _unpack_bytes(raw: bytes, most: int) -> list[bytes]:
    """Triton's BYTES serialization: per element a little-endian uint32 length, then data;
    stops past `most` elements (the count is wrong then anyway)."""
    elements, offset = [], 0
    while offset < len(raw) and len(elements) <= most:
        if offset + 4 > len(raw):
            raise _bad("binary BYTES data ends inside an element's length")
        (length,) = struct.unpack_from("<I", raw, offset)
        offset += 4
        if offset + length > len(raw):
            raise _bad("binary BYTES data ends inside an element")
        elements.append(raw[offset:offset + length])
        offset += length
    return elements


def _base64_list(data: list[Any] | None, max_images: int) -> list[bytes]:
    try:
        items = _BASE64.validate_python(data)
    except ValidationError:
        raise _bad("BYTES `data` must be a list of base64-encoded image files (or of "
                   "one-element lists of them)") from None
    if items and isinstance(items[0], list):
        if not all(len(row) == 1 for row in items):
            raise _bad("BYTES `data` sent nested must be [N, 1]: one file per row")
        items = [row[0] for row in items]
    _check_count(len(items), max_images)
    try:
        return [base64.b64decode(item, validate=True) for item in items]
    except (binascii.Error, ValueError):
        raise _bad("BYTES `data` holds a string that is not base64") from None


def _pixels(tensor: InputTensor, raw: bytes | None, chw: tuple[int, int, int]) -> np.ndarray:
    shape, datatype = tensor.shape, tensor.datatype
    if len(shape) != 4 or tuple(shape[1:]) != chw or shape[0] < 1:
        expected = ", ".join(str(side) for side in chw)
        raise _bad(f"a {datatype} input has shape [N, {expected}] for this model; got {shape}")
    dtype = PIXEL_TYPES[datatype]
    count = math.prod(shape)
    if raw is not None:
        if len(raw) != count * np.dtype(dtype).itemsize:
            raise _bad(f"{len(raw)} bytes of {datatype} do not fill shape {shape}")
        return _finite(np.frombuffer(raw, dtype=dtype).reshape(shape))
    try:
        values = np.asarray(_NUMBERS.validate_python(tensor.data), dtype=np.float64)
    except (ValidationError, ValueError):
        # Not numbers, or ragged nesting (ValueError).
        raise _bad(f"`data` is not a list (flat or nested) of {datatype} numbers") from None
    if values.size != count:
        raise _bad(f"{values.size} values do not fill shape {shape}")
    # Checked here, not left to the cast: numpy 1.x wraps 300 to 44 without a word.
    if dtype is np.uint8 and not ((values >= 0) & (values <= 255)).all():
        raise _bad("UINT8 `data` holds values outside 0..255")
    return _finite(values.astype(dtype).reshape(shape))


def _finite(pixels: np.ndarray) -> np.ndarray:
    if not np.isfinite(pixels).all():
        raise _bad("the pixels hold NaN or infinity")
    return pixels


def _outputs(document: InferenceRequestDocument, trusted: bool) -> dict[str, bool]:
    """Requested outputs -> whether each goes back as binary (tritonclient's default when it
    names none: `binary_data_output`). Unnamed: the trust outputs only when `trusted`, so a
    model without a trust record answers as it always did."""
    parameters = document.parameters
    default_binary = bool(parameters and parameters.binary_data_output)
    if document.outputs is None:
        return dict.fromkeys(OUTPUTS + (TRUST_OUTPUTS if trusted else ()), default_binary)
    outputs = {}
    for output in document.outputs:
        if output.name not in OUTPUTS + TRUST_OUTPUTS:
            raise _bad(f"unknown output {output.name[:40]!r}; this model has "
                       f"{list(OUTPUTS + TRUST_OUTPUTS)}")
        binary = output.parameters.binary_data if output.parameters else None
        outputs[output.name] = default_binary if binary is None else binary
    return outputs


def encode_response(request: InferRequest, model_name: str, probabilities: np.ndarray,
                    labels: list[str], familiarity: np.ndarray,
                    unknown: np.ndarray) -> tuple[bytes, int | None]:
    """The answer's body, and the JSON header's length when binary tensors follow it.
    `familiarity` [N] (NaN: the model gives none) and `unknown` [N] bool."""
    familiarity = familiarity.astype(np.float32)
    tensors = {
        "probabilities": ("FP32", list(probabilities.shape),
                          probabilities.astype(np.float32).tobytes(), probabilities.tolist()),
        "labels": ("BYTES", [len(labels)], _pack_bytes(labels), labels),
        # JSON has no NaN: a familiarity the model cannot give is null there.
        "familiarity": ("FP32", [len(familiarity)], familiarity.tobytes(),
                        [None if math.isnan(v) else v for v in familiarity.tolist()]),
        "unknown": ("BOOL", [len(unknown)], unknown.astype(np.bool_).tobytes(),
                    [bool(v) for v in unknown]),
    }
    outputs, blobs = [], []
    for name, binary in request.outputs.items():
        datatype, shape, blob, values = tensors[name]
        if binary:
            outputs.append(OutputTensor(name=name, datatype=datatype, shape=shape,
                                        parameters={"binary_data_size": len(blob)}))
            blobs.append(blob)
        else:
            outputs.append(OutputTensor(name=name, datatype=datatype, shape=shape,
                                        data=values))
    response = InferenceResponse(model_name=model_name, model_version="1", id=request.id,
                                 outputs=outputs)
    header = response.model_dump_json(exclude_none=True).encode()
    return header + b"".join(blobs), (len(header) if blobs else None)


def _pack_bytes(values: list[str]) -> bytes:
    return b"".join(struct.pack("<I", len(v.encode())) + v.encode() for v in values)


def _bad(message: str) -> ApiError:
    return ApiError(400, "invalid_tensor", message)
