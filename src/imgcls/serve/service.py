"""What the routes share: the Predictor (numpy in and out; an .onnx file or a cached export
without torch, see predict.predictor.open_predictor) behind a Batcher, the metrics,
and the lifecycle (warm up before ready; on shutdown refuse new work and drain the queue)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool

from imgcls.modelfile.rundir import resolve_model_path
from imgcls.predict.prediction import (
    Prediction,
    answer,
    parse_reject_below,
    rejection_threshold,
)
from imgcls.predict.predictor import open_predictor
from imgcls.serve.batching import Batcher, BatchFailed, Overloaded, WorkerStopped
from imgcls.serve.decoding import decode_upload
from imgcls.serve.errors import ApiError
from imgcls.serve.metrics import Metrics
from imgcls.serve.settings import ServeSettings

_log = logging.getLogger("imgcls.serve")
# The model card's sections that GET /v1/models/{name} shows, as the model file holds them.
MODEL_INFO_SECTIONS = ("input", "normalization", "architecture", "metrics", "versions")


class Service:
    def __init__(self, model_path: str | Path, settings: ServeSettings) -> None:
        self.settings = settings
        self.predictor = open_predictor(  # an .onnx file or a cached export: no torch
            model_path, backend=settings.backend, device=settings.device,
            batch_sizes=(1, settings.max_batch), threads=settings.threads,
            warn=_log.warning)
        self.model_name = settings.model_name or default_model_name(model_path)
        self.class_names: list[str] = self.predictor.class_names
        self.batcher = Batcher(self._infer, max_batch=settings.max_batch,
                               max_wait_ms=settings.max_wait_ms, max_queue=settings.max_queue,
                               on_batch=self._note_batch, on_failure=self._note_failure)
        self.metrics = Metrics(queue_depth=lambda: self.batcher.depth)
        self.started = False  # warmed up, and not shutting down

    @property
    def ready(self) -> bool:
        """Readiness: started, and the batcher's worker runs."""
        return self.started and self.batcher.alive

    @property
    def healthy(self) -> bool:
        """Liveness: False once the worker has died while serving. No request can be
        answered again until a restart, so the orchestrator should restart the process."""
        return self.batcher.alive or not self.started

    @property
    def input_chw(self) -> tuple[int, int, int]:
        return self.predictor.card.input.chw

    @contextlib.asynccontextmanager
    async def lifespan(self, _: FastAPI) -> AsyncIterator[None]:
        self.batcher.start()
        await run_in_threadpool(self._warm_up)
        self.started = True
        try:
            yield
        finally:  # uvicorn has stopped accepting and finished open requests by now
            self.started = False
            await self.batcher.close()

    def _warm_up(self) -> None:
        """The first forward passes allocate and pick kernels; no request should pay."""
        for size in sorted({1, self.settings.max_batch}):
            self._infer(np.zeros((size, *self.input_chw), np.float32))

    def _infer(self, pixels: np.ndarray) -> np.ndarray:
        """Probabilities [N, K] with familiarity as column K: the batcher moves one array
        per image (NaN where the model gives none); classify() splits it again."""
        probabilities, familiarity = self.predictor.array_outputs(
            pixels, batch_size=max(len(pixels), 1))
        if familiarity is None:
            familiarity = np.full(len(probabilities), np.nan, np.float32)
        return np.concatenate([probabilities, familiarity[:, None].astype(probabilities.dtype)],
                              axis=1)

    def _note_batch(self, size: int, seconds: float) -> None:
        self.metrics.record_batch(size, seconds)

    def _note_failure(self) -> None:
        self.metrics.batch_failures.inc()

    async def decode(self, uploads: list[tuple[str, bytes]]) -> list[np.ndarray]:
        """Encoded files -> uint8 arrays [C, H, W], off the event loop; ApiError for a bad one, 504
        `decode_timeout` when decoding took longer than --timeout-s."""
        def work() -> list[np.ndarray]:
            return [decode_upload(data, name, self.predictor) for name, data in uploads]

        # A decoding thread cannot be stopped, and it is not abandoned either (not on a
        # timeout, not when the client leaves): decoding.py bounds memory by how many
        # decodes run at once, which holds only while each request waits for its own.
        # --max-pixels bounds how long one takes.
        started = time.perf_counter()
        images = await run_in_threadpool(work)
        seconds = time.perf_counter() - started
        if seconds > self.settings.timeout_s:
            raise ApiError(504, "decode_timeout", f"decoding took {seconds:.1f} s, over "
                           f"--timeout-s {self.settings.timeout_s:g}; send smaller images")
        return images

    async def classify(self, images: list[np.ndarray],
                       started: float) -> tuple[np.ndarray, np.ndarray]:
        """Probabilities [N, K] and familiarity [N] (NaN: none) through the batcher, within
        what is left of the timeout."""
        remaining = self.settings.timeout_s - (time.perf_counter() - started)
        try:
            if remaining <= 0:
                raise asyncio.TimeoutError
            rows = await asyncio.wait_for(self.batcher.submit(images), remaining)
            return rows[:, :-1], rows[:, -1]
        except Overloaded as error:
            raise ApiError(503, "overloaded", f"the service is busy ({error}); retry shortly",
                           {"Retry-After": "1"}) from None
        except WorkerStopped as error:
            raise ApiError(503, "unavailable", f"{error}; the service needs a restart "
                           "(its /healthz answers 503)") from None
        except BatchFailed as error:  # logged with its traceback by the batcher
            raise ApiError(500, "inference_failed",
                           f"the forward pass failed ({error})") from None
        except asyncio.TimeoutError:  # the builtin TimeoutError only from Python 3.11
            raise ApiError(504, "timeout", f"no answer within {self.settings.timeout_s:g} s "
                           "(--timeout-s); the service is overloaded or the batch too "
                           "large") from None

    @property
    def trusted(self) -> bool:
        """Whether the model file has a trust record (a temperature, an `unknown` rule)."""
        return self.predictor.card.trust is not None

    def threshold(self, reject_below: str | None) -> float | None:
        """The familiarity under which answers are unknown: the request's reject_below, else
        --reject-below, else the card's; ApiError 422 for a value that is none of those."""
        try:
            chosen = parse_reject_below(reject_below or self.settings.reject_below)
        except ValueError as error:
            raise ApiError(422, "bad_reject_below", str(error)) from None
        return rejection_threshold(self.predictor.card.trust, chosen)

    def answer(self, name: str, row: np.ndarray, familiarity: float, topk: int,
               threshold: float | None) -> Prediction:
        return answer(name, row, familiarity, self.class_names, topk,
                      trust=self.predictor.card.trust, threshold=threshold)

    def model_info(self) -> dict[str, Any]:
        header = self.predictor.card.to_header()  # the sections as the model file holds them
        return {"name": self.model_name, "class_names": self.class_names,
                **{key: header[key] for key in MODEL_INFO_SECTIONS},
                "backend": self.predictor.backend_name,
                "device": str(self.predictor.device)}


def default_model_name(model_path: str | Path) -> str:
    """`runs/digits-lenet5/model.safetensors` -> `digits-lenet5`; `cats.onnx` -> `cats`;
    reduced to characters that need no escaping in a URL path."""
    path = resolve_model_path(model_path)
    stem = path.name.split(".")[0]
    name = path.resolve().parent.name if stem == "model" else stem
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-") or "model"
