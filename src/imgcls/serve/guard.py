"""The client's side of a request: its body must arrive in time, and when it leaves before
its answer, its work stops.

- The whole body must arrive within --read-timeout-s: 408 `read_timeout` beyond.
- A client that disconnects while its body is read (Starlette's ClientDisconnect) or while
  its images wait for a forward pass ends the request quietly, logged at debug level: that
  is the client's choice, not a fault of the server. Its images leave the queue at once
  (the handler is cancelled, so the batcher's submit cancels their futures and the worker
  skips them); a decode already running finishes first (Service.decode says why).

A disconnect is only heard through `receive()`, and nothing calls it once the body has
been read; so from then until the response starts, a watcher task waits on it.
"""

from __future__ import annotations

import asyncio
import logging
import time

import anyio
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from imgcls.serve.errors import ApiError

_log = logging.getLogger("imgcls.serve")


class ClientGuardMiddleware:
    def __init__(self, app: ASGIApp, read_timeout_s: float) -> None:
        self.app = app
        self.read_timeout_s = read_timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        deadline = time.monotonic() + self.read_timeout_s
        body_read = anyio.Event()
        answering = False

        async def receive_in_time() -> Message:
            if body_read.is_set():
                return await receive()
            with anyio.move_on_after(deadline - time.monotonic()):
                message = await receive()
                if message["type"] != "http.request" or not message.get("more_body"):
                    body_read.set()
                return message
            raise ApiError(408, "read_timeout", f"the request body did not arrive within "
                           f"{self.read_timeout_s:g} s (--read-timeout-s)")

        async def send_and_note(message: Message) -> None:
            nonlocal answering
            answering = True  # from here on, the answer goes out whole or not at all
            await send(message)

        async def cancel_on_disconnect(work: anyio.CancelScope) -> None:
            await body_read.wait()
            # After the body, uvicorn's receive() returns only on a disconnect or once the
            # response is complete.
            if (await receive())["type"] == "http.disconnect" and not answering:
                _log.debug("%s %s: the client left before its answer; its work is dropped",
                           scope["method"], scope["path"])
                work.cancel()

        # A cancel scope and a plain task rather than a task group: a task group would wrap
        # the app's own exceptions in an ExceptionGroup on their way to the 500 handler.
        with anyio.CancelScope() as work:
            watcher = asyncio.get_running_loop().create_task(cancel_on_disconnect(work))
            try:
                await self.app(scope, receive_in_time, send_and_note)
            except ClientDisconnect:
                _log.debug("%s %s: the client left while sending its body", scope["method"],
                           scope["path"])
            finally:
                watcher.cancel()
