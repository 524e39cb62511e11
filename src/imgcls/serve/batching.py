"""Dynamic batching: requests that arrive together share one forward pass.

Each image waits in an asyncio queue. A worker task takes the first one, then whatever
else arrives within `max_wait_ms`, up to `max_batch` images, and runs the model on them
in a dedicated thread, so the event loop keeps accepting requests meanwhile. The
queue is bounded: a request that does not fit is refused at once (Overloaded -> 503)
rather than waiting behind a backlog it would time out in anyway.

The worker outlives every Exception: a batch that fails fails its own requests
(BatchFailed), and the next batch runs. Only a BaseException (cancellation, a thread's
SystemExit) ends it; then every waiting request fails with WorkerStopped, `alive` turns
False (the service answers /readyz and /healthz with 503), and new work is refused.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

# float32 pixels [N, C, H, W] -> probabilities [N, K]; numpy, so an ONNX service needs no torch
Infer = Callable[[np.ndarray], np.ndarray]
OnBatch = Callable[[int, float], None]  # (images in the batch, seconds of inference)
OnFailure = Callable[[], None]  # a batch raised

_log = logging.getLogger("imgcls.serve")


class Overloaded(Exception):
    """The queue has no room for the request's images, or the service is draining."""


class BatchFailed(Exception):
    """The forward pass (or stacking the batch) raised; the cause is chained."""


class WorkerStopped(Exception):
    """The worker task has ended for good: nothing queued will ever run."""


@dataclass
class _Job:
    image: np.ndarray  # [C, H, W], uint8 or float pixels 0..255
    future: asyncio.Future[np.ndarray]


_STOP = None  # queued by close(): the worker stops after every job queued before it


class Batcher:
    def __init__(self, infer: Infer, *, max_batch: int, max_wait_ms: float, max_queue: int,
                 on_batch: OnBatch | None = None, on_failure: OnFailure | None = None
                 ) -> None:
        self._infer = infer
        self._max_batch = max_batch
        self._max_wait_s = max_wait_ms / 1000
        self._max_queue = max_queue
        self._on_batch = on_batch
        self._on_failure = on_failure
        # Unbounded on purpose: submit() enforces max_queue, and close() must always be
        # able to queue its stop marker behind the jobs it drains.
        self._queue: asyncio.Queue[_Job | None] = asyncio.Queue()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="imgcls-infer")
        self._worker: asyncio.Task[None] | None = None
        self._closing = False
        self._pending = 0  # images submitted and not yet answered: what max_queue bounds

    @property
    def depth(self) -> int:
        """Images waiting for, or in, a forward pass."""
        return self._pending

    @property
    def alive(self) -> bool:
        """Started and still running (False once it has ended, for whatever reason)."""
        return self._worker is not None and not self._worker.done()

    def start(self) -> None:
        self._worker = asyncio.get_running_loop().create_task(self._run(), name="imgcls-batcher")
        self._worker.add_done_callback(self._worker_ended)

    async def submit(self, images: list[np.ndarray]) -> np.ndarray:
        """Probabilities [len(images), K]; raises Overloaded when there is no room."""
        if self._closing:
            raise Overloaded("the service is shutting down")
        if self._worker is not None and self._worker.done():
            raise WorkerStopped("the inference worker has stopped")
        if self._pending + len(images) > self._max_queue:
            raise Overloaded(f"{self._pending} images are already waiting")
        loop = asyncio.get_running_loop()
        jobs = [_Job(image, loop.create_future()) for image in images]
        self._pending += len(jobs)
        for job in jobs:
            self._queue.put_nowait(job)
        try:
            return np.stack(await asyncio.gather(*(job.future for job in jobs)))
        finally:  # on a timeout or a dropped client, the worker skips what is left
            self._pending -= len(jobs)
            for job in jobs:
                job.future.cancel()

    async def close(self) -> None:
        """Refuse new work, finish every queued image, stop the worker and its thread."""
        self._closing = True
        self._queue.put_nowait(_STOP)
        if self._worker is not None:
            await asyncio.wait([self._worker])  # never raises: a dead worker was logged
        self._executor.shutdown(wait=True)

    async def _run(self) -> None:
        while True:
            jobs, stop = await self._collect()
            # Skipped: jobs whose request timed out or whose client left (submit cancelled
            # their futures); nobody waits for their answer.
            jobs = [job for job in jobs if not job.future.done()]
            try:
                if jobs:
                    await self._run_batch(jobs)
            except Exception as error:  # this batch's requests fail; the worker carries on
                _log.exception("a forward pass of %d images failed", len(jobs))
                if self._on_failure is not None:
                    self._on_failure()
                _fail(jobs, BatchFailed(f"{type(error).__name__}: {error}"), cause=error)
            except BaseException:  # the worker ends: no request it holds may wait forever
                _fail(jobs, WorkerStopped("the inference worker stopped during the batch"))
                raise
            if stop:
                return

    def _worker_ended(self, worker: asyncio.Task[None]) -> None:
        """Fails what is still queued once the worker is gone, and says why it went."""
        error = None if worker.cancelled() else worker.exception()
        if worker.cancelled() or error is not None or not self._closing:
            _log.critical("the inference worker stopped (%s); /readyz and /healthz answer 503 "
                          "until the service is restarted",
                          "cancelled" if error is None else repr(error), exc_info=error)
        queued = [self._queue.get_nowait() for _ in range(self._queue.qsize())]
        _fail([job for job in queued if job is not _STOP],
              WorkerStopped("the inference worker has stopped"))

    async def _collect(self) -> tuple[list[_Job], bool]:
        """The next batch, and whether the stop marker came with it."""
        first = await self._queue.get()
        if first is _STOP:
            return [], True
        jobs = [first]
        deadline = time.monotonic() + self._max_wait_s
        while len(jobs) < self._max_batch:
            if self._queue.empty():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                try:
                    job = await asyncio.wait_for(self._queue.get(), remaining)
                except asyncio.TimeoutError:  # the builtin only from Python 3.11
                    break
            else:
                job = self._queue.get_nowait()
            if job is _STOP:
                return jobs, True
            jobs.append(job)
        return jobs, False

    async def _run_batch(self, jobs: list[_Job]) -> None:
        batch = np.stack([job.image for job in jobs]).astype(np.float32, copy=False)
        started = time.perf_counter()
        probabilities = await asyncio.get_running_loop().run_in_executor(
            self._executor, self._infer, batch
        )
        if self._on_batch is not None:
            self._on_batch(len(jobs), time.perf_counter() - started)
        for job, row in zip(jobs, probabilities, strict=True):
            if not job.future.done():
                job.future.set_result(row)


def _fail(jobs: list[_Job], error: Exception, cause: BaseException | None = None) -> None:
    error.__cause__ = cause
    for job in jobs:
        if not job.future.done():
            job.future.set_exception(error)
