"""The KServe v2 / Open Inference Protocol routes (see kserve.py for the tensors)."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
from fastapi import APIRouter, Request, Response

from imgcls.serve.decoding import app_decoder
from imgcls.serve.errors import ApiError
from imgcls.serve.kserve import HEADER_LENGTH, encode_response, parse_request
from imgcls.serve.security import read_body
from imgcls.serve.service import Service
from imgcls.version import __version__

router = APIRouter(tags=["KServe v2"])


def _service(request: Request, name: str | None = None) -> Service:
    service: Service = request.app.state.service
    if name is not None and name != service.model_name:
        raise ApiError(404, "model_not_found",
                       f"no model {name!r} here; this server has {service.model_name!r}")
    return service


@router.get("/v2", summary="Server metadata")
async def server_metadata() -> dict[str, Any]:
    return {"name": "imgcls", "version": __version__, "extensions": ["binary_tensor_data"]}


@router.get("/v2/health/live")
async def live() -> dict[str, bool]:
    return {"live": True}


@router.get("/v2/health/ready")
async def ready(request: Request) -> Response:
    return _readiness(_service(request).ready)


@router.get("/v2/models/{name}")
@router.get("/v2/models/{name}/versions/{version}")
async def model_metadata(request: Request, name: str) -> dict[str, Any]:
    service = _service(request, name)
    channels, height, width = service.input_chw
    return {
        "name": service.model_name, "versions": ["1"],
        "platform": "onnxruntime" if service.predictor.backend_name.startswith("onnx")
        else "pytorch",
        "inputs": [{"name": "images", "datatype": "BYTES", "shape": [-1]},
                   {"name": "pixels", "datatype": "FP32",
                    "shape": [-1, channels, height, width]}],
        "outputs": [{"name": "probabilities", "datatype": "FP32",
                     "shape": [-1, len(service.class_names)]},
                    {"name": "labels", "datatype": "BYTES", "shape": [-1]},
                    *([{"name": "familiarity", "datatype": "FP32", "shape": [-1]},
                       {"name": "unknown", "datatype": "BOOL", "shape": [-1]}]
                      if service.trusted else [])],
    }


@router.get("/v2/models/{name}/ready")
@router.get("/v2/models/{name}/versions/{version}/ready")
async def model_ready(request: Request, name: str) -> Response:
    return _readiness(_service(request, name).ready)


@router.post("/v2/models/{name}/infer")
@router.post("/v2/models/{name}/versions/{version}/infer")
async def infer(request: Request, name: str) -> Response:
    started = time.perf_counter()
    service = _service(request, name)
    body = await read_body(request, service.settings.max_upload_bytes)
    parsed = parse_request(body, request.headers.get(HEADER_LENGTH), service.input_chw,
                           max_images=service.settings.max_queue, trusted=service.trusted)
    threshold = service.threshold(None if parsed.reject_below is None
                                  else str(parsed.reject_below))
    if parsed.encoded is not None:
        names = [f"{parsed.input_name[:64]}[{index}]" for index in range(len(parsed.encoded))]
        uploads = list(zip(names, parsed.encoded, strict=True))
        images = await app_decoder(request).decode(uploads)
    else:
        images = list(np.array(parsed.pixels, dtype=np.float32))
    probabilities, familiarity = await service.classify(images, started)
    answers = [service.answer("", row, float(score), 1, threshold)
               for row, score in zip(probabilities, familiarity, strict=True)]
    content, header_length = encode_response(
        parsed, service.model_name, probabilities, [str(answer.label) for answer in answers],
        familiarity, np.array([answer.unknown for answer in answers], dtype=bool))
    if header_length is None:
        return Response(content, media_type="application/json")
    return Response(content, media_type="application/octet-stream",
                    headers={"Inference-Header-Content-Length": str(header_length)})


def _readiness(is_ready: bool) -> Response:
    return Response(status_code=200 if is_ready else 503)
