"""What the browser tests of the phone app share: a static server for an exported app, a
watch on what the page does that it should not, and opening the app on a phone-sized page."""

from __future__ import annotations

import functools
import http.server
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]
PHONE = {"viewport": {"width": 375, "height": 812}, "device_scale_factor": 2,
         "is_mobile": True, "has_touch": True}
READY = "window.imgclsApp && window.imgclsApp.ready"
INSTALLED = ("navigator.serviceWorker.controller !== null && "
             "document.getElementById('offline').textContent.includes('works offline')")
needs_chromium = pytest.mark.skipif(not CHROMIUM.exists(), reason="no chromium here")


class StaticServer:
    """A plain static file server (Python's http.server) on loopback, in a thread."""

    def __init__(self, folder: Path) -> None:
        handler = functools.partial(_QuietHandler, directory=str(folder))
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        if not self.thread.is_alive():
            return
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: Any) -> None:
        pass


class Watch:
    """What a page does that it should not: console errors, page errors, and requests to
    anything but its own origin (blob: URLs of the photo preview are its own)."""

    def __init__(self, context: Any, origin: str) -> None:
        self.errors: list[str] = []
        self.outside: list[str] = []
        allowed = (origin, f"blob:{origin}")
        context.on("request", lambda request: None if request.url.startswith(allowed)
                   else self.outside.append(request.url))
        context.on("page", self.watch_page)

    def watch_page(self, page: Any) -> None:
        page.on("console", lambda message: self.errors.append(message.text)
                if message.type == "error" else None)
        page.on("pageerror", lambda error: self.errors.append(str(error)))


def classify(page: Any, path: Path) -> dict[str, Any]:
    """Choose `path` in the page's file input and wait for its answer (or error)."""
    count = page.evaluate("window.imgclsApp.classified")
    page.set_input_files("#file", str(path))
    page.wait_for_function(f"window.imgclsApp.classified > {count}", timeout=30_000)
    return page.evaluate("window.imgclsApp.last")


@contextmanager
def app_page(browser: Any, web_folder: Path) -> Iterator[tuple[StaticServer, Any, Watch]]:
    """The exported app served statically and opened on a phone-sized page, ready to
    classify; the page's context and the server are closed afterwards."""
    server = StaticServer(web_folder)
    context = browser.new_context(**PHONE)
    watch = Watch(context, server.url.rstrip("/"))
    try:
        page = context.new_page()
        page.goto(server.url, timeout=30_000)
        page.wait_for_function(READY, timeout=60_000)
        yield server, page, watch
    finally:
        context.close()
        server.stop()
