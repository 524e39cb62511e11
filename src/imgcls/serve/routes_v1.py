"""imgcls's own API: POST /v1/predict and GET /v1/model."""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Query, Request

from imgcls.serve.decoding import app_decoder
from imgcls.serve.service import Service
from imgcls.serve.uploads import read_uploads

router = APIRouter(tags=["imgcls"])

_BODY_DOC = {"requestBody": {"required": True, "content": {
    "multipart/form-data": {"schema": {"type": "object", "properties": {"file": {
        "type": "array", "items": {"type": "string", "format": "binary"}}}}},
    "image/*": {"schema": {"type": "string", "format": "binary"}},
}}}


@router.post("/v1/predict", openapi_extra=_BODY_DOC,
             summary="Classify one or more images (multipart files, or one image as the body)")
async def predict(request: Request, topk: int | None = Query(None, ge=1, le=1000),
                  reject_below: str | None = Query(
                      None, description="familiarity under which the answer is `unknown`: a "
                                        "number, `card` (the model's threshold) or `off`")
                  ) -> dict[str, Any]:
    started = time.perf_counter()
    service: Service = request.app.state.service
    settings = service.settings
    threshold = service.threshold(reject_below)  # a bad value: 422 before any upload is read
    # More images than the queue holds could never be answered: 413 before decoding.
    uploads = await read_uploads(request, settings.max_upload_bytes, settings.max_queue)
    images = await app_decoder(request).decode(uploads)
    probabilities, familiarity = await service.classify(images, started)
    predictions = [
        service.answer(name, row, float(score), topk or settings.topk, threshold).to_dict()
        for (name, _), row, score in zip(uploads, probabilities, familiarity, strict=True)
    ]
    return {"model": service.model_name, "predictions": predictions,
            "latency_ms": round((time.perf_counter() - started) * 1000, 3)}


@router.get("/v1/model", summary="The model's metadata")
async def model(request: Request) -> dict[str, Any]:
    return request.app.state.service.model_info()
