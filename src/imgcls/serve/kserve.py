"""The KServe v2 / Open Inference Protocol's tensors: request -> images, results -> answer.

One input per request, either
  BYTES [N] (or [N, 1]): encoded image files (JSON `data`: base64 strings), or
  FP32 / UINT8 [N, C, H, W]: pixels 0..255 at the model's input format; the model's
  normalization is applied by the server, as for uploaded images.
Outputs: `probabilities` FP32 [N, K] and `labels` BYTES [N] (the top-1 class names).
Triton's binary tensor extension is supported both ways (what tritonclient sends by
default): the JSON header's length in `Inference-Header-Content-Length`, tensors after it.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import struct
from dataclasses import dataclass
from typing import Any

import numpy as np

from imgcls.serve.errors import ApiError

HEADER_LENGTH = "inference-header-content-length"
PIXEL_TYPES = {"FP32": np.float32, "UINT8": np.uint8}
OUTPUTS = ("probabilities", "labels")


@dataclass
class InferRequest:
    id: str | None
    input_name: str
    encoded: list[bytes] | None  # BYTES: one encoded image file each
    pixels: np.ndarray | None  # FP32/UINT8 [N, C, H, W]
    outputs: dict[str, bool]  # requested output -> binary?


def parse_request(body: bytes, header_length: str | None,
                  chw: tuple[int, int, int]) -> InferRequest:
    document, binary = _split_body(body, header_length)
    inputs = document.get("inputs")
    if not isinstance(inputs, list) or len(inputs) != 1 or not isinstance(inputs[0], dict):
        raise _bad("`inputs` must be a list holding exactly one tensor")
    tensor = inputs[0]
    name, datatype = tensor.get("name", "input"), tensor.get("datatype")
    shape = _shape(tensor.get("shape"))
    raw = _binary_data(tensor, binary)
    if datatype == "BYTES":
        encoded = _bytes_elements(tensor, raw, shape)
        return InferRequest(document.get("id"), name, encoded, None, _outputs(document))
    if datatype in PIXEL_TYPES:
        pixels = _pixels(tensor, raw, shape, datatype, chw)
        return InferRequest(document.get("id"), name, None, pixels, _outputs(document))
    raise _bad(f"input datatype {datatype!r} is not BYTES, FP32 or UINT8")


def _split_body(body: bytes, header_length: str | None) -> tuple[dict[str, Any], bytes]:
    if not body:
        raise ApiError(400, "empty_body", "the request body is empty")
    json_size = len(body)
    if header_length is not None:
        if not header_length.isdigit() or int(header_length) > len(body):
            raise _bad("Inference-Header-Content-Length is not a length within the body")
        json_size = int(header_length)
    try:
        document = json.loads(body[:json_size])
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise _bad(f"the inference request is not JSON ({error})") from None
    if not isinstance(document, dict):
        raise _bad("the inference request must be a JSON object")
    return document, body[json_size:]


def _shape(shape: Any) -> list[int]:
    if not isinstance(shape, list) or not all(isinstance(d, int) and d >= 0 for d in shape):
        raise _bad("`shape` must be a list of non-negative integers")
    return shape


def _binary_data(tensor: dict[str, Any], binary: bytes) -> bytes | None:
    parameters = tensor.get("parameters") or {}
    size = parameters.get("binary_data_size") if isinstance(parameters, dict) else None
    if size is None:
        return None
    if not isinstance(size, int) or size != len(binary):
        raise _bad(f"binary_data_size {size} does not match the {len(binary)} bytes sent")
    return binary


def _bytes_elements(tensor: dict[str, Any], raw: bytes | None, shape: list[int]) -> list[bytes]:
    if len(shape) not in (1, 2) or (len(shape) == 2 and shape[1] != 1):
        raise _bad(f"a BYTES input has shape [N] or [N, 1]; got {shape}")
    elements = _unpack_bytes(raw) if raw is not None else _base64_list(tensor.get("data"))
    if len(elements) != shape[0] or not elements:
        raise _bad(f"shape {shape} says {shape[0]} images; {len(elements)} were sent")
    return elements


def _unpack_bytes(raw: bytes) -> list[bytes]:
    """Triton's BYTES serialization: per element a little-endian uint32 length, then data."""
    elements, offset = [], 0
    while offset < len(raw):
        if offset + 4 > len(raw):
            raise _bad("binary BYTES data ends inside an element's length")
        (length,) = struct.unpack_from("<I", raw, offset)
        offset += 4
        if offset + length > len(raw):
            raise _bad("binary BYTES data ends inside an element")
        elements.append(raw[offset:offset + length])
        offset += length
    return elements


def _base64_list(data: Any) -> list[bytes]:
    if isinstance(data, list) and len(data) > 0 and isinstance(data[0], list):
        data = [item for row in data for item in row]  # [N, 1] sent nested
    if not isinstance(data, list) or not all(isinstance(item, str) for item in data):
        raise _bad("BYTES `data` must be a list of base64-encoded image files")
    try:
        return [base64.b64decode(item, validate=True) for item in data]
    except (binascii.Error, ValueError):
        raise _bad("BYTES `data` holds a string that is not base64") from None


def _pixels(tensor: dict[str, Any], raw: bytes | None, shape: list[int], datatype: str,
            chw: tuple[int, int, int]) -> np.ndarray:
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
        values = np.asarray(tensor.get("data"), dtype=dtype)
    except (TypeError, ValueError, OverflowError):
        raise _bad(f"`data` is not a list of {datatype} numbers") from None
    if values.size != count:
        raise _bad(f"{values.size} values do not fill shape {shape}")
    return _finite(values.reshape(shape))


def _finite(pixels: np.ndarray) -> np.ndarray:
    if not np.isfinite(pixels).all():
        raise _bad("the pixels hold NaN or infinity")
    return pixels


def _outputs(document: dict[str, Any]) -> dict[str, bool]:
    """Requested outputs -> whether each goes back as binary (tritonclient's default when it
    names none: `binary_data_output`)."""
    parameters = document.get("parameters") or {}
    default_binary = bool(isinstance(parameters, dict) and parameters.get("binary_data_output"))
    requested = document.get("outputs")
    if requested is None:
        return dict.fromkeys(OUTPUTS, default_binary)
    if not isinstance(requested, list) or not all(isinstance(o, dict) for o in requested):
        raise _bad("`outputs` must be a list of objects with a `name`")
    outputs = {}
    for output in requested:
        if output.get("name") not in OUTPUTS:
            raise _bad(f"unknown output {output.get('name')!r}; this model has {list(OUTPUTS)}")
        output_parameters = output.get("parameters") or {}
        outputs[output["name"]] = bool(output_parameters.get("binary_data", default_binary))
    return outputs


def encode_response(request: InferRequest, model_name: str, probabilities: np.ndarray,
                    labels: list[str]) -> tuple[bytes, int | None]:
    """The answer's body, and the JSON header's length when binary tensors follow it."""
    tensors = {
        "probabilities": ("FP32", list(probabilities.shape),
                          probabilities.astype(np.float32), probabilities.tolist()),
        "labels": ("BYTES", [len(labels)], _pack_bytes(labels), labels),
    }
    outputs, blobs = [], []
    for name, binary in request.outputs.items():
        datatype, shape, packed, values = tensors[name]
        entry: dict[str, Any] = {"name": name, "datatype": datatype, "shape": shape}
        if binary:
            blob = packed if isinstance(packed, bytes) else packed.tobytes()
            entry["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        else:
            entry["data"] = values
        outputs.append(entry)
    document: dict[str, Any] = {"model_name": model_name, "model_version": "1",
                                "outputs": outputs}
    if request.id is not None:
        document["id"] = request.id
    header = json.dumps(document).encode()
    return header + b"".join(blobs), (len(header) if blobs else None)


def _pack_bytes(values: list[str]) -> bytes:
    return b"".join(struct.pack("<I", len(v.encode())) + v.encode() for v in values)


def _bad(message: str) -> ApiError:
    return ApiError(400, "invalid_tensor", message)
