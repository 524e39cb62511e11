"""POST /v1/explain, with `imgcls serve --explain` only: where in an uploaded image the model
found its top classes (Grad-CAM, evaluation/explain.py).

The body is one image, as /v1/predict takes it (a multipart file part, or the raw body). The
answer is JSON: for each of the `topk` most probable classes (default 1, at most MAX_TOPK) its
label, probability and the heat map blended over the model's input image, a base64 PNG:

    {"model": "...", "input": "cat.jpg", "layer": "layer4", "explanations":
     [{"rank": 1, "label": "cat", "score": 0.97, "overlay_png": "iVBORw0..."}], "latency_ms": 41}

The service may classify without torch (an .onnx file, or a cached export); Grad-CAM needs the
torch network's gradients, so --explain loads the model.safetensors under torch when the app
is made, and refuses an .onnx model there, before any port is bound. Explanations do not go
through the batcher: each is a forward and backward pass of its own, one at a time (captum
hooks the network's layer for the length of a pass, so two at once would see each other's),
within --timeout-s (504 beyond it).
"""

from __future__ import annotations

import asyncio
import base64
import threading
import time
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from fastapi import APIRouter, FastAPI, Query, Request

from imgcls.serve.decoding import app_decoder
from imgcls.serve.errors import ApiError
from imgcls.serve.settings import ServeSettings
from imgcls.serve.uploads import read_uploads

if TYPE_CHECKING:
    from imgcls.evaluation.explain import Explainer

MAX_TOPK = 10  # each class is one more image in the backward pass
_BODY_DOC = {"requestBody": {"required": True, "content": {
    "multipart/form-data": {"schema": {"type": "object", "properties": {"file": {
        "type": "string", "format": "binary"}}}},
    "image/*": {"schema": {"type": "string", "format": "binary"}},
}}}

router = APIRouter(tags=["imgcls"])


def add_explain_route(app: FastAPI, model_path: str | Path, settings: ServeSettings) -> None:
    """Load the torch network to explain (UserError for an .onnx model) and add the route."""
    from imgcls.evaluation.explain import load_explainer

    explainer, _ = load_explainer(model_path, settings.device)
    app.state.explainer = explainer
    app.state.explain_lock = threading.Lock()
    app.include_router(router)


@router.post("/v1/explain", openapi_extra=_BODY_DOC,
             summary="Grad-CAM heat maps of one image for its top classes (base64 PNGs)")
async def explain(request: Request, topk: int = Query(1, ge=1, le=MAX_TOPK)
                  ) -> dict[str, Any]:
    started = time.perf_counter()
    state = request.app.state
    settings = state.service.settings
    uploads = await read_uploads(request, settings.max_upload_bytes, settings.max_queue)
    if len(uploads) > 1:
        raise ApiError(413, "too_many_images", f"/v1/explain takes one image per request; "
                       f"got {len(uploads)}: send them one at a time")
    images = await app_decoder(request).decode(uploads)  # 4xx for a bad image
    # An executor future, not run_in_threadpool: anyio would hold a cancelled wait until the
    # thread ended, and the 504 must not wait for the pass it gives up on.
    work = asyncio.get_running_loop().run_in_executor(
        None, partial(_explain, state.explainer, state.explain_lock, images[0], topk,
                      state.service.class_names))
    remaining = settings.timeout_s - (time.perf_counter() - started)
    try:  # the pass itself cannot be stopped: it finishes in its thread, unanswered
        explanations = await asyncio.wait_for(work, max(remaining, 0.0))
    except asyncio.TimeoutError:  # the builtin TimeoutError only from Python 3.11
        raise ApiError(504, "timeout", f"no explanation within {settings.timeout_s:g} s "
                       "(--timeout-s); ask for a smaller topk, or retry") from None
    return {"model": state.service.model_name, "input": uploads[0][0],
            "layer": state.explainer.layer, "explanations": explanations,
            "latency_ms": round((time.perf_counter() - started) * 1000, 3)}


def _explain(explainer: Explainer, lock: threading.Lock, pixels: np.ndarray, topk: int,
             names: list[str]) -> list[dict[str, Any]]:
    import torch

    from imgcls.evaluation.explain import overlay_png

    image = torch.from_numpy(np.ascontiguousarray(pixels, dtype=np.uint8))
    with lock:
        explanation = explainer.explain(image[None], topk)
    answers = []
    for rank, (index, heat) in enumerate(zip(explanation.classes[0].tolist(),
                                             explanation.heat_maps[0], strict=True), start=1):
        png = overlay_png(image, heat)
        answers.append({"rank": rank, "label": names[index],
                        "score": float(explanation.probabilities[0, index]),
                        "overlay_png": base64.b64encode(png).decode("ascii")})
    return answers
